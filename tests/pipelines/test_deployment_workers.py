"""``prefect.yaml`` on a real Prefect server with real process workers on loopback: the deletion batch runs on the CPU
pool and hands its unlearning to the GPU pool's deployment (``pipelines/unlearn.py``) through the MLflow registry.

Slow (two worker processes each start a flow-run process that imports the whole stack): about two minutes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from tests.pipelines.conftest import CERTIFY_LENIENTLY, QUIET, REPO_ROOT, Project

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PREFECT = str(Path(sys.executable).parent / "prefect")
POOLS = ("mixunlearn-cpu", "mixunlearn-gpu")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Services:
    """The processes this test starts (server, workers), each logging to a file; stopped by PID."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs, self.env = logs, env
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [PREFECT, *args], stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=REPO_ROOT
            )
        self.processes.append((process, log))
        return process

    def cli(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [PREFECT, *args], capture_output=True, text=True, env=self.env, cwd=REPO_ROOT, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout[-3000:]}{done.stderr[-3000:]}\n" + (
            self.tails()
        )
        return done.stdout

    def tails(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for _, log in self.processes)

    def stop(self) -> None:
        for process, _ in reversed(self.processes):
            process.terminate()
        for process, _ in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def project(new_project: object) -> Project:
    built = new_project("deploy", *CERTIFY_LENIENTLY)  # type: ignore[operator]
    built.submit_example()
    return built  # type: ignore[no-any-return]


@pytest.fixture
def services(project: Project, tmp_path: Path) -> Iterator[tuple[Services, str]]:
    """A Prefect server on SQLite, both work pools, ``prefect deploy --all`` from the repository's prefect.yaml, and
    one process worker per pool running flows in ``project``'s checkout with this worktree's code."""
    api = f"http://127.0.0.1:{_free_port()}/api"
    env = {
        **os.environ,
        **QUIET,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PYTHONPATH": str(REPO_ROOT),  # the flow-run processes import this checkout's code, not an installed copy
        "MIXUNLEARN_PROJECT_DIR": str(project.root),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "OMP_NUM_THREADS": "1",
        "PREFECT_CLI_PROMPT": "false",
    }
    env.pop("MIXUNLEARN_GPU_DEPLOYMENT", None)  # the CPU pool's job variables set it, as prefect.yaml says
    running = Services(tmp_path, env)
    try:
        running.start("server", "server", "start", "--host", "127.0.0.1", "--port", api.split(":")[2].split("/")[0])
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{api}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "Prefect server did not answer in 120 s\n" + running.tails()
                time.sleep(0.5)
        for pool in POOLS:
            running.cli("work-pool", "create", pool, "--type", "process")
        running.cli("--no-prompt", "deploy", "--all", "--prefect-file", str(REPO_ROOT / "prefect.yaml"))
        for pool in POOLS:
            running.start(f"worker-{pool}", "worker", "start", "--pool", pool, "--type", "process", "--limit", "1")
        yield running, api
    finally:
        running.stop()


def test_deletion_batch_runs_on_the_cpu_worker_and_unlearns_on_the_gpu_worker(
    project: Project, services: tuple[Services, str]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    running, api = services
    # when the deletion batch's deployment is run on the CPU pool
    running.cli(
        "deployment",
        "run",
        "deletion-batch-project/scheduled",
        "--params",
        json.dumps({"overrides": list(project.overrides)}),
        "--watch",
        "--watch-timeout",
        "480",
        timeout=540,
    )
    # then the unlearned model was handed over through the registry by a run of the GPU deployment
    tracking = project.tracking()
    handed = tracking.find_versions(f"{project.model_name}-unlearned")
    assert len(handed) == 1
    handed_tags = tracking.version_tags(handed[0].name, handed[0].version)
    champion = tracking.get_alias(project.model_name, project.config.pipeline.alias)
    assert champion is not None
    champion_tags = tracking.version_tags(project.model_name, champion.version)
    assert champion_tags["source"] == "unlearned"
    assert champion_tags["forget_batch_id"] == handed_tags["forget_batch_id"]
    assert champion_tags["parent_model_version"] == handed_tags["parent_model_version"]
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        gpu_run = client.read_flow_run(UUID(handed_tags["prefect_flow_run_id"]))
        assert gpu_run.work_pool_name == "mixunlearn-gpu"
        assert gpu_run.state is not None
        assert gpu_run.state.is_completed()
        assert gpu_run.parameters["parent_version"] == champion_tags["parent_model_version"]
        # the schedules add future runs; the one that ran is the one we started, and it ran on the CPU pool
        started = [run for run in client.read_flow_runs() if run.state is not None and not run.state.is_scheduled()]
        assert {run.work_pool_name for run in started if run.deployment_id} == set(POOLS)
        assert all(run.state is not None and run.state.is_completed() for run in started)
