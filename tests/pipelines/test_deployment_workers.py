"""``prefect.yaml`` on real services on loopback: a Prefect server, an MLflow tracking server with its artifacts on S3
(moto), the DVC remote on that S3, and one process worker per work pool, each in its own checkout. The deletion batch
runs on the CPU pool and hands its unlearning to the GPU pool's deployment (``pipelines/unlearn.py``) through the
registry; the GPU worker's checkout is a clone with no data, which reads the batch's data version from S3 by md5.

Slow: every flow-run process imports the whole stack; 4-5 minutes on two busy cores.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import boto3
import pytest

from components.adapters.tracking import TrackingStore
from tests.pipelines.conftest import CERTIFY_LENIENTLY, QUIET, REPO_ROOT, Project, git

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.integration]

BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
POOLS = ("mixunlearn-cpu", "mixunlearn-gpu")
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS["AWS_DEFAULT_REGION"],
    )


class Services:
    """The processes this test starts (server, workers), each logging to a file; stopped by PID."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs, self.env = logs, env
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *argv: str, **env: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**self.env, **env}, cwd=REPO_ROOT
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

    def wait_for(self, url: str, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                return
            except OSError:
                assert time.monotonic() < deadline, f"{url} did not answer in {seconds:.0f} s\n" + self.tails()
                time.sleep(0.5)

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


@dataclass(frozen=True)
class Deployed:
    services: Services
    api: str
    tracking_uri: str
    s3: str
    gpu_checkout: Path


@pytest.fixture
def deployed(project: Project, tmp_path: Path) -> Iterator[Deployed]:
    """The services, both work pools, ``prefect deploy --all`` from the repository's prefect.yaml, and one process
    worker per pool: the CPU worker in ``project``'s checkout, the GPU worker in a clone of it; both with this
    worktree's code."""
    api = f"http://127.0.0.1:{_free_port()}/api"
    s3 = f"http://127.0.0.1:{_free_port()}"
    tracking_uri = f"http://127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        **QUIET,
        **AWS,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MIXUNLEARN_DVC_REMOTE": "s3://mixunlearn-dvc/digits",
        "S3_ENDPOINT_URL": s3,
        "PYTHONPATH": str(REPO_ROOT),  # the flow-run processes import this checkout's code, not an installed copy
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("MIXUNLEARN_GPU_DEPLOYMENT", None)  # the CPU pool's job variables set it, as prefect.yaml says
    gpu_checkout = tmp_path / "gpu-checkout"
    git(tmp_path, "clone", "-q", str(project.root), str(gpu_checkout))
    running = Services(tmp_path, env)
    port = api.split(":")[2].split("/")[0]
    try:
        running.start("moto", str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", s3.rsplit(":", 1)[1])
        running.start("prefect-server", PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port)
        running.wait_for(f"{s3}/moto-api/")
        for bucket in ("mixunlearn-mlflow", "mixunlearn-dvc"):
            _s3(s3).create_bucket(Bucket=bucket)
        running.start(
            "mlflow-server",
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--artifacts-destination",
            "s3://mixunlearn-mlflow/",
            "--host",
            "127.0.0.1",
            "--port",
            tracking_uri.rsplit(":", 1)[1],
            "--workers",
            "1",
            MLFLOW_S3_ENDPOINT_URL=s3,
        )
        running.wait_for(f"{api}/health")
        running.wait_for(f"{tracking_uri}/health")
        for pool in POOLS:
            running.cli("work-pool", "create", pool, "--type", "process")
        running.cli("--no-prompt", "deploy", "--all", "--prefect-file", str(REPO_ROOT / "prefect.yaml"))
        for pool, checkout in zip(POOLS, (project.root, gpu_checkout), strict=True):
            running.start(
                f"worker-{pool}",
                *(PREFECT, "worker", "start", "--pool", pool, "--type", "process", "--limit", "1"),
                MIXUNLEARN_PROJECT_DIR=str(checkout),
            )
        yield Deployed(running, api, tracking_uri, s3, gpu_checkout)
    finally:
        running.stop()


def test_deletion_batch_runs_on_the_cpu_worker_and_unlearns_on_the_gpu_worker(
    project: Project, deployed: Deployed
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # when the deletion batch's deployment is run on the CPU pool
    deployed.services.cli(
        "deployment",
        "run",
        "deletion-batch-project/scheduled",
        "--params",
        json.dumps({"overrides": list(project.overrides)}),
        "--watch",
        "--watch-timeout",
        "600",
        timeout=660,
    )
    # then the unlearned model was handed over through the tracking server by a run of the GPU deployment
    tracking = TrackingStore(deployed.tracking_uri, project.config.pipeline.experiment)
    handed = tracking.find_versions(f"{project.model_name}-unlearned")
    assert len(handed) == 1
    handed_tags = tracking.version_tags(handed[0].name, handed[0].version)
    champion = tracking.get_alias(project.model_name, project.config.pipeline.alias)
    assert champion is not None
    champion_tags = tracking.version_tags(project.model_name, champion.version)
    assert champion_tags["source"] == "unlearned"
    assert champion_tags["forget_batch_id"] == handed_tags["forget_batch_id"]
    assert champion_tags["parent_model_version"] == handed_tags["parent_model_version"]
    with temporary_settings({PREFECT_API_URL: deployed.api}), get_client(sync_client=True) as client:
        gpu_run = client.read_flow_run(UUID(handed_tags["prefect_flow_run_id"]))
        assert gpu_run.work_pool_name == "mixunlearn-gpu"
        assert gpu_run.state is not None
        assert gpu_run.state.is_completed()
        assert gpu_run.parameters["parent_version"] == champion_tags["parent_model_version"]
        # the schedules add future runs; the ones that ran all completed, on both pools
        started = [run for run in client.read_flow_runs() if run.state is not None and not run.state.is_scheduled()]
        assert {run.work_pool_name for run in started if run.deployment_id} == set(POOLS)
        assert all(run.state is not None and run.state.is_completed() for run in started)
    # and the state is on S3 and the tracking server: the GPU checkout never held the data, the registry's
    # models and the data versions are objects in the buckets, and no endpoint was committed
    assert not (deployed.gpu_checkout / "data").exists()
    store = _s3(deployed.s3)
    for bucket in ("mixunlearn-mlflow", "mixunlearn-dvc"):
        assert store.list_objects_v2(Bucket=bucket).get("KeyCount", 0) > 0
    committed = project.git("show", "HEAD:.dvc/config")
    assert deployed.s3 not in committed
    assert "s3://" not in committed
