"""The ``mixunlearn`` command line, built in this one place: thin wrappers over component functions.

``python -m components.cli`` and the ``mixunlearn`` console script are the same app. The commands that orchestrate
(``run``, ``serve``, ``request submit --emit``) import the Prefect layer (``pipelines/``) inside the command, so
importing this module never imports Prefect.

Every user error (bad data directory, unknown method, malformed forget request or parameter) ends with a one-line
``error: ...`` on stderr and exit status 2; nothing written earlier is left half-finished.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import platform
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import components._requires  # noqa: F401  (one error line, not a traceback, when torch is missing)
from components.config import DEFAULT_PARAMS, ConfigError, PipelineConfig, load_config, resolve_params
from components.data.types import DataError
from components.runtime import Callback

if TYPE_CHECKING:
    from components.deletion.admission import AdmissionLimits
    from components.deletion.store import DataStore


def process_seconds() -> float:
    """Wall seconds since this process started (interpreter start-up and imports included); Linux reads it from
    /proc, elsewhere it counts from this module's import."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()

app = typer.Typer(add_completion=False, no_args_is_help=True, help="MixUnlearn: verified machine unlearning.")
request_app = typer.Typer(help="Forget requests.", no_args_is_help=True)
app.add_typer(request_app, name="request")
console = Console(stderr=True)

# Options shared by several commands, declared once.
ParamsOption = Annotated[Path, typer.Option(help="Parameter file")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a parameter: key.path=value (repeatable)")]
RootOption = Annotated[Path, typer.Option(help="Project root (data/, mlflow/, data.dvc)")]
DatasetOption = Annotated[str | None, typer.Option(help="Dataset name (default: base.dataset in params.yaml)")]
ScenarioOption = Annotated[str | None, typer.Option(help="class:<c> | data:<f>:<classes> | random:<f> | ids:<file>")]

BENCH_EXAMPLES = """
Examples:

  mixunlearn bench --dataset digits --scenario class:0 --methods retrain,mixunlearn --seeds 0,1,2 --out out/d

  mixunlearn bench --dataset fashion_mnist --scenario data:0.4:5-9 --methods all --seeds 0 --out out/f

  mixunlearn bench --dataset mnist --data-dir ~/mnist --set train.recipes.default.epochs=5 --out out/m
"""


class UserError(Exception):
    """An error whose message is shown to the user as is."""


def fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def guarded(function: Callable[[], None]) -> None:
    """Run ``function``; turn known error types into one line and exit status 2."""
    try:
        function()
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        fail(f"invalid {error.title} setting {where}: {first['msg']}")
    except (ConfigError, DataError, UserError, ValueError, FileNotFoundError, RuntimeError) as error:
        lines = str(error).splitlines() or [error.__class__.__name__]
        # Contract failures list one failing expectation per line after the summary: show them all.
        fail("\n".join(lines) if getattr(error, "itemised", False) else lines[0])


def load_params(params: Path, override: list[str] | None, required: bool = False) -> PipelineConfig:
    """params.yaml with overrides. The default name falls back to the packaged params.yaml when the working
    directory has none (``components.config.resolve_params``, said on stderr); unless ``required``, the built-in
    defaults stand in when neither exists. An explicitly named file must exist."""
    resolved = resolve_params(params)
    if resolved != params:
        console.print(f"[dim]no ./{params}: using the packaged defaults {resolved}[/dim]", highlight=False)
    optional = not required and not resolved.exists() and params == DEFAULT_PARAMS
    return load_config(None if optional else resolved, override or [])


def shipped_file(path: Path, name: str | Path) -> Path:
    """``path`` when it exists, else the packaged copy of ``name`` (an installed package used outside the checkout,
    ``components.packaged``), else ``path`` (whose absence the caller reports)."""
    if path.exists():
        return path
    from components.packaged import default_file

    return default_file(name) or path


def parse_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UserError(f"{what} is empty")
    return items


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(item) for item in parse_list(text, "--seeds")]
    except ValueError:
        raise UserError(f"--seeds must be a comma-separated list of integers, got {text!r}") from None


