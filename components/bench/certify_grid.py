"""Which unlearning settings let the pipeline certify a deletion: a grid of one method's settings on one scenario,
each point unlearned from the cached original, certified against the untouched original (the control) on the
validation split as held-out data, and scored by its validation gap to the cached Retrain (as ``mixunlearn tune``
scores). The test split is never read.

    python -m components.bench.certify_grid --dataset fashion_mnist --scenario ids:requests.txt \\
        --grid '{"lr": [1e-4, 3e-4], "min_steps": [100, 300]}' --out artifacts/certify-grid/fashion-500

Prints a table (certified first, then by validation gap) and writes ``results.json``; the pipeline's settings per
deletion kind and size (params.yaml ``unlearn.kinds``, ``tuned.yaml``) are chosen from it: the certified point with
the smallest validation gap.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.bench.harness import BenchRequest, ModelCache, PreparedSeed, prepare_seed, run_method
from components.bench.tuning import _with_settings, expand_grid, validation_gap, validation_metrics
from components.config import ConfigError, load_config
from components.data.datasets import load_dataset
from components.runtime import resolve_device
from components.unlearning.base import LabeledTensors
from components.unlearning.guard import seeded_subset
from components.verification.certification import Certification, ModelEvidence, certify
from components.verification.heldout import monitor_mask
from components.verification.predictions import predict


class StepCounter:
    """A callback that keeps the last unlearner step a method reported (its steps, monitor stops included)."""

    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, event: str, values: Mapping[str, float], step: int) -> None:
        if event == "unlearn_step":
            self.steps = step


def split_val(prepared: PreparedSeed, monitor_fraction: float) -> tuple[PreparedSeed, LabeledTensors]:
    """As the pipeline divides it: the seed's task with only the monitor share of val (what the unlearning loop
    watches), and the certification share (certification's H)."""
    val = prepared.task.val
    assert val is not None
    mask = torch.as_tensor(monitor_mask(val.labels.cpu().numpy(), monitor_fraction, prepared.task.seed))
    mask = mask.to(val.labels.device)
    monitor = LabeledTensors(images=val.images[mask], labels=val.labels[mask]) if bool(mask.any()) else None
    heldout = LabeledTensors(images=val.images[~mask], labels=val.labels[~mask])
    return dataclasses.replace(prepared, task=dataclasses.replace(prepared.task, val=monitor)), heldout


def evidence(
    model: torch.nn.Module, prepared: PreparedSeed, heldout: LabeledTensors, retain: LabeledTensors, batch: int
) -> ModelEvidence:
    task = prepared.task
    return ModelEvidence(
        forget=predict(model, task.forget.images, task.forget.labels, batch),
        heldout=predict(model, heldout.images, heldout.labels, batch),
        retain=predict(model, retain.images, retain.labels, batch),
    )


def certify_point(
    model: torch.nn.Module,
    prepared: PreparedSeed,
    control: ModelEvidence,
    heldout: LabeledTensors,
    retain: LabeledTensors,
    request: Any,
) -> Certification:
    config = request.config
    return certify(
        evidence(model, prepared, heldout, retain, config.bench.eval_batch_size),
        control,
        prepared.manifest.forgotten_classes,
        config.verify.certification,
        prepared.task.seed,
    )


def run_grid(request: BenchRequest, method: str, grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every grid point on every seed of ``request``: certification and validation gap per (point, seed)."""
    device = resolve_device(request.config.base.device)
    bundle = load_dataset(request.dataset, request.data_dir)
    cache = ModelCache(Path(request.config.bench.cache_dir))
    batch = request.config.bench.eval_batch_size
    rows: list[dict[str, Any]] = []
    for seed in request.seeds:
        whole = prepare_seed(request, bundle, seed, device, cache, lambda m, s: ())
        reference = validation_metrics(whole.retrain_model, whole, batch)
        prepared, heldout = split_val(whole, request.config.verify.certification.monitor_fraction)
        retain = seeded_subset(
            prepared.task.retain, np.arange(len(prepared.task.retain.labels)), request.config.verify.retain_sample, seed
        )
        control = evidence(prepared.task.original, prepared, heldout, retain, batch)
        for values in expand_grid(grid):
            tuned = _with_settings(request, method, bundle.name, request.scenario, values)
            counter = StepCounter()
            model, seconds = run_method(method, prepared, tuned, [counter])
            certification = certify_point(model, prepared, control, heldout, retain, tuned)
            rows.append(
                {
                    "seed": seed,
                    "settings": dict(values),
                    "certified": certification.certified,
                    "measurable": certification.measurable,
                    "verdict": certification.verdict_line(),
                    "checks": {
                        c.name: [round(c.value, 2), round(c.lower, 2), c.limit] for c in certification.candidate_checks
                    },
                    "control_checks": {
                        c.name: [round(c.value, 2), round(c.lower, 2), c.limit] for c in certification.control_checks
                    },
                    "validation_gap": validation_gap(validation_metrics(model, whole, batch), reference),
                    "steps": counter.steps,
                    "seconds": seconds,
                    "retrain_seconds": prepared.retrain_seconds,
                    "forget_size": len(prepared.task.forget.labels),
                }
            )
            _say(_row_line(rows[-1]))
    return rows


def _checks(checks: Sequence[Any]) -> dict[str, list[float]]:
    """Each check as [value, lower confidence bound, limit]."""
    return {check.name: [round(check.value, 2), round(check.lower, 2), check.limit] for check in checks}


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _row_line(row: Mapping[str, Any]) -> str:
    checks = " ".join(f"{name}={value[0]:.1f}[{value[1]:.1f}]" for name, value in row["checks"].items())
    return (
        f"seed {row['seed']} {json.dumps(row['settings'])}: {'CERTIFIED' if row['certified'] else 'fail'} "
        f"{checks} gap {row['validation_gap']:.2f} steps {row.get('steps', '?')} rte {row['seconds']:.1f}s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--method", default="mixunlearn")
    parser.add_argument("--grid", required=True, help='JSON {"key": [values]}')
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        grid = json.loads(args.grid)
        if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
            raise ValueError("--grid must be a JSON object of non-empty lists")
        seeds = tuple(int(s) for s in args.seeds.split(","))
        config = load_config(args.params, [f"base.dataset={args.dataset}", *args.overrides])
    except (ValueError, ConfigError) as error:
        sys.stderr.write(f"error: {str(error).splitlines()[0]}\n")
        return 2
    request = BenchRequest(args.dataset, args.scenario, (args.method,), seeds, config, config.base.data_dir)
    started = time.perf_counter()
    rows = run_grid(request, args.method, grid)
    rows.sort(key=lambda row: (not row["certified"], row["validation_gap"]))
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "dataset": args.dataset,
        "scenario": args.scenario,
        "method": args.method,
        "grid": grid,
        "seeds": list(seeds),
        "wall_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    (args.out / "results.json").write_text(json.dumps(document, indent=2))
    _say("\nbest first:")
    for row in rows:
        _say(_row_line(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
