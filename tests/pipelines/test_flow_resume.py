"""A deletion batch is a durable, resumable unit: a run that stops mid-batch leaves a ledger
(``components/deletion/ledger.py``) and the next plain run finishes the batch instead of treating the reduced data
as fresh.

Each scenario makes one task raise once (the crash), checks what the ledger and the request say, then runs the
flow again normally (``verify.mode=certify`` with lenient tolerances: the unlearned path).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from mlflow.tracking import MlflowClient

from components.adapters.tracking import default_tracking_uri
from components.deletion.ledger import STAGES, BatchLedger
from pipelines import tasks
from tests.pipelines.conftest import REPO_ROOT
from tests.pipelines.test_flow_certify import LENIENT_CERTIFICATION

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "mixunlearn-digits"
REQUEST_ID = "req-2026-11-27-owner-0042"  # examples/requests/digits-data-owner.json


class CrashError(RuntimeError):
    """The simulated interruption."""


def crash_once(
    original: Callable[..., Any],
    when: Callable[..., bool] = lambda *a, **k: True,
    dying: Callable[..., None] = lambda *a, **k: None,
) -> Callable[..., Any]:
    """``original``, except that the first call for which ``when`` holds does ``dying`` (what the process got done
    before it died) and raises ``CrashError``."""
    crashed: list[bool] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not crashed and when(*args, **kwargs):
            crashed.append(True)
            dying(*args, **kwargs)
            raise CrashError("simulated interruption")
        return original(*args, **kwargs)

    return wrapper


def after_deletion(_env: Any, message: str) -> bool:
    return message.startswith("data: forget batch")


def half_written_report(_outcome: Any, out_dir: Path, *_: Any) -> None:
    """What a writer killed mid-report leaves: the temporary file of report.md, cut short."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ".report.md.killed.tmp").write_text("# Deletion rep")


# task to break, the condition, the stage the ledger records when it breaks, and the champion then: the untouched
# original until the promotion, the batch's model once it is promoted
CRASHES: dict[str, tuple[str, Callable[..., bool] | None, str, str]] = {
    "before-snapshot": ("version_data", after_deletion, "data_deleted", "1"),
    "during-unlearning": ("unlearn", None, "snapshotted", "1"),
    "after-registration": ("record_decision", None, "verified", "1"),
    "during-report": ("write_deletion_report", None, "promoted", "2"),
}
DYING = {"write_deletion_report": half_written_report}


@dataclass(frozen=True)
class Resumed:
    project: Any  # conftest.Project
    stage_at_crash: str
    request_at_crash: str | None
    alias_at_crash: str | None
    planted_run: str
    summary: Any  # pipelines.flows.RunSummary


def plant_running_run(project: Any) -> str:
    """A run left RUNNING by a killed process (as a SIGKILL leaves the parent run of the batch)."""
    client = MlflowClient(default_tracking_uri(project.root))
    experiment = client.get_experiment_by_name(project.config.pipeline.experiment)
    run = client.create_run(experiment.experiment_id, tags={"dataset": "digits"}, run_name="deletion-batch-digits")
    return run.info.run_id


@pytest.fixture(scope="module", params=sorted(CRASHES))
def resumed(request: pytest.FixtureRequest, prefect_harness: None, new_project: Callable[..., Any]) -> Resumed:
    name, when, _, _ = CRASHES[request.param]
    project = new_project(f"resume-{request.param}", "verify.mode=certify", *LENIENT_CERTIFICATION)
    project.submit_example()
    with pytest.MonkeyPatch.context() as patch:
        original, dying = getattr(tasks, name), DYING.get(name, lambda *a, **k: None)
        patch.setattr(tasks, name, crash_once(original, when or (lambda *a, **k: True), dying))
        with pytest.raises(CrashError):
            project.run()
    book = BatchLedger(project.root)
    state = book.unfinished("digits")
    assert state is not None
    alias = project.tracking().get_alias(MODEL, "champion")
    crash_facts = (state.stage, book.request_state(project.store, REQUEST_ID), alias.version if alias else None)
    planted = plant_running_run(project)
    return Resumed(project, *crash_facts, planted, project.run())


