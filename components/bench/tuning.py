"""Hyper-parameter selection on the validation split only: the test set is never read here.

For each grid point a method runs on every tuning seed; it is scored by its *validation gap*: the benchmark's own
objective with the validation split standing in for the test split. All ten metrics are computed as
``evaluate_predictions`` computes them for the bench (Train_r, Train_f, Val_r / Val_f per kept and forgotten
classes, the LAF ASR with validation samples as the non-members, SalUn's UA, RA, TA and MIA-Efficacy), and the
score is the mean of the LAF gap and the SalUn gap to the paired Retrain model. Membership terms are part of the
score because both protocols grade them: a setting that matches Retrain's accuracies while leaving the forget
set more (or less) recognisable than Retrain's would otherwise win on accuracy alone. The grid point with the
smallest mean validation gap wins; ties go to the earlier (cheaper) point.

A grid is one block ``{key: [values]}`` (its cartesian product) or a list of blocks tuned in stages: each stage's
points are the best setting so far with the stage's values on top, so a method with many knobs (MixUnlearn's lr,
step budget, omega and three temperatures) is tuned in a few points per stage instead of their full product.
Every evaluated point competes in the final ranking, so a later stage only replaces the winner if it does better.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from components.bench.harness import BenchRequest, ModelCache, PreparedSeed, prepare_seed, run_method
from components.data.datasets import load_dataset
from components.runtime import resolve_device
from components.unlearning.base import get_method
from components.verification.metrics import evaluate_predictions, gap_laf, gap_salun
from components.verification.predictions import predict


@dataclass(frozen=True)
class GridPoint:
    """One evaluated setting: its values, mean validation gap over seeds and mean RTE."""

    settings: Mapping[str, Any]
    validation_gap: float
    seconds: float


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``{key: [values]}`` in key order; an empty grid is the single default point."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


Grid = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]]


def grid_stages(grid: Grid) -> list[Mapping[str, Sequence[Any]]]:
    """The stages of ``grid``: one block, or each block of a list in order."""
    if isinstance(grid, Mapping):
        return [grid]
    if isinstance(grid, Sequence) and not isinstance(grid, str) and grid and all(isinstance(s, Mapping) for s in grid):
        return list(grid)
    raise ValueError("a grid is {key: [values]} or a non-empty list of them (stages)")


def grid_size(grid: Grid) -> int:
    """Points evaluated at most (a stage point equal to an earlier one is not run again)."""
    return sum(len(expand_grid(stage)) for stage in grid_stages(grid))


def validation_metrics(model: torch.nn.Module, prepared: PreparedSeed, batch_size: int) -> dict[str, float | None]:
    """The bench's ten metrics with the validation split in the role of the test split (see module docstring)."""
    task = prepared.task
    if task.val is None or len(task.val.labels) < 2:
        raise ValueError("tuning needs a validation split of at least 2 samples: set data.val_fraction > 0")
    return evaluate_predictions(
        predict(model, task.retain.images, task.retain.labels, batch_size),
        predict(model, task.forget.images, task.forget.labels, batch_size),
        predict(model, task.val.images, task.val.labels, batch_size),
        prepared.manifest.forgotten_classes,
        task.seed,
    )


def validation_gap(method: Mapping[str, float | None], retrain: Mapping[str, float | None]) -> float:
    """Mean of the LAF and SalUn gaps to Retrain (each skips terms missing on either side)."""
    gaps = [gap for gap in (gap_laf(method, retrain), gap_salun(method, retrain)) if gap is not None]
    if not gaps:
        raise ValueError("no metric is shared by the method and Retrain")
    return float(np.mean(gaps))


@dataclass(frozen=True)
class TuningResult:
    """The forget kind tuned for (``class`` or ``sample``) and the grid points, best first."""

    kind: str
    points: tuple[GridPoint, ...]


def tune_method(
    method: str,
    grid: Grid,
    request: BenchRequest,
    on_point: Callable[[GridPoint], None] = lambda point: None,
) -> TuningResult:
    """Evaluate every grid point of ``method`` on the request's seeds, stage by stage (module docstring)."""
    get_method(method)
    stages = grid_stages(grid)
    device = resolve_device(request.config.base.device)
    bundle = load_dataset(request.dataset, request.data_dir)
    cache = ModelCache(Path(request.config.bench.cache_dir))
    batch = request.config.bench.eval_batch_size
    prepared_seeds = [prepare_seed(request, bundle, seed, device, cache, lambda m, s: ()) for seed in request.seeds]
    references = [validation_metrics(p.retrain_model, p, batch) for p in prepared_seeds]
    kinds = {p.context.forget_kind for p in prepared_seeds}
    if len(kinds) != 1:
        raise ValueError(f"the scenario forgets whole classes for some seeds only ({request.scenario})")
    kind = kinds.pop()
    points: list[GridPoint] = []
    best: dict[str, Any] = {}
    for stage in stages:
        for values in expand_grid(stage):
            settings = {**best, **values}
            if any(point.settings == settings for point in points):
                continue  # a stage may revisit the winner; it was measured already
            gaps, seconds = [], []
            for prepared, reference in zip(prepared_seeds, references, strict=True):
                tuned_request = _with_settings(request, method, bundle.name, request.scenario, settings)
                model, rte = run_method(method, prepared, tuned_request, ())
                gaps.append(validation_gap(validation_metrics(model, prepared, batch), reference))
                seconds.append(rte)
            point = GridPoint(settings=settings, validation_gap=float(np.mean(gaps)), seconds=float(np.mean(seconds)))
            points.append(point)
            on_point(point)
        if points:
            best = dict(min(points, key=lambda point: point.validation_gap).settings)
    return TuningResult(kind=kind, points=tuple(sorted(points, key=lambda point: point.validation_gap)))


def _with_settings(
    request: BenchRequest, method: str, dataset: str, scenario: str, settings: Mapping[str, Any]
) -> BenchRequest:
    """A copy of ``request`` whose config holds ``settings`` as the selected layer of this method and scenario."""
    document = request.config.model_dump()
    document["unlearn"]["tuned"].setdefault(dataset, {}).setdefault(scenario, {})[method] = dict(settings)
    config = type(request.config).model_validate(document)
    return BenchRequest(**{**request.__dict__, "config": config})


def load_grids(path: Path) -> dict[str, Grid]:
    """Read ``{method: {key: [values]}}`` grids (or ``{method: [stage, ...]}``) from YAML."""
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict):
        raise ValueError(f"{path} must map method names to grids")
    for method, grid in document.items():
        try:
            grid_stages(grid)
        except ValueError as error:
            raise ValueError(f"{path}: {method}: {error}") from None
    return document
