"""Why a method's ASR departs from Retrain's: how confident the unlearned model is on the forget set.

LAF's attack is fitted to each model's own retained (member) and validation (non-member) outputs, and calls a
forget sample a member when its sorted softmax looks like the retained ones', confidence being the main feature.
Retrain predicts a removed class's samples as some kept class, mostly with confidence; a method can match its
accuracies and still leave the forget set less member-like, so score a lower ASR. This bench puts the
forget set's confidence beside the validation metrics of a few settings, on tuning seeds and the validation split
only (as ``mixunlearn tune`` scores them; the test split is never read):

    python -m components.bench.forget_confidence --dataset fashion_mnist --scenario class:0 --seeds 100 \\
        --point 'mixunlearn:{"omega": 1.0}' --point 'mixunlearn_no_mix:{}' --out artifacts/forget-confidence

Prints a table (Retrain first) and writes ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.bench.harness import BenchRequest, ModelCache, PreparedSeed, prepare_seed, run_method
from components.bench.tuning import _with_settings, validation_gap, validation_metrics
from components.config import ConfigError, load_config
from components.data.datasets import load_dataset
from components.runtime import resolve_device
from components.unlearning.base import method_names
from components.verification.predictions import Predictions, predict

CONFIDENT = 0.9
COLUMNS = ("train_r", "train_f", "test_r", "asr", "mia_efficacy")


def confidence_summary(predictions: Predictions, confident: float = CONFIDENT) -> dict[str, float]:
    """Mean top softmax probability, and the share (percent) of samples whose top probability is at least
    ``confident``."""
    top = predictions.probs.max(axis=1)
    return {"mean_top_probability": float(top.mean()), "confident_share": float(np.mean(top >= confident) * 100.0)}


def parse_point(text: str) -> tuple[str, dict[str, Any]]:
    """``method:{json settings}`` -> (method, settings); a bare method name has no settings."""
    method, _, settings = text.partition(":")
    if method not in method_names():
        raise ValueError(f"unknown method {method!r} in --point {text!r}")
    values = json.loads(settings) if settings else {}
    if not isinstance(values, dict):
        raise ValueError(f"--point {text!r}: the settings after ':' must be a JSON object")
    return method, values


def measure(request: BenchRequest, points: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Retrain's row, then one row per (point, seed): validation metrics, gap and the forget set's confidence."""
    device = resolve_device(request.config.base.device)
    bundle = load_dataset(request.dataset, request.data_dir)
    cache = ModelCache(Path(request.config.bench.cache_dir))
    batch = request.config.bench.eval_batch_size
    rows: list[dict[str, Any]] = []
    for seed in request.seeds:
        prepared = prepare_seed(request, bundle, seed, device, cache, lambda m, s: ())
        reference = validation_metrics(prepared.retrain_model, prepared, batch)
        retrain = (prepared.retrain_model, prepared.retrain_seconds)
        rows.append(_row(prepared, reference, reference, "retrain", {}, retrain, batch))
        _say(_line(rows[-1]))
        for method, settings in points:
            tuned = _with_settings(request, method, bundle.name, request.scenario, settings)
            model, seconds = run_method(method, prepared, tuned, ())
            metrics = validation_metrics(model, prepared, batch)
            rows.append(_row(prepared, metrics, reference, method, settings, (model, seconds), batch))
            _say(_line(rows[-1]))
    return rows


def _row(
    prepared: PreparedSeed,
    metrics: Mapping[str, float | None],
    reference: Mapping[str, float | None],
    method: str,
    settings: Mapping[str, Any],
    run: tuple[torch.nn.Module, float],
    batch: int,
) -> dict[str, Any]:
    """One table row: ``metrics`` are the model's validation metrics (Retrain's row passes ``reference`` itself)."""
    model, seconds = run
    forget = prepared.task.forget
    return {
        "seed": prepared.task.seed,
        "method": method,
        "settings": dict(settings),
        **{key: metrics[key] for key in COLUMNS},
        "validation_gap": validation_gap(metrics, reference),
        **confidence_summary(predict(model, forget.images, forget.labels, batch)),
        "seconds": seconds,
    }


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _line(row: Mapping[str, Any]) -> str:
    metrics = " ".join(f"{key} {row[key]:.2f}" for key in COLUMNS if row[key] is not None)
    return (
        f"seed {row['seed']} {row['method']} {json.dumps(row['settings'])}: {metrics} gap {row['validation_gap']:.2f} "
        f"top-p {row['mean_top_probability']:.3f} >={CONFIDENT} {row['confident_share']:.1f}%"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--point", action="append", default=[], help='method:{"key": value} (repeat)')
    parser.add_argument("--seeds", default=None, help="tuning seeds only (default: bench.tuning.seeds)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        import components.unlearning  # noqa: F401  (registers the methods --point names)

        points = [parse_point(text) for text in args.point]
        if not points:
            raise ValueError("give at least one --point")
        config = load_config(args.params, [f"base.dataset={args.dataset}", *args.overrides])
        seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else tuple(config.bench.tuning.seeds)
        config.bench.check_tuning_seeds(seeds)
    except (ValueError, ConfigError) as error:
        sys.stderr.write(f"error: {str(error).splitlines()[0]}\n")
        return 2
    request = BenchRequest(
        args.dataset, args.scenario, tuple(m for m, _ in points), seeds, config, config.base.data_dir
    )
    started = time.perf_counter()
    rows = measure(request, points)
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "dataset": args.dataset,
        "scenario": args.scenario,
        "seeds": list(seeds),
        "confident_threshold": CONFIDENT,
        "command": "python -m components.bench.forget_confidence " + shlex.join(sys.argv[1:] if argv is None else argv),
        "wall_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    (args.out / "results.json").write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