def progress_callbacks(progress: Progress) -> Callable[[str, int], Sequence[Callback]]:
    """A callback factory that shows one progress bar per (method, seed) cell."""

    def factory(method: str, seed: int) -> Sequence[Callback]:
        state: dict[str, Any] = {}

        def callback(event: str, values: Mapping[str, float], step: int) -> None:
            if event.endswith("_start"):
                state["task"] = progress.add_task(f"{method} seed {seed}", total=values.get("total_steps"))
            elif event.endswith("_step") and "task" in state:
                progress.update(state["task"], completed=step)

        return [callback]

    return factory


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


@app.command(epilog=BENCH_EXAMPLES)
def bench(
    dataset: DatasetOption = None,
    scenario: ScenarioOption = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated method names, or 'all'")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 0,1,2")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory for results.json/.md/.png")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Directory with the dataset's files on disk")] = None,
    model: Annotated[str | None, typer.Option(help="Override the dataset's default model")] = None,
    params: ParamsOption = DEFAULT_PARAMS,
    override: SetOption = None,
    jobs: Annotated[int, typer.Option(help="Parallel processes for (seed, method) cells; 1 for timings")] = 1,
) -> None:
    """Run methods against a paired Retrain and write results.json, results.md and a plot."""

    def run() -> None:
        from components.bench.harness import BenchRequest, run_bench
        from components.reporting import markdown_table, results_document, write_results
        from components.unlearning.base import method_names

        config = load_params(params, override)
        names = config.bench.methods if methods is None else parse_list(methods, "--methods")
        if names == ["all"]:
            names = method_names()
        request = BenchRequest(
            dataset=dataset or config.base.dataset,
            scenario=scenario or config.data.scenario,
            methods=tuple(names),
            seeds=tuple(parse_seeds(seeds) if seeds else config.bench.seeds),
            config=config,
            data_dir=data_dir or config.base.data_dir,
            model=model,
        )
        config.bench.check_reporting_seeds(request.seeds)
        out_dir = out or Path(config.bench.out)
        started = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            rows = run_bench(request, out_dir, progress_callbacks(progress), jobs=jobs)
        extra = {
            "methods": list(request.methods),
            "seeds": list(request.seeds),
            "model": model,
            "jobs": jobs,
            "command": " ".join(["mixunlearn", *sys.argv[1:]]),
            "machine": f"{platform.machine()} {platform.processor() or ''} {_device_name(config)}".strip(),
            "wall_seconds": time.perf_counter() - started,
            "peak_rss_mb": peak_rss_mb(),
        }
        document = results_document(request.dataset, request.scenario, rows, extra)
        write_results(document, out_dir)
        typer.echo(markdown_table(document))
        typer.echo(f"wrote {out_dir / 'results.json'}, results.md, results.png")

    guarded(run)


