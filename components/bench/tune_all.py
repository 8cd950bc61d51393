"""Tune every method with a grid on every comparison scenario of one dataset, and merge the winners.

Usage:
    python -m components.bench.tune_all --dataset digits [--seeds 100,101,102] [--methods ga,scrub] [--jobs 2]
        [--set bench.cache_dir=...]

Each queue is one ``mixunlearn tune`` process per (scenario, methods) slice with one torch thread, run ``--jobs``
at a time, each writing its own YAML under ``artifacts/tuning/<dataset>/``; the winners are then merged into
``tuned.yaml`` (other datasets' entries are kept) and each process's log is copied to ``docs/tuning/``.
Selection reads the validation split only (components/bench/tuning.py), on params.yaml's ``bench.tuning.seeds``
unless ``--seeds`` names others (never a reporting seed: ``mixunlearn tune`` refuses them). Grids come from
grids.yaml with the dataset's own section applied. ``docs/tuning/<dataset>-grids.md`` tabulates each method's grid
size, winner, the keys whose winner sits on the grid's edge, and collapsed points. RTE printed while tuning comes
from busy cores and is not a benchmark figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("class:0", "data:0.4:5-9", "random:0.1")
SELECTED = ROOT / "tuned.yaml"
LOGS = ROOT / "docs" / "tuning"


def slices(methods: list[str], scenarios: tuple[str, ...], parts: int) -> list[tuple[str, list[str]]]:
    """Split each scenario's methods into ``parts`` interleaved slices so queues carry similar work."""
    return [
        (scenario, methods[start::parts]) for scenario in scenarios for start in range(parts) if methods[start::parts]
    ]


def scenario_stem(scenario: str) -> str:
    """The scenario as a file-name part (class:0 -> class_0)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", scenario)


def run_slice(dataset: str, scenario: str, methods: list[str], seeds: str, extra: list[str], index: int) -> Path:
    out = ROOT / "artifacts" / "tuning" / dataset
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{dataset}-{scenario_stem(scenario)}-{index}"
    selected = out / f"{stem}.yaml"
    selected.unlink(missing_ok=True)
    selected.with_suffix(".json").unlink(missing_ok=True)
    seed_option = ["--seeds", seeds] if seeds else []
    command = [
        sys.executable,
        "-m",
        "components.cli",
        "tune",
        "--dataset",
        dataset,
        "--scenario",
        scenario,
        "--methods",
        ",".join(methods),
        *seed_option,
        "--tuned",
        str(selected),
        "--report",
        str(selected.with_suffix(".json")),
        *extra,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, check=False)
    log = f"$ {' '.join(['mixunlearn', *command[1:]])}\n{completed.stdout}{completed.stderr}"
    (out / f"{stem}.log").write_text(log)
    if completed.returncode != 0:
        raise SystemExit(f"tuning {dataset} {scenario} {methods} failed:\n{log[-3000:]}")
    print(f"{dataset} {scenario} {','.join(methods)}: {time.perf_counter() - started:.0f} s", flush=True)
    return selected


HEADER = (
    "# Written by `python -m components.bench.tune_all` (`mixunlearn tune` per scenario): each method's\n"
    "# setting selected on the VALIDATION split only (never test), from grids.yaml. `mixunlearn bench` and the\n"
    "# pipeline apply them by dataset and scenario (params.yaml unlearn.tuned_file). Logs: docs/tuning/.\n"
)


def merge(documents: list[dict], into: dict) -> dict:
    for document in documents:
        for dataset, scenarios in document.items():
            for scenario, methods in scenarios.items():
                into.setdefault(dataset, {}).setdefault(scenario, {}).update(methods)
    return into


def merge_into_selected(text: str, documents: list[dict], dataset: str, replaced: tuple[str, ...]) -> str:
    """``text`` (tuned.yaml) with the winners of ``documents`` merged in, its comments and every other entry kept:
    the pipeline's per-kind entries (``class``, ``sample``) are hand-written and documented there. The scenarios in
    ``replaced`` (a fresh tuning of every method) lose their old winners first."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.scalarfloat import ScalarFloat

    round_trip = YAML()
    round_trip.width = 120

    # ruamel writes 3e-05, which YAML 1.1 (PyYAML, every reader of this file) reads as a string: write floats as
    # PyYAML does (3.0e-05)
    def as_pyyaml_writes_it(representer: Any, value: float) -> Any:
        return representer.represent_scalar("tag:yaml.org,2002:float", yaml.safe_dump(float(value)).splitlines()[0])

    for float_type in (float, ScalarFloat):  # new winners, and the values read back from the file
        round_trip.representer.add_representer(float_type, as_pyyaml_writes_it)
    current = round_trip.load(text) if text.strip() else None
    if current is None:
        current = round_trip.load(HEADER + "{}\n")
    for scenario in replaced:
        if dataset in current and scenario in current[dataset]:
            del current[dataset][scenario]
    merge(documents, current)
    out = io.StringIO()
    round_trip.dump(current, out)
    return out.getvalue()


