"""Submit -> promoted model through ``mixunlearn serve``, measured on a throwaway project (digits by default).

    python -m components.bench.serve_latency --out docs/results/serve-latency

Starts a Prefect server and a moto S3 server on loopback (``prefect server start``, ``moto_server``), builds a
throwaway project (git + DVC + SQLite MLflow) under ``--project``, trains its champion with one ``mixunlearn run``
(set-up, not counted), then starts ``mixunlearn serve`` with the S3 request queue on and measures three scenarios:

1. ``emit``: one ``mixunlearn request submit FILE --emit``. Submit -> promoted is from the submit command's start to
   the batch ledger's ``promoted`` transition (``.mixunlearn/batches/*.json``); event delivery is from the submit
   command's end (the event is its last act) to the start of the flow run it caused (Prefect's ``start_time``),
   i.e. automation + the runner's poll (``PREFECT_RUNNER_POLL_FREQUENCY``, default 10 s).
2. ``two-emits``: two ``request submit --emit`` started at the same moment; both requests must end up processed
   with every flow run of the on-request deployment Completed (none Failed or Crashed).
3. ``s3-burst``: ``--burst`` request objects dropped under the queue's ``incoming/`` within about a second; the
   watcher coalesces them (``triggers.coalesce_seconds``) into one batch-due event: the number of batches and of
   on-change flow runs is reported, with upload -> promoted and its shares (coalescing window, event delivery).

Reads Prefect's REST API with urllib (this package never imports Prefect). Writes ``results.json`` and
``results.md`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.adapters.storage import ObjectStore
from components.bench.prefect_server import answers, free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("params.yaml", "tuned.yaml", "grids.yaml", "examples")
EXAMPLE = "examples/requests/digits-data-owner.json"
BUCKET = "mixunlearn-queue"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
REQUEST_EVENT = "mixunlearn.forget-request.submitted"  # pipelines/deployments.py (not imported: no Prefect here)
BATCH_DUE_EVENT = "mixunlearn.batch.due"  # pipelines/triggers.py


def wait_for(what: str, check: Any, timeout: float, every: float = 0.5) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def api(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def moment(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


class Services:
    """The Prefect server, the moto server and the serve process, stopped by PID at the end."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.processes: list[subprocess.Popen[bytes]] = []
        self.prefect_port, self.moto_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.prefect_port}/api"
        self.s3_url = f"http://127.0.0.1:{self.moto_port}"
        bin_dir = Path(sys.executable).parent
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # moto takes any; this process uploads too
            os.environ.setdefault(key, "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),  # this checkout's code, also in the runner's flow-run subprocesses
            "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{work / 'prefect.db'}",
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DVC_NO_ANALYTICS": "1",
            "S3_ENDPOINT_URL": self.s3_url,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        }
        self.bin = bin_dir

    def start(self, name: str, command: Sequence[str], cwd: Path) -> subprocess.Popen[bytes]:
        log = (self.work / f"{name}.log").open("wb")
        process = subprocess.Popen(list(command), cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def up(self) -> None:
        self.start("moto", [str(self.bin / "moto_server"), "-H", "127.0.0.1", "-p", str(self.moto_port)], self.work)
        self.start(
            "prefect",
            [str(self.bin / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.prefect_port)],
            self.work,
        )
        wait_for("moto", lambda: answers(f"{self.s3_url}/moto-api/"), 60)
        wait_for("the Prefect server", lambda: answers(f"{self.api_url}/health"), 180)

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)


def cli(services: Services, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "components.cli", *args]
    result = subprocess.run(command, cwd=project, env=services.env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"mixunlearn {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def build_project(path: Path, services: Services) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, path / name)
    for args in (
        ("init", "-q", "-b", "main"),
        ("config", "user.name", "Serve Bench"),
        ("config", "user.email", "serve-bench@example.invalid"),
        ("add", "."),
        ("commit", "-q", "-m", "project"),
    ):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True, env=services.env)
    ObjectStore(BUCKET, endpoint_url=services.s3_url).ensure_bucket()


def request_file(project: Path, request_id: str, ids: list[str]) -> Path:
    document = json.loads((project / EXAMPLE).read_text())
    document.update(request_id=request_id, ids=ids, requested_at=datetime.now(UTC).isoformat(timespec="seconds"))
    path = project / "requests-in" / f"{request_id}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def fresh_ids(project: Path, count: int, taken: set[str]) -> list[str]:
    """``count`` pool IDs of the current data no request has named yet."""
    import numpy as np

    with np.load(project / "data" / "digits" / "pool.npz", allow_pickle=False) as archive:
        pool = archive["ids"].astype(str).tolist()
    chosen = [sample for sample in pool if sample not in taken][:count]
    taken.update(chosen)
    return chosen