def test_the_crash_leaves_the_batch_open_and_its_request_in_it(resumed: Resumed, request: Any) -> None:
    _, _, expected_stage, expected_champion = CRASHES[request.node.callspec.params["resumed"]]

    assert resumed.stage_at_crash == expected_stage
    assert resumed.request_at_crash is not None
    assert resumed.request_at_crash.startswith("in batch batch-")
    assert resumed.alias_at_crash == expected_champion


def test_the_next_run_finishes_the_batch(resumed: Resumed) -> None:
    project, summary = resumed.project, resumed.summary
    (batch,) = project.store.batches("digits")
    state = BatchLedger(project.root).load(batch.batch_id)

    assert summary.status == "promoted"
    assert f"resumed batch {batch.batch_id} from stage {resumed.stage_at_crash}" in summary.message
    assert state is not None
    assert state.finished
    assert state.promoted_version == summary.version
    assert BatchLedger(project.root).request_state(project.store, REQUEST_ID) == "processed"
    # the whole report, and nothing a crash left half-written beside it
    assert Path(summary.report).read_text().startswith(f"# Deletion report: {batch.batch_id}\n")
    assert sorted(path.name for path in Path(summary.report).parent.iterdir()) == ["report.md"]


def test_the_champion_is_the_verified_unlearned_model_of_the_batch(resumed: Resumed) -> None:
    project, summary = resumed.project, resumed.summary
    tracking = project.tracking()
    (batch,) = project.store.batches("digits")
    champion = tracking.get_alias(MODEL, "champion")
    tags = tracking.version_tags(MODEL, summary.version)

    assert champion is not None
    assert champion.version == summary.version
    assert tags["source"] == "unlearned"
    assert tags["verdict"] == "pass"
    assert tags["forget_batch_id"] == batch.batch_id
    assert tags["parent_model_version"] == "1"
    # one original and one promotion of the batch, however often it was interrupted
    assert [ref.version for ref in tracking.find_versions(MODEL, {"forget_batch_id": batch.batch_id})] == [
        summary.version
    ]
    assert [ref.version for ref in tracking.find_versions(MODEL, {"source": "original"})] == ["1"]


def test_no_run_is_left_running(resumed: Resumed) -> None:
    client = MlflowClient(default_tracking_uri(resumed.project.root))
    experiment = client.get_experiment_by_name(resumed.project.config.pipeline.experiment)

    running = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'")

    assert running == []
    assert client.get_run(resumed.planted_run).info.status == "KILLED"


# -- a real SIGKILL ----------------------------------------------------------------------------------------------


def cli_run(project: Any, prefect_home: Path, *extra: str) -> subprocess.Popen[str]:
    """``python -m components.cli run`` on ``project`` in its own process group (and its own Prefect home)."""
    sets = [part for override in project.overrides for part in ("--set", override)]
    command = [sys.executable, "-m", "components.cli", "run", "--root", str(project.root)]
    command += ["--params", str(project.root / "params.yaml"), *sets, *extra]
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(prefect_home)
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def report_started(project: Any, state: Any) -> bool:
    """The report task is writing: the batch's report folder exists (created just before report.md is written)."""
    return (project.root / project.config.pipeline.reports_dir / state.batch.batch_id).exists()


# the kill points: every stage a batch records before it is finished, and the report being written
KILL_POINTS: dict[str, Callable[[Any, Any], bool]] = {
    **{stage: (lambda _p, state, stage=stage: state.reached(stage)) for stage in STAGES[:-1]},
    "reporting": report_started,
}


# CI's slow tier kills at the first three points that change stored state; the others run in `make test-long`
CI_KILL_POINTS = ("data_deleted", "unlearned", "promoted")