def report_table(entries: list[dict]) -> str:
    """Markdown: one row per (scenario, method) with its grid size, seeds, winner, edge keys and collapse."""
    lines = [
        "| Scenario | Method | Grid points (+ past the edge) | Seeds | Selected | Val. gap "
        "| Winner still on the edge in | Collapsed points |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in sorted(entries, key=lambda e: (e["scenario"], e["method"])):
        extended = entry.get("points_past_the_edge", 0)
        collapsed = f"{entry['collapsed_points']}/{entry['grid_size'] + extended}"
        if entry["all_collapsed"]:
            collapsed = f"**all {entry['grid_size'] + extended} collapsed**"
        size = f"{entry['grid_size']} (+{extended})" if extended else str(entry["grid_size"])
        lines.append(
            f"| {entry['scenario']} | {entry['method']} | {size} | "
            f"{','.join(str(seed) for seed in entry['seeds'])} | {entry['selected']} | {entry['validation_gap']:.2f} | "
            f"{', '.join(entry['edge_keys']) or '–'} | {collapsed} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seeds", default="", help="tuning seeds (default: params.yaml bench.tuning.seeds)")
    parser.add_argument("--methods", default="", help="comma-separated subset of the dataset's grids")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--set", action="append", default=[], help="parameter override passed to every process")
    args = parser.parse_args()
    from components.bench.tuning import load_grids

    grids = load_grids(ROOT / "grids.yaml", args.dataset)
    methods = args.methods.split(",") if args.methods else list(grids)
    extra = [item for override in args.set for item in ("--set", override)]
    work = slices(methods, tuple(args.scenarios.split(",")), args.jobs)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run_slice, args.dataset, scenario, methods, args.seeds, extra, index)
            for index, (scenario, methods) in enumerate(work)
        ]
        outputs = [future.result() for future in futures]
    scenarios = tuple(args.scenarios.split(","))
    merged = merge_into_selected(
        SELECTED.read_text() if SELECTED.exists() else "",
        [yaml.safe_load(path.read_text()) or {} for path in outputs],
        args.dataset,
        scenarios if not args.methods else (),
    )
    from components.files import write_atomically

    write_atomically(SELECTED, merged)
    LOGS.mkdir(parents=True, exist_ok=True)
    for scenario in scenarios if not args.methods else ():  # an earlier full tuning's slices would read as current
        for stale in LOGS.glob(f"{args.dataset}-{scenario_stem(scenario)}-*.log"):
            stale.unlink()
    for path in outputs:
        (LOGS / path.with_suffix(".log").name).write_text(path.with_suffix(".log").read_text())
    entries = [entry for path in outputs for entry in json.loads(path.with_suffix(".json").read_text())]
    command = " ".join(["python -m components.bench.tune_all", *sys.argv[1:]])
    (LOGS / f"{args.dataset}-grids.md").write_text(
        f"# Tuning of {args.dataset} (validation split only)\n\nCommand: `{command}`\n\n" + report_table(entries)
    )
    print(f"merged {len(outputs)} slices into {SELECTED.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