@app.command()
def tune(
    dataset: DatasetOption = None,
    scenario: ScenarioOption = None,
    methods: Annotated[str, typer.Option(help="Comma-separated method names with a grid, or 'all'")] = "all",
    seeds: Annotated[
        str | None, typer.Option(help="Tuning seeds (default: bench.tuning.seeds; never a reporting seed)")
    ] = None,
    grids: Annotated[Path, typer.Option(help="YAML of {method: {key: [values]}}")] = Path("grids.yaml"),
    tuned: Annotated[Path, typer.Option(help="YAML the winners are merged into")] = Path("tuned.yaml"),
    report: Annotated[
        Path | None, typer.Option(help="JSON of each method's grid size, winner, edge keys and collapse")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
    override: SetOption = None,
) -> None:
    """Select each method's setting on the validation split (never the test set) and record it."""

    def run() -> None:
        import yaml

        from components.bench.harness import BenchRequest
        from components.bench.tuning import grid_size, load_grids, tune_method
        from components.files import write_atomically

        config = load_params(params, override)
        document = yaml.safe_load(tuned.read_text()) if tuned.exists() else {}
        document = document or {}
        if not isinstance(document, dict):
            raise UserError(f"{tuned} must map datasets to scenarios to methods")
        chosen_dataset = dataset or config.base.dataset
        grids_file = shipped_file(grids, grids.name) if grids == Path("grids.yaml") else grids
        all_grids = load_grids(grids_file, chosen_dataset)
        names = list(all_grids) if methods == "all" else parse_list(methods, "--methods")
        missing = [name for name in names if name not in all_grids]
        if missing:
            raise UserError(f"no grid for {', '.join(missing)} in {grids}")
        request = BenchRequest(
            dataset=chosen_dataset,
            scenario=scenario or config.data.scenario,
            methods=tuple(names),
            seeds=tuple(parse_seeds(seeds) if seeds else config.bench.tuning.seeds),
            config=config,
            data_dir=config.base.data_dir,
        )
        config.bench.check_tuning_seeds(request.seeds)
        entries = []
        for name in names:
            result = tune_method(
                name,
                all_grids[name],
                request,
                lambda point, name=name: typer.echo(
                    f"{name:32s} {dict(point.settings)} val-gap {point.validation_gap:.2f} RTE {point.seconds:.2f}s"
                    + (" COLLAPSED" if point.collapsed else "")
                ),
                config.bench.tuning.edge_extensions,
            )
            best = result.points[0]
            edges = list(result.edges)
            document.setdefault(request.dataset, {}).setdefault(request.scenario, {})[name] = dict(best.settings)
            typer.echo(f"selected for {name} ({request.dataset}, {request.scenario}): {dict(best.settings)}")
            if result.all_collapsed:
                typer.echo(f"COLLAPSED: every one of the {len(result.points)} grid points of {name} collapsed")
            if edges:
                typer.echo(f"edge: {name}'s winner is still on the edge of what was evaluated in {', '.join(edges)}")
            entries.append(
                {
                    "dataset": request.dataset,
                    "scenario": request.scenario,
                    "method": name,
                    "grid_size": grid_size(all_grids[name]),
                    "points_past_the_edge": result.extended,
                    "seeds": list(request.seeds),
                    "selected": dict(best.settings),
                    "validation_gap": best.validation_gap,
                    "edge_keys": edges,
                    "collapsed_points": sum(point.collapsed for point in result.points),
                    "all_collapsed": result.all_collapsed,
                }
            )
        header = "# Written by `mixunlearn tune`: settings selected on the validation split only (never test).\n"
        write_atomically(tuned, header + yaml.safe_dump(document, sort_keys=True))
        typer.echo(f"wrote {tuned}")
        if report is not None:
            write_atomically(report, json.dumps(entries, indent=2) + "\n")

    guarded(run)


def _device_name(config: PipelineConfig) -> str:
    import torch

    from components.runtime import resolve_device

    device = resolve_device(config.base.device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="validate | parent | unlearn | retrain | verify")],
    root: RootOption = Path(),
    params: ParamsOption = DEFAULT_PARAMS,
    override: SetOption = None,
) -> None:
    """Run one pipeline stage from files (what `dvc repro` calls); outputs go under artifacts/<stage>/."""

    def run() -> None:
        from components.stages.repro import STAGES, StageContext

        if name not in STAGES:
            raise UserError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
        result = STAGES[name](StageContext(load_params(params, override, required=True), root.resolve()))
        typer.echo(json.dumps(result, indent=2, default=str)[:4000])

    guarded(run)


@app.command()
def methods() -> None:
    """List the registered unlearning methods."""
    from components.unlearning.base import METHODS

    for spec in METHODS.values():
        typer.echo(f"{spec.name:32s} {spec.description}")


