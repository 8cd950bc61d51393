"""The ``mixunlearn`` command line: thin wrappers over component functions.

Every user error (bad data directory, unknown method, malformed forget request or parameter) ends with a one-line
``error: ...`` on stderr and exit status 2; nothing written earlier is left half-finished.
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from components.config import DEFAULT_PARAMS, ConfigError, PipelineConfig, load_config
from components.data.types import DataError
from components.runtime import Callback

app = typer.Typer(add_completion=False, no_args_is_help=True, help="MixUnlearn: verified machine unlearning.")
console = Console(stderr=True)

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


def load_params(params: Path, override: list[str] | None) -> PipelineConfig:
    """params.yaml with overrides; the built-in defaults when the default file is absent (outside the repo)."""
    return load_config(params if params.exists() or params != DEFAULT_PARAMS else None, override or [])


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
    dataset: Annotated[str | None, typer.Option(help="Dataset name (default: base.dataset)")] = None,
    scenario: Annotated[
        str | None, typer.Option(help="class:<c> | data:<f>:<classes> | random:<f> | ids:<file>")
    ] = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated method names, or 'all'")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 0,1,2")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory for results.json/.md/.png")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Directory with the dataset's files on disk")] = None,
    model: Annotated[str | None, typer.Option(help="Override the dataset's default model")] = None,
    params: Annotated[Path, typer.Option(help="Parameter file")] = DEFAULT_PARAMS,
    override: Annotated[list[str] | None, typer.Option("--set", help="Override a parameter: key.path=value")] = None,
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
    dataset: Annotated[str | None, typer.Option(help="Dataset name (default: base.dataset)")] = None,
    scenario: Annotated[str | None, typer.Option(help="Forget scenario to tune for")] = None,
    methods: Annotated[str, typer.Option(help="Comma-separated method names with a grid, or 'all'")] = "all",
    seeds: Annotated[str, typer.Option(help="Tuning seeds")] = "0",
    grids: Annotated[Path, typer.Option(help="YAML of {method: {key: [values]}}")] = Path("grids.yaml"),
    selected: Annotated[Path, typer.Option(help="YAML the winners are merged into")] = Path("tuned.yaml"),
    params: Annotated[Path, typer.Option(help="Parameter file")] = DEFAULT_PARAMS,
    override: Annotated[list[str] | None, typer.Option("--set", help="Override a parameter: key.path=value")] = None,
) -> None:
    """Select each method's setting on the validation split (never the test set) and record it."""

    def run() -> None:
        import yaml

        from components.bench.harness import BenchRequest
        from components.bench.tuning import load_grids, tune_method
        from components.files import write_atomically

        config = load_params(params, override)
        document = yaml.safe_load(selected.read_text()) if selected.exists() else {}
        document = document or {}
        if not isinstance(document, dict):
            raise UserError(f"{selected} must map datasets to scenarios to methods")
        all_grids = load_grids(grids)
        names = list(all_grids) if methods == "all" else parse_list(methods, "--methods")
        missing = [name for name in names if name not in all_grids]
        if missing:
            raise UserError(f"no grid for {', '.join(missing)} in {grids}")
        request = BenchRequest(
            dataset=dataset or config.base.dataset,
            scenario=scenario or config.data.scenario,
            methods=tuple(names),
            seeds=tuple(parse_seeds(seeds)),
            config=config,
            data_dir=config.base.data_dir,
        )
        for name in names:
            result = tune_method(
                name,
                all_grids[name],
                request,
                lambda point, name=name: typer.echo(
                    f"{name:32s} {dict(point.settings)} val-gap {point.validation_gap:.2f} RTE {point.seconds:.2f}s"
                ),
            )
            best = result.points[0]
            document.setdefault(request.dataset, {}).setdefault(request.scenario, {})[name] = dict(best.settings)
            typer.echo(f"selected for {name} ({request.dataset}, {request.scenario}): {dict(best.settings)}")
        header = "# Written by `mixunlearn tune`: settings selected on the validation split only (never test).\n"
        write_atomically(selected, header + yaml.safe_dump(document, sort_keys=True))
        typer.echo(f"wrote {selected}")

    guarded(run)


def _device_name(config: PipelineConfig) -> str:
    import torch

    from components.runtime import resolve_device

    device = resolve_device(config.base.device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="validate | train | unlearn | retrain | verify")],
    root: Annotated[Path, typer.Option(help="Project root (data/, artifacts/)")] = Path(),
    params: Annotated[Path, typer.Option(help="Parameter file")] = DEFAULT_PARAMS,
    override: Annotated[list[str] | None, typer.Option("--set", help="Override a parameter: key.path=value")] = None,
) -> None:
    """Run one pipeline stage from files (what `dvc repro` calls); outputs go under artifacts/<stage>/."""

    def run() -> None:
        from components.stages.repro import STAGES, StageContext

        if name not in STAGES:
            raise UserError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
        result = STAGES[name](StageContext(load_config(params, override or []), root.resolve()))
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
    params: Annotated[Path, typer.Option(help="Parameter file")] = DEFAULT_PARAMS,
    override: Annotated[list[str] | None, typer.Option("--set", help="Override a parameter: key.path=value")] = None,
    schema: Annotated[bool, typer.Option(help="Print the JSON schema instead of the values")] = False,
) -> None:
    """Print the validated configuration (or its JSON schema)."""

    def run() -> None:
        if schema:
            typer.echo(json.dumps(PipelineConfig.model_json_schema(), indent=2))
            return
        typer.echo(json.dumps(load_config(params, override or []).model_dump(), indent=2))

    guarded(run)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
