"""The trigger watcher: S3-queued requests and a data change within one window give one batch-due event; an unusable
queue stops ``serve`` with one line. Real moto S3 and a real git + DVC project; the emitter is recorded."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from components.adapters.storage import ObjectStore
from components.adapters.versioning import DataVersioning
from components.cli import app
from components.triggers.coalesce import Burst
from pipelines.triggers import TriggerWatcher, open_queue
from tests.components.adapters.conftest import moto_url, offline_env, s3_bucket  # noqa: F401
from tests.pipelines.conftest import EXAMPLE_REQUEST, Project

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_queued_requests_and_a_data_change_in_one_window_are_one_batch_due_event(
    new_project: Callable[..., Project],
    moto_url: str,  # noqa: F811
    s3_bucket: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", moto_url)
    project = new_project(
        "watch", f"triggers.s3_queue={{bucket: {s3_bucket}, prefix: q}}", "triggers.coalesce_seconds=10"
    )
    (project.root / "data").mkdir()
    (project.root / "data" / "README").write_text("v1\n")
    versioning = DataVersioning(project.root)
    versioning.snapshot("data: digits version before deletion batches")
    emitted: list[tuple[str, Burst]] = []
    clock = Clock()
    watcher = TriggerWatcher(
        project.config,
        project.root,
        emit=lambda d, b: emitted.append((d, b)),
        clock=clock,
        queue=open_queue(project.config),
    )
    watcher.check()
    assert watcher.poll() == []  # baseline: nothing arrived

    example = json.loads((project.root / EXAMPLE_REQUEST).read_text())
    bucket = ObjectStore(s3_bucket, endpoint_url=moto_url, prefix="q")
    for index in range(3):  # a burst of three requests, one second apart, then a data commit
        bucket.write(f"incoming/r{index}.json", json.dumps({**example, "request_id": f"r{index}"}).encode())
        clock.now += 1
        assert watcher.poll() == []
    (project.root / "data" / "README").write_text("v2\n")
    changed = versioning.snapshot("new data from the owners' export")
    clock.now += 1
    assert watcher.poll() == []
    clock.now += 9.9
    assert watcher.poll() == []  # quiet for 9.9 s of the 10 s window

    clock.now += 0.1
    (burst,) = watcher.poll()

    assert [dataset for dataset, _ in emitted] == ["digits"]  # ONE event for the whole burst
    assert burst.requests == {"digits": ("r0", "r1", "r2")}
    assert burst.data_md5 == changed.md5
    assert [r.request_id for r in project.store.pending("digits")] == ["r0", "r1", "r2"]
    clock.now += 100
    assert watcher.poll() == []


def test_serve_with_a_missing_queue_bucket_stops_with_one_line(
    new_project: Callable[..., Project],
    moto_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", moto_url)
    project = new_project("serve-missing-bucket")
    result = CliRunner().invoke(
        app,
        [
            "serve",
            "--root",
            str(project.root),
            "--params",
            str(project.root / "params.yaml"),
            "--set",
            "triggers.s3_queue={bucket: no-such-queue-bucket}",
        ],
    )

    assert result.exit_code == 2
    assert result.output.strip().startswith("error: bucket no-such-queue-bucket at")
    assert "does not exist: create it" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_bad_trigger_setting_is_one_line(new_project: Callable[..., Project]) -> None:
    project = new_project("bad-trigger-setting")
    result = CliRunner().invoke(
        app,
        ["config", "--params", str(project.root / "params.yaml"), "--set", "triggers.coalesce_seconds=500"],
    )
    assert result.exit_code == 2
    assert "max_wait_seconds must be at least coalesce_seconds" in result.output