@pytest.mark.parametrize(
    "kill_at",
    [pytest.param(point, marks=() if point in CI_KILL_POINTS else pytest.mark.long, id=point) for point in KILL_POINTS],
)
def test_a_run_killed_mid_batch_is_finished_by_the_next_run(
    new_project: Callable[..., Any], tmp_path: Path, kill_at: str
) -> None:
    # given a run killed with SIGKILL once the batch has reached ``kill_at`` (or a later stage: the poll may see it
    # late, but the batch is never finished when the kill lands, which the assertion below checks)
    project = new_project(f"resume-sigkill-{kill_at}", "verify.mode=certify", *LENIENT_CERTIFICATION)
    book = BatchLedger(project.root)
    process = cli_run(project, tmp_path / "prefect", "--example")
    deadline = time.monotonic() + 600
    stage = None
    while time.monotonic() < deadline and process.poll() is None:
        states = book.states("digits") if book.directory.is_dir() else []
        if states and KILL_POINTS[kill_at](project, states[0]):
            os.killpg(process.pid, signal.SIGKILL)
            stage = states[0].stage
            break
        time.sleep(0.05)
    process.wait(timeout=60)
    assert stage is not None, process.stdout.read() if process.stdout else ""
    print(f"kill at {kill_at}: the ledger read {stage} when SIGKILL was sent")  # shown with -s (docs/reliability.md)
    # the kill may land after the last stage on a slow machine; then there is nothing to resume, and the
    # assertions below (one verified batch serves, nothing RUNNING) must hold all the same
    resumable = book.unfinished("digits") is not None

    # when the same project runs again without arguments
    again = cli_run(project, tmp_path / "prefect")
    output, _ = again.communicate(timeout=900)

    # then the batch is finished: one batch, its verified unlearned model serves, nothing is left running
    assert again.returncode == 0, output
    (batch,) = project.store.batches("digits")
    assert (f"resumed batch {batch.batch_id}" in output) == resumable
    assert book.unfinished("digits") is None
    tracking = project.tracking()
    champion = tracking.get_alias(MODEL, "champion")
    assert champion is not None
    tags = tracking.version_tags(MODEL, champion.version)
    assert (tags["forget_batch_id"], tags["source"], tags["verdict"]) == (batch.batch_id, "unlearned", "pass")
    client = MlflowClient(default_tracking_uri(project.root))
    experiment = client.get_experiment_by_name(project.config.pipeline.experiment)
    assert client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'") == []
    # and its whole report, with nothing a killed writer left half-written beside it
    reports = project.root / project.config.pipeline.reports_dir / batch.batch_id
    assert (reports / "report.md").read_text().startswith(f"# Deletion report: {batch.batch_id}\n")
    assert sorted(path.name for path in reports.iterdir()) == ["report.md"]


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:  # the run exited between poll() and this look
        return []


def _command_line(child: psutil.Process) -> str:
    # a short-lived child (a git or dvc call) may have exited, or be a zombie, by the time it is read
    try:
        return " ".join(child.cmdline())
    except psutil.Error:
        return ""


def test_a_terminated_run_stops_the_prefect_server_it_started(new_project: Callable[..., Any], tmp_path: Path) -> None:
    # given a run terminated with SIGTERM (the process only, as `kill PID` does) while its batch is under way
    project = new_project("resume-sigterm", "verify.mode=certify", *LENIENT_CERTIFICATION)
    book = BatchLedger(project.root)
    process = cli_run(project, tmp_path / "prefect", "--example")
    deadline = time.monotonic() + 600
    servers: list[psutil.Process] = []
    while time.monotonic() < deadline and process.poll() is None:
        servers = [child for child in _children(process.pid) if "uvicorn" in _command_line(child)]
        if servers and book.directory.is_dir() and book.states("digits"):
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    assert servers, process.stdout.read() if process.stdout else ""

    # when it has exited
    process.wait(timeout=120)

    # then it exited as terminated, and the ephemeral Prefect server it started is gone too (no orphan)
    assert process.returncode == 128 + signal.SIGTERM
    _, alive = psutil.wait_procs(servers, timeout=30)
    assert alive == []
    # and the batch is left for the next run, as after a kill
    assert book.unfinished("digits") is not None