def ledger_promoted(project: Path, request_ids: set[str]) -> dict[str, float]:
    """``{batch_id: time of its promoted transition}`` for the batches honouring any of ``request_ids``."""
    found: dict[str, float] = {}
    for path in (project / ".mixunlearn" / "batches").glob("*.json"):
        state = json.loads(path.read_text())
        if request_ids & set(state["batch"]["request_ids"]):
            promoted = [t["at"] for t in state["history"] if t["stage"] == "promoted"]
            if promoted and state["stage"] == "reported":
                found[state["batch"]["batch_id"]] = moment(promoted[0]) or 0.0
    return found


def flow_runs(services: Services, deployment: str) -> list[dict[str, Any]]:
    deployments = api(services.api_url, "/deployments/filter", {"limit": 50})
    ids = [d["id"] for d in deployments if d["name"] == deployment]
    runs = api(services.api_url, "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": ids}}, "limit": 200})
    return sorted(runs, key=lambda run: run["created"])


def event_times(services: Services, name: str, after: float) -> list[float]:
    """When each ``name`` event the server received after ``after`` occurred (the emitter's clock), oldest first."""
    since = datetime.fromtimestamp(after - 1, UTC).isoformat()
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": since}}, "limit": 50}
    found = api(services.api_url, "/events/filter", body).get("events", [])
    return sorted(moment(event["occurred"]) or 0.0 for event in found)


def settled(services: Services, deployment: str, after: float) -> list[dict[str, Any]]:
    runs = [run for run in flow_runs(services, deployment) if (moment(run["created"]) or 0) >= after]
    return runs if runs and all(run["state_type"] in TERMINAL for run in runs) else []


def scenario_emit(services: Services, project: Path, taken: set[str]) -> dict[str, Any]:
    path = request_file(project, "bench-emit-1", fresh_ids(project, 20, taken))
    started = time.time()
    cli(services, project, "request", "submit", str(path), "--emit")
    submitted = time.time()
    (promoted,) = wait_for("the batch", lambda: ledger_promoted(project, {"bench-emit-1"}), 900).values()
    runs = wait_for("the flow run", lambda: settled(services, "digits-on-request", started), 300)
    (emitted,) = event_times(services, REQUEST_EVENT, started)
    return {
        "scenario": "emit",
        **timeline(started, emitted, runs[0], promoted),
        "submit_command_s": round(submitted - started, 2),
        "flow_runs": [run["state_type"] for run in runs],
    }


def timeline(started: float, emitted: float, run: dict[str, Any], promoted: float) -> dict[str, float]:
    """Where the time from the request's arrival to the promoted model went: until the event was emitted, event
    delivery (emitted -> flow run created by the automation), the runner's pickup and the flow-run process start
    (created -> Running), and the batch itself (Running -> promoted)."""
    created, running = moment(run["created"]) or 0.0, moment(run["start_time"]) or 0.0
    total = promoted - started
    return {
        "arrival_to_promoted_s": round(total, 2),
        "arrival_to_event_s": round(emitted - started, 2),
        "event_delivery_s": round(created - emitted, 2),
        "runner_pickup_and_process_start_s": round(running - created, 2),
        "batch_running_to_promoted_s": round(promoted - running, 2),
        "event_delivery_share": round((created - emitted) / total, 3),
        "event_to_running_share": round((running - emitted) / total, 3),
    }


def scenario_two_emits(services: Services, project: Path, taken: set[str]) -> dict[str, Any]:
    paths = [request_file(project, f"bench-pair-{i}", fresh_ids(project, 10, taken)) for i in (1, 2)]
    started = time.time()
    command = [sys.executable, "-m", "components.cli", "request", "submit"]
    processes = [
        subprocess.Popen([*command, str(p), "--emit"], cwd=project, env=services.env, stdout=subprocess.PIPE)
        for p in paths
    ]
    codes = [process.wait() for process in processes]
    ids = {"bench-pair-1", "bench-pair-2"}

    def honoured() -> dict[str, float] | None:
        batches = ledger_promoted(project, ids)
        done = {r for b in _batch_requests(project, batches) for r in b} >= ids
        return batches if done else None

    batches = wait_for("both requests", honoured, 900)
    runs = wait_for("the flow runs", lambda: settled(services, "digits-on-request", started), 300)
    return {
        "scenario": "two-emits",
        "submit_exit_codes": codes,
        "both_processed": all((project / "data" / "requests" / "processed" / f"{i}.json").exists() for i in ids),
        "batches": len(batches),
        "submit_to_last_promoted_s": round(max(batches.values()) - started, 2),
        "flow_runs": [run["state_type"] for run in runs],
        "failed_runs": sum(run["state_type"] in ("FAILED", "CRASHED") for run in runs),
    }