@app.command()
def config(
    params: ParamsOption = DEFAULT_PARAMS,
    override: SetOption = None,
    schema: Annotated[bool, typer.Option(help="Print the JSON schema instead of the values")] = False,
) -> None:
    """Print the validated configuration (or its JSON schema)."""

    def run() -> None:
        if schema:
            typer.echo(json.dumps(PipelineConfig.model_json_schema(), indent=2))
            return
        typer.echo(json.dumps(load_params(params, override, required=True).model_dump(), indent=2))

    guarded(run)


def _quiet_prefect() -> None:
    """Offline defaults: no telemetry, a patient ephemeral server start on a busy 2-core machine."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _quiet_libraries(verbose: bool = False) -> None:
    """MLflow and GX log routine INFO lines (table creation, temp dirs, 'registered model'); keep warnings. Without
    ``verbose`` the flow commands also drop Prefect's task logs and MLflow's own stream ('Successfully registered
    model', 'Created version'), which bypasses its loggers."""
    if verbose:
        return
    for name in ("mlflow", "great_expectations", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from components.adapters.tracking import quiet_mlflow

    quiet_mlflow()


VerboseOption = Annotated[bool, typer.Option("--verbose", help="Library logs and full tracebacks")]
NoWaitOption = Annotated[
    bool, typer.Option("--no-wait", help="Exit with status 3 instead of waiting when the model is locked")
]


def failure_line(error: BaseException) -> str:
    """One line for an error that escaped ``guarded`` (a flow failure wrapping an adapter's error): the outermost
    message, and the root cause's when it differs."""
    root = error
    seen = {id(error)}
    while (nested := root.__cause__ or root.__context__) is not None and id(nested) not in seen:
        seen.add(id(nested))
        root = nested

    def first(e: BaseException) -> str:
        lines = str(e).strip().splitlines()
        return f"{e.__class__.__name__}: {lines[0]}" if lines else e.__class__.__name__

    return first(error) if root is error else f"{first(error)} (cause: {first(root)})"


def guarded_flow(function: Callable[[], None], verbose: bool) -> None:
    """``guarded`` for the commands that run a flow: every failure is one line and exit status 2 (a locked model
    under --no-wait: status 3); ``verbose`` lets the tracebacks through."""
    from components.locking import LockBusyError

    try:
        if verbose:
            function()
        else:
            guarded(function)
    except LockBusyError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(3) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as error:
        if verbose:
            raise
        fail(failure_line(error))


class StageLines:
    """The flow's stages as they finish, one line each, and a bar per training or unlearning loop."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None

    def stage(self, name: str, seconds: float, outcome: str) -> None:
        mark = "" if outcome == "completed" else f"  {outcome}"
        self.progress.console.print(f"  {name:24s}{seconds:6.1f} s{mark}", highlight=False)

    def loop(self, event: str, values: Mapping[str, float], step: int) -> None:
        if event.endswith("_start"):
            if self.task is not None:
                self.progress.remove_task(self.task)
            label = {"train_start": "training", "unlearn_start": "unlearning"}.get(event, event[: -len("_start")])
            self.task = self.progress.add_task(label, total=values.get("total_steps"))
        elif event.endswith("_step") and self.task is not None:
            self.progress.update(self.task, completed=step)


def flow_progress() -> Progress:
    return Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def run_observed(flow: Callable[[], Any]) -> Any:
    """Run ``flow()`` showing one line per finished stage and a progress bar per loop."""
    from pipelines.progress import observe

    with flow_progress() as progress:
        lines = StageLines(progress)
        with observe(lines.stage, [lines.loop]):
            return flow()


def model_locked(root: Path, config: PipelineConfig, no_wait: bool) -> Any:
    """The model's file lock (``components/locking.py``); a second run waits, saying for whom."""
    from components.locking import model_lock

    name = config.pipeline.registered_model.format(dataset=config.base.dataset)

    def waiting(pid: int | None) -> None:
        console.print(f"waiting for {name} lock held by {f'pid {pid}' if pid else 'another process'}", highlight=False)

    return model_lock(root.resolve(), name, wait=not no_wait, on_wait=waiting)


def free_stale_slot(config: PipelineConfig) -> None:
    """Under the file lock, on an ephemeral Prefect server, no live run holds the model's slot: free one a killed
    run left in the shared database."""
    from pipelines.concurrency import release_stale_slots, uses_ephemeral_server

    if uses_ephemeral_server():
        release_stale_slots(config.pipeline.registered_model.format(dataset=config.base.dataset))


EXIT_AT_ONCE = threading.Event()


def start_flow(
    import_flow: Callable[[], Callable[[PipelineConfig, str], Any]], config: PipelineConfig, root: Path, verbose: bool
) -> Any:
    """Run the flow ``import_flow`` returns on the project at ``root`` under the model's lock: a lost registry stops
    it before it runs; then library noise off, this model's stale Prefect slot freed, and the stage lines shown.
    The ephemeral Prefect server boots while the flow's modules are imported (``pipelines/server.py``)."""
    from components.adapters.services import check_tracking, open_versioning

    check_tracking(root, open_versioning(root))
    from pipelines.server import boot_ephemeral_server

    server_ready = boot_ephemeral_server()
    flow = import_flow()
    _quiet_libraries(verbose)
    server_ready()
    free_stale_slot(config)
    try:
        return run_observed(lambda: flow(config, str(root.resolve())))
    finally:  # what the flow did is stored (or rolled back) by now; see main()
        EXIT_AT_ONCE.set()


def locked_command(
    params: Path,
    override: list[str] | None,
    dataset: str | None,
    root: Path,
    no_wait: bool,
    body: Callable[[PipelineConfig], None],
) -> Callable[[], None]:
    """A command that loads the config (``--dataset`` as an override) and runs ``body`` holding the model's lock."""

    def go() -> None:
        _quiet_prefect()
        overrides = list(override or []) + ([f"base.dataset={dataset}"] if dataset else [])
        config = load_params(params, overrides, required=True)
        with model_locked(root, config, no_wait):
            body(config)

    return go


def needs_restore(root: Path, config: PipelineConfig) -> bool:
    """A fresh checkout: ``data.dvc`` records a data version, but ``data/`` does not hold the dataset."""
    from components.deletion.store import DataStore

    return (root / "data.dvc").exists() and not DataStore(root / "data").is_materialised(config.base.dataset)


def restore_committed(root: Path, config: PipelineConfig) -> DataStore:
    """The project's data store, with ``data/`` first restored from DVC when ``needs_restore``: admission must see
    the current pool, the batch records and the known requests before anything is queued, and ``data/`` must never
    come back from the source dataset, which still holds every forgotten sample (``steps.restore_data``)."""
    from components.deletion.store import DataStore

    store = DataStore(root / "data")
    if needs_restore(root, config):
        from components.adapters.services import open_versioning
        from components.stages.steps import restore_data

        how = restore_data(config, store, open_versioning(root))
        if how is not None:
            typer.echo(f"restored data/ from {how}: the version data.dvc records")
    return store


@app.command()
def run(
    dataset: DatasetOption = None,
    request: Annotated[list[Path] | None, typer.Option(help="Forget request file(s) to queue before the run")] = None,
    example: Annotated[bool, typer.Option(help="Queue the shipped example request (pipeline.example_request)")] = False,
    root: RootOption = Path(),
    params: ParamsOption = DEFAULT_PARAMS,
    override: SetOption = None,
    no_wait: NoWaitOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Run the deletion pipeline: validate, version, (re)use the original, unlearn, retrain, verify, promote.

    One run per registered model at a time: a second one waits for the first (or, with --no-wait, exits 3)."""

    def locked(config: PipelineConfig) -> None:
        store = restore_committed(root, config)
        queue = list(request or [])
        if example and config.pipeline.example_request:
            queue.append(shipped_file(root / config.pipeline.example_request, config.pipeline.example_request))
        from components.deletion.store import ForgetRequest

        limits = admission_limits(config)
        seen: dict[str, ForgetRequest] = {}
        for path in queue:  # check every request (admission included) before queueing any
            candidate = ForgetRequest.load(path, limits.max_file_bytes)
            if candidate.dataset != config.base.dataset:
                raise UserError(f"request {candidate.request_id} is for {candidate.dataset}, not {config.base.dataset}")
            if seen.setdefault(candidate.request_id, candidate) != candidate:
                raise UserError(f"request {candidate.request_id} is given twice with different content ({path})")
            store.check_submission(path, limits)
        queued: list[bool] = []
        for path in queue:
            submitted, added = store.submit(path, limits)
            queued.append(added)
            typer.echo(
                f"{'queued' if added else 'already known'}: request {submitted.request_id} "
                f"({len(submitted.ids)} samples, {submitted.requester})"
            )
        if not any(added for added in queued):
            from components.stages.preflight import idle_message

            idle = idle_message(config, root.resolve())
            if idle is not None:
                typer.echo(idle)
                typer.echo(f"wall {process_seconds():.1f} s")
                EXIT_AT_ONCE.set()
                return

        def deletion_flow() -> Callable[[PipelineConfig, str], Any]:
            from pipelines.flows import deletion_batch

            return deletion_batch

        summary = start_flow(deletion_flow, config, root, verbose)
        typer.echo(summary.message)
        if summary.metrics_table:
            typer.echo(summary.metrics_table)
        if summary.report:
            typer.echo(f"report: {summary.report}")
        wall = process_seconds()
        typer.echo(
            f"wall {wall:.1f} s: compute stages (training, unlearning, evaluation) {summary.compute_seconds:.1f} s, "
            f"orchestration, tracking, versioning and validation {wall - summary.compute_seconds:.1f} s "
            f"({100 * (wall - summary.compute_seconds) / wall:.0f}%)"
        )

    guarded_flow(locked_command(params, override, dataset, root, no_wait, locked), verbose)


@app.command("retrain-audit")
def retrain_audit(
    dataset: DatasetOption = None,
    root: RootOption = Path(),
    params: ParamsOption = DEFAULT_PARAMS,
    override: SetOption = None,
    no_wait: NoWaitOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Audit the serving model against a model retrained from scratch on the current data (idempotent per data
    version); a failing model is replaced by the retrained one (audit.promote_on_failure). Waits for a deletion
    batch of the same model to finish (or, with --no-wait, exits 3)."""

    def locked(config: PipelineConfig) -> None:
        def audit_flow() -> Callable[[PipelineConfig, str], Any]:
            from pipelines.audit import retrain_audit

            return retrain_audit

        summary = start_flow(audit_flow, config, root, verbose)
        if summary.status == "purged":
            raise UserError(summary.message)
        typer.echo(summary.message)
        if summary.report:
            typer.echo(f"report: {summary.report}")
        typer.echo(f"wall {process_seconds():.1f} s, compute {summary.compute_seconds:.1f} s")

    guarded_flow(locked_command(params, override, dataset, root, no_wait, locked), verbose)


@app.command()
def purge(
    dataset: DatasetOption = None,
    older_than: Annotated[
        float | None,
        typer.Option(help="Retention in days (default: pipeline.purge_after_days in params.yaml)", min=0),
    ] = None,
    root: RootOption = Path(),
    params: ParamsOption = DEFAULT_PARAMS,
    override: SetOption = None,
    no_wait: NoWaitOption = False,
) -> None:
    """Delete forgotten samples from older data versions (DVC cache and remote: a local directory or s3://) once the
    retention period has passed; batch records, requests, MLflow tags and a purge record (data/purges/) keep the audit
    trail."""

    def go() -> None:
        overrides = list(override or []) + ([f"base.dataset={dataset}"] if dataset else [])
        config = load_params(params, overrides, required=True)
        from components.adapters.services import open_versioning
        from components.deletion.store import DataStore
        from components.stages.steps import purge_data

        with model_locked(root, config, no_wait):
            from components.deletion.ledger import BatchLedger

            # an open batch resumes from its parent data version, which this purge could delete
            unfinished = BatchLedger(root).unfinished(config.base.dataset)
            if unfinished is not None:
                raise UserError(
                    f"batch {unfinished.batch.batch_id} is unfinished (stage {unfinished.stage}) and resumes from its "
                    "parent data version: finish it with `mixunlearn run` first; nothing was purged"
                )
            outcome = purge_data(config, DataStore(root / "data"), open_versioning(root), older_than)
        record = outcome.record
        for version in record.versions if record else ():
            typer.echo(
                f"purged data version {version.git_rev[:12]} ({version.data_md5}): "
                f"{', '.join(version.files) or 'no sample file stored here'}"
                f"{'' if version.objects else ' (its objects were already absent)'}; "
                f"forgotten by {', '.join(version.batch_ids)}"
            )
        for waiting in outcome.waiting:
            typer.echo(
                f"kept data version {waiting.git_rev[:12]} ({waiting.data_md5}): retention of "
                f"{outcome.retention_days:g} days not passed (superseded {waiting.superseded_at:%Y-%m-%d}, due "
                f"{waiting.due_on(outcome.retention_days):%Y-%m-%d})"
            )
        if record is not None:
            typer.echo(f"purge record: data/purges/{record.purge_id}.json ({len(record.deleted)} objects deleted)")
        elif not outcome.waiting:
            typer.echo("nothing to purge: no older data version holds forgotten samples")

    guarded(go)


@app.command("audit")
def audit_lineage(
    target: Annotated[
        str | None,
        typer.Argument(help="MODEL[@ALIAS|/VERSION] (default: the configured registered model at pipeline.alias)"),
    ] = None,
    request: Annotated[str | None, typer.Option(help="Since which version the served model honours request ID")] = None,
    sample: Annotated[str | None, typer.Option(help="Since which version the served model forgets sample ID")] = None,
    deep: Annotated[
        bool, typer.Option(help="Also re-read each data version's pool and re-hash its IDs (slow)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document instead of text")] = False,
    root: RootOption = Path(),
    params: ParamsOption = DEFAULT_PARAMS,
    override: SetOption = None,
) -> None:
    """The served model's chain from the original training data, every recorded fact re-checked (exit 1 when one is
    missing or does not match); with --request or --sample, since which version it honours that deletion."""
    outcome: dict[str, bool] = {}

    def go() -> None:
        from components.stages.lineage_sources import open_audit

        if request and sample:
            raise UserError("--request and --sample are asked one at a time")
        config = load_params(params, override, required=True)
        _quiet_libraries()
        session = open_audit(config, root.resolve(), target, deep)
        if request or sample:
            answer, audit = session.request(request) if request else session.sample(str(sample))
            outcome["ok"] = answer.ok and audit.ok
            erasure = next((entry for entry in audit.erasure if entry["batch_id"] == answer.batch), None)
            if as_json:
                problems = [problem.message for problem in audit.problems]
                document = {**answer.to_document(), "erasure": erasure, "chain_problems": problems}
                typer.echo(json.dumps(document, indent=2))
                return
            typer.echo(answer.detail)
            for reason in answer.reasons:
                typer.echo(f"  reason: {reason}")
            if erasure is not None:
                typer.echo(f"  erasure: {erasure['line']}")
            for problem in audit.problems:
                typer.echo(f"chain problem: version {problem.version}: {problem.message} (`mixunlearn audit`)")
            return
        from components.deletion.lineage_report import audit_document, render

        audit = session.chain()
        outcome["ok"] = audit.ok
        typer.echo(json.dumps(audit_document(audit), indent=2) if as_json else render(audit))

    guarded(go)
    if not outcome.get("ok", True):
        raise typer.Exit(1)


def admission_limits(config: PipelineConfig) -> AdmissionLimits:
    """The admission limits from ``pipeline`` in params.yaml (the other limits keep their documented defaults)."""
    from components.deletion.admission import AdmissionLimits

    return AdmissionLimits(
        max_ids=config.pipeline.max_request_ids, max_batch_fraction=config.pipeline.max_batch_fraction
    )


@request_app.command("submit")
def request_submit(
    path: Annotated[
        Path, typer.Argument(help="Request JSON: request_id, dataset, requester, reason, requested_at, ids")
    ],
    root: RootOption = Path(),
    emit: Annotated[bool, typer.Option(help="Emit a Prefect event so a served deployment runs the batch")] = False,
    params: ParamsOption = DEFAULT_PARAMS,
    override: SetOption = None,
) -> None:
    """Queue a forget request for the next deletion batch, after admission control (the file, its dataset, IDs,
    time, requester and reason are checked; a refused request is not queued and exits with status 2). On a fresh
    checkout, data/ is first restored from the version data.dvc records (never from the source dataset)."""

    def go() -> None:
        from components.deletion.store import DataStore

        config = load_params(params, override)
        store = DataStore(root / "data")
        if needs_restore(root, config):
            with model_locked(root, config, no_wait=False):  # a run of the same model may be restoring it too
                store = restore_committed(root, config)
        submitted, added = store.submit(path, admission_limits(config))
        typer.echo(f"{'queued' if added else 'already known'}: {submitted.request_id}")
        if emit and added:
            _quiet_prefect()
            from pipelines.deployments import emit_request_event

            emit_request_event(submitted.dataset, submitted.request_id)

    guarded(go)


@app.command()
def serve(
    cron: Annotated[str, typer.Option(help="Schedule of recurring deletion batches")] = "0 2 * * *",
    audit_cron: Annotated[
        str | None, typer.Option(help="Schedule of the Retrain audit (default: audit.cron in params.yaml)")
    ] = None,
    root: RootOption = Path(),
    params: ParamsOption = DEFAULT_PARAMS,
    override: SetOption = None,
) -> None:
    """Serve the deletion flow (a cron schedule, a trigger on forget-request events, and the trigger watcher: the S3
    request queue and data changes, coalesced; params.yaml `triggers`) and the Retrain audit."""

    def go() -> None:
        _quiet_prefect()
        from pipelines.deployments import serve_deployments

        serve_deployments(load_params(params, override, required=True), root.resolve(), cron, audit_cron)

    guarded(go)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM (``kill``, a supervisor stopping the job) ends the process as an exit, not a bare death: the exit
    handlers then stop the ephemeral Prefect server this run started, which Python's default SIGTERM action left
    running as an orphan. What the batch had done stays in its ledger for the next run."""
    raise SystemExit(128 + signum)


def main() -> None:
    """Console-script entry point.

    A command whose work is stored (the idle ``run``, and ``run`` or ``retrain-audit`` once their flow returned or
    failed) sets ``EXIT_AT_ONCE``. The exit handlers still run (Prefect drains its log and event workers and stops
    the ephemeral server, logging flushes, MLflow closes), then the process ends without the interpreter's
    finalisation of torch, MLflow, SQLAlchemy and Prefect's threads, which took 2.5 s of a 10 s idle answer and up to
    14 s after a batch on a loaded 2-core machine; the OS releases the locks and files. In-process callers (tests,
    ``CliRunner``) never reach this.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        app()
    except SystemExit as finished:
        if EXIT_AT_ONCE.is_set():
            sys.stdout.flush()
            sys.stderr.flush()
            # the documented shutdown work, without the finalisation; CPython's own hook for exactly this
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(finished.code if isinstance(finished.code, int) else 0)
        raise


if __name__ == "__main__":
    main()
