"""Tune every method with a grid on every comparison scenario of one dataset, and merge the winners.

Usage:
    python -m components.bench.tune_all --dataset digits --seeds 0,1 [--jobs 2] [--set bench.cache_dir=...]

Each queue is one ``mixunlearn tune`` process per (scenario, methods) slice with one torch thread, run ``--jobs``
at a time, each writing its own YAML under ``artifacts/tuning/<dataset>/``; the winners are then merged into
``tuned.yaml`` (other datasets' entries are kept) and each process's log is copied to ``docs/tuning/``.
Selection reads the validation split only (components/bench/tuning.py). RTE printed while tuning comes from busy
cores and is not a benchmark figure.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def run_slice(dataset: str, scenario: str, methods: list[str], seeds: str, extra: list[str], index: int) -> Path:
    out = ROOT / "artifacts" / "tuning" / dataset
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{dataset}-{re.sub(r'[^A-Za-z0-9.-]+', '_', scenario)}-{index}"
    selected = out / f"{stem}.yaml"
    selected.unlink(missing_ok=True)
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
        "--seeds",
        seeds,
        "--selected",
        str(selected),
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


def merge(documents: list[dict], into: dict) -> dict:
    for document in documents:
        for dataset, scenarios in document.items():
            for scenario, methods in scenarios.items():
                into.setdefault(dataset, {}).setdefault(scenario, {}).update(methods)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--set", action="append", default=[], help="parameter override passed to every process")
    args = parser.parse_args()
    grids = yaml.safe_load((ROOT / "grids.yaml").read_text())
    extra = [item for override in args.set for item in ("--set", override)]
    work = slices(list(grids), tuple(args.scenarios.split(",")), args.jobs)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run_slice, args.dataset, scenario, methods, args.seeds, extra, index)
            for index, (scenario, methods) in enumerate(work)
        ]
        outputs = [future.result() for future in futures]
    current = yaml.safe_load(SELECTED.read_text()) if SELECTED.exists() else {}
    current = current or {}
    current.pop(args.dataset, None)  # a fresh tuning replaces the dataset's old winners entirely
    merged = merge([yaml.safe_load(path.read_text()) or {} for path in outputs], current)
    header = (
        "# Written by `python -m components.bench.tune_all` (`mixunlearn tune` per scenario): each method's\n"
        "# setting selected on the VALIDATION split only (never test), from grids.yaml. `mixunlearn bench` and the\n"
        "# pipeline apply them by dataset and scenario (params.yaml unlearn.tuned_file). Logs: docs/tuning/.\n"
    )
    from components.files import write_atomically

    write_atomically(SELECTED, header + yaml.safe_dump(merged, sort_keys=True))
    LOGS.mkdir(parents=True, exist_ok=True)
    for path in outputs:
        (LOGS / path.with_suffix(".log").name).write_text(path.with_suffix(".log").read_text())
    print(f"merged {len(outputs)} slices into {SELECTED.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