def _batch_requests(project: Path, batches: dict[str, float]) -> list[list[str]]:
    ledger = project / ".mixunlearn" / "batches"
    return [json.loads((ledger / f"{b}.json").read_text())["batch"]["request_ids"] for b in batches]


def scenario_s3_burst(services: Services, project: Path, taken: set[str], burst: int, window: float) -> dict[str, Any]:
    queue = ObjectStore(BUCKET, endpoint_url=services.s3_url, prefix="mixunlearn/requests")
    ids = {f"bench-s3-{i}" for i in range(burst)}
    started = time.time()
    for request_id in sorted(ids):
        body = request_file(project, request_id, fresh_ids(project, 5, taken)).read_bytes()
        queue.write(f"incoming/{request_id}.json", body)
    uploaded = time.time()
    batches = wait_for("the burst's batch", lambda: ledger_promoted(project, ids), 900)
    runs = wait_for("the flow runs", lambda: settled(services, "digits-on-change", started), 300)
    emitted = event_times(services, BATCH_DUE_EVENT, started)
    return {
        "scenario": "s3-burst",
        "requests": burst,
        "upload_s": round(uploaded - started, 2),
        "coalesce_window_s": window,
        "batch_due_events": len(emitted),
        "batches": len(batches),
        "on_change_flow_runs": len(runs),
        **timeline(started, emitted[0], runs[0], max(batches.values())),
        "flow_runs": [run["state_type"] for run in runs],
    }


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| scenario | measure | value |", "|---|---|---|"]
    for row in rows:
        for key, value in row.items():
            if key != "scenario":
                lines.append(f"| {row['scenario']} | {key} | {value} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/serve-latency"))
    parser.add_argument("--project", type=Path, default=None, help="Throwaway project (default: a temp folder)")
    parser.add_argument("--burst", type=int, default=5, help="Request objects in the S3 burst")
    parser.add_argument("--coalesce", type=float, default=5.0, help="triggers.coalesce_seconds for serve")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Extra params override")
    parser.add_argument("--scenarios", default="emit,two-emits,s3-burst", help="Comma-separated scenarios to run")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    project = (args.project or work / "project").resolve()
    services = Services(work)
    overrides = [
        f"triggers.s3_queue={{bucket: {BUCKET}}}",
        f"triggers.coalesce_seconds={args.coalesce}",
        "triggers.poll_seconds=1",
        *args.overrides,
    ]
    sets = [part for override in overrides for part in ("--set", override)]
    try:
        services.up()
        build_project(project, services)
        cli(services, project, "run", *sets)  # set-up: materialise digits, train and register the champion
        services.start("serve", [sys.executable, "-m", "components.cli", "serve", *sets], project)
        wait_for(
            "the served deployments",
            lambda: len(api(services.api_url, "/deployments/filter", {"limit": 50})) >= 4,
            180,
        )
        time.sleep(5)  # the runner's first poll and the automations' load
        taken: set[str] = set(json.loads((project / EXAMPLE).read_text())["ids"])
        scenarios = {
            "emit": lambda: scenario_emit(services, project, taken),
            "two-emits": lambda: scenario_two_emits(services, project, taken),
            "s3-burst": lambda: scenario_s3_burst(services, project, taken, args.burst, args.coalesce),
        }
        rows = [scenarios[name]() for name in args.scenarios.split(",")]
    finally:
        services.stop()
    document = {
        "command": " ".join(["python -m components.bench.serve_latency", *(argv or sys.argv[1:])]),
        "runner_poll_frequency_s": float(os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY", "10")),
        "overrides": overrides,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.out / "results.md").write_text(render(rows) + "\n")
    print(render(rows))  # noqa: T201
    print(f"logs in {work}")  # noqa: T201


if __name__ == "__main__":
    main()
