"""The ``mixunlearn`` console script: the component commands plus the Prefect-backed ones.

``run`` executes the deletion-batch flow; ``request submit`` queues a forget request (and emits an event that
a served deployment reacts to); ``serve`` starts the scheduled and event-triggered deployments.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Annotated

import psutil
import typer

from components.cli import UserError, app, guarded
from components.config import DEFAULT_PARAMS, load_config

request_app = typer.Typer(help="Forget requests.", no_args_is_help=True)
app.add_typer(request_app, name="request")


def _quiet_prefect() -> None:
    """Offline defaults: no telemetry, a patient ephemeral server start on a busy 2-core machine."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _quiet_libraries() -> None:
    """MLflow and GX log routine INFO lines (table creation, temp dirs, 'registered model'); keep warnings."""
    for name in ("mlflow", "great_expectations", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@app.command()
def run(
    dataset: Annotated[str | None, typer.Option(help="Dataset (default: base.dataset in params.yaml)")] = None,
    request: Annotated[list[Path] | None, typer.Option(help="Forget request file(s) to queue before the run")] = None,
    example: Annotated[bool, typer.Option(help="Queue the shipped example request (pipeline.example_request)")] = False,
    root: Annotated[Path, typer.Option(help="Project root (data/, mlflow/, data.dvc)")] = Path(),
    params: Annotated[Path, typer.Option(help="Parameter file")] = DEFAULT_PARAMS,
    override: Annotated[list[str] | None, typer.Option("--set", help="Override a parameter: key.path=value")] = None,
) -> None:
    """Run the deletion pipeline: validate, version, (re)use the original, unlearn, retrain, verify, promote."""

    def go() -> None:
        _quiet_prefect()
        overrides = list(override or []) + ([f"base.dataset={dataset}"] if dataset else [])
        config = load_config(params, overrides)
        from components.deletion.store import DataStore

        store = DataStore(root / "data")
        queue = list(request or [])
        if example and config.pipeline.example_request:
            queue.append(root / config.pipeline.example_request)
        from components.deletion.store import ForgetRequest

        for path in queue:  # check every request before queueing any
            candidate = ForgetRequest.load(path)
            if candidate.dataset != config.base.dataset:
                raise UserError(f"request {candidate.request_id} is for {candidate.dataset}, not {config.base.dataset}")
        for path in queue:
            submitted, added = store.submit(path)
            typer.echo(
                f"{'queued' if added else 'already known'}: request {submitted.request_id} "
                f"({len(submitted.ids)} samples, {submitted.requester})"
            )
        from pipelines.flows import deletion_batch

        _quiet_libraries()
        summary = deletion_batch(config, str(root.resolve()))
        typer.echo(summary.message)
        if summary.metrics_table:
            typer.echo(summary.metrics_table)
        if summary.report:
            typer.echo(f"report: {summary.report}")
        wall = time.time() - psutil.Process().create_time()
        typer.echo(
            f"wall {wall:.1f} s: compute stages (training, unlearning, evaluation) {summary.compute_seconds:.1f} s, "
            f"orchestration, tracking, versioning and validation {wall - summary.compute_seconds:.1f} s "
            f"({100 * (wall - summary.compute_seconds) / wall:.0f}%)"
        )

    guarded(go)


@request_app.command("submit")
def request_submit(
    path: Annotated[
        Path, typer.Argument(help="Request JSON: request_id, dataset, requester, reason, requested_at, ids")
    ],
    root: Annotated[Path, typer.Option(help="Project root")] = Path(),
    emit: Annotated[bool, typer.Option(help="Emit a Prefect event so a served deployment runs the batch")] = False,
) -> None:
    """Queue a forget request for the next deletion batch."""

    def go() -> None:
        from components.deletion.store import DataStore

        submitted, added = DataStore(root / "data").submit(path)
        typer.echo(f"{'queued' if added else 'already known'}: {submitted.request_id}")
        if emit and added:
            _quiet_prefect()
            from pipelines.deployments import emit_request_event

            emit_request_event(submitted.dataset, submitted.request_id)

    guarded(go)


@app.command()
def serve(
    cron: Annotated[str, typer.Option(help="Schedule of recurring deletion batches")] = "0 2 * * *",
    root: Annotated[Path, typer.Option(help="Project root")] = Path(),
    params: Annotated[Path, typer.Option(help="Parameter file")] = DEFAULT_PARAMS,
) -> None:
    """Serve the deletion flow: a cron schedule plus a trigger on forget-request events."""

    def go() -> None:
        _quiet_prefect()
        from pipelines.deployments import serve_deployments

        if not params.exists():
            raise UserError(f"parameter file {params} not found")
        serve_deployments(load_config(params), root.resolve(), cron)

    guarded(go)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
