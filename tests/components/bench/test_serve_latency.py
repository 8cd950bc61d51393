"""The trigger end to end on digits: ``mixunlearn serve`` against a real Prefect server and a real moto S3 server,
a burst of request objects dropped in the queue, one batch (``components/bench/serve_latency.py``, one scenario)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.bench.serve_latency import main

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.integration]


def test_a_burst_in_the_s3_queue_is_one_batch_through_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PREFECT_RUNNER_POLL_FREQUENCY", "2")
    out = tmp_path / "out"

    main(
        [
            "--out",
            str(out),
            "--project",
            str(tmp_path / "project"),
            "--scenarios",
            "s3-burst",
            "--burst",
            "3",
            "--coalesce",
            "2",
            "--set",
            "train.recipes.digits.epochs=3",
            "--set",
            "base.device=cpu",
        ]
    )

    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["batch_due_events"] == 1  # three requests within the window: one event
    assert row["on_change_flow_runs"] == 1
    assert row["batches"] == 1
    assert row["flow_runs"] == ["COMPLETED"]
    processed = tmp_path / "project" / "data" / "requests" / "processed"
    assert sorted(path.stem for path in processed.glob("*.json")) == ["bench-s3-0", "bench-s3-1", "bench-s3-2"]
