"""Hyper-parameter selection on the validation split only: the test set is never read here.

For each grid point a method runs on every tuning seed; it is scored by its *validation gap*: the benchmark's own
objective with the validation split standing in for the test split. The metrics are computed as
``evaluate_predictions`` computes them for the bench (Train_r, Train_f, Val_r / Val_f per kept and forgotten
classes, the LAF ASR with validation samples as the non-members, SalUn's UA, RA, TA and MIA-Efficacy), and the
score is the mean of the LAF gap and the SalUn gap to the paired Retrain model. Membership terms are part of the
score because both protocols grade them: a setting that matches Retrain's accuracies while leaving the forget
set more (or less) recognisable than Retrain's would otherwise win on accuracy alone. The grid point with the
smallest mean validation gap wins; ties go to the earlier (cheaper) point.

A winner whose value of a numeric key is the smallest or largest value that key took (a point that does not set
the key takes the method's configured default) is on the grid's *edge*: the
optimum may lie outside the grid. With ``edge_extensions`` > 0 the search then widens the grid itself: it evaluates
the winner with that key moved one geometric step past the edge (the ratio of the edge value to its neighbour: 1e-4,
1e-3 extends to 1e-2; steps 30, 300 to 3,000), and repeats while a new point wins and the key has extensions left.
An extension that the method's config refuses (mask_ratio above 1) is not run; a key still on its edge after the
search is reported (``TuningResult.edges``).

A point *collapses* when its held-out utility (validation accuracy on the kept classes, or on every class for a
sample-level scenario) falls below half of Retrain's: such a model no longer does its job, whatever its gap. A
method whose every point collapses is reported as such (``TuningResult.all_collapsed``) rather than as tuned. A
winner whose value of a varied key is the first or last of that key's list sits on the grid's edge
(``edge_keys``): the grid should be widened there.

Grids come from ``grids.yaml`` (``load_grids``): ``{method: {key: [values]}}``, with per-dataset sections
(``fashion_mnist: {method: {...}}``) that replace a method's grid on that dataset.

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
from components.config import UnlearnSection, pinned_keys
from components.data.datasets import dataset_names, load_dataset
from components.runtime import resolve_device
from components.unlearning.base import build_config, get_method
from components.verification.metrics import evaluate_predictions, gap_laf, gap_salun
from components.verification.predictions import predict

# A point whose held-out utility is below this share of Retrain's has collapsed (see the module docstring).
COLLAPSE_FRACTION = 0.5


@dataclass(frozen=True)
class GridPoint:
    """One evaluated setting: its values, mean validation gap over seeds, mean RTE, and whether it collapsed (its
    mean held-out utility below ``COLLAPSE_FRACTION`` of Retrain's)."""

    settings: Mapping[str, Any]
    validation_gap: float
    seconds: float
    collapsed: bool = False


def utility(metrics: Mapping[str, float | None]) -> float:
    """Held-out accuracy on the kept classes (``test_r``), or on every class when none is forgotten (``test``)."""
    value = metrics.get("test_r")
    value = metrics.get("test") if value is None else value
    if value is None:
        raise ValueError("no held-out accuracy among the metrics")
    return float(value)


def edge_keys(grid: Grid, settings: Mapping[str, Any]) -> list[str]:
    """The varied keys (two values or more, in any stage) whose chosen value is the first or last of their list."""
    edges: list[str] = []
    for stage in grid_stages(grid):
        for key, values in stage.items():
            if len(values) > 1 and key in settings and settings[key] in (values[0], values[-1]) and key not in edges:
                edges.append(key)
    return edges


def numeric_axes(grid: Grid) -> dict[str, list[float]]:
    """Each varied key whose values are all positive numbers (not booleans), with every value it takes in any
    stage, sorted: the axes an edge search can step along geometrically."""
    axes: dict[str, set[float]] = {}
    mixed: set[str] = set()  # a key with a non-numeric value in any stage is never extended
    for stage in grid_stages(grid):
        for key, values in stage.items():
            if all(_is_positive_number(v) for v in values):
                axes.setdefault(key, set()).update(values)
            else:
                mixed.add(key)
    return {key: sorted(values) for key, values in axes.items() if len(values) > 1 and key not in mixed}


def _is_positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def step_past_edge(axis: Sequence[float], value: Any) -> Any | None:
    """The value one geometric step beyond ``value`` when it is the smallest or largest of ``axis`` (the ratio of
    the edge to its neighbour), as an int when the axis is integral; None when ``value`` is inside the axis or the
    step would not give a new positive value."""
    if value == axis[-1]:
        candidate = axis[-1] * axis[-1] / axis[-2]
    elif value == axis[0]:
        candidate = axis[0] * axis[0] / axis[1]
    else:
        return None
    if all(isinstance(v, int) for v in axis):
        candidate = round(candidate)
        if candidate < 1 or candidate in axis:
            return None
        return int(candidate)
    return float(f"{candidate:.3g}")  # 1e-4, 1e-3 extends to 0.01, not 0.010000000000000002


@dataclass(frozen=True)
class SearchOutcome:
    """Every evaluated point in evaluation order, the keys whose winning value is still the smallest or largest
    evaluated (numeric keys) or the first or last listed (other keys), and how many points lay past the grid."""

    points: tuple[GridPoint, ...]
    edges: tuple[str, ...]
    extended: int


def search_grid(
    grid: Grid,
    evaluate: Callable[[dict[str, Any]], GridPoint],
    edge_extensions: int = 0,
    is_valid: Callable[[dict[str, Any]], bool] = lambda settings: True,
    resolve: Callable[[dict[str, Any]], Mapping[str, Any]] = lambda settings: {},
) -> SearchOutcome:
    """Evaluate ``grid`` stage by stage, then widen it past the winner's edges (module docstring).

    ``resolve`` gives the value every key takes at a point that does not set it (the method's configured
    default): a staged winner that kept a default lying outside a later stage's values (omega 1 against
    {16, 64, 256}) sits on that key's edge as much as one that chose an end value, and is extended the same way.
    """
    points: list[GridPoint] = []
    resolved: list[dict[str, Any]] = []  # each point's settings with the defaults it did not set, resolved once

    def effective(settings: Mapping[str, Any]) -> dict[str, Any]:
        return {**resolve(dict(settings)), **settings}

    def measure(settings: dict[str, Any]) -> None:
        if not any(point.settings == settings for point in points):  # a stage may revisit the winner
            points.append(evaluate(settings))
            resolved.append(effective(settings))

    def winner() -> int:
        return min(range(len(points)), key=lambda index: points[index].validation_gap)

    best: dict[str, Any] = {}
    for stage in grid_stages(grid):
        for values in expand_grid(stage):
            measure({**best, **values})
        if points:
            best = dict(points[winner()].settings)
    on_grid = len(points)
    axes = numeric_axes(grid)
    left = dict.fromkeys(axes, edge_extensions)

    def taken(key: str) -> list[float]:
        """Every value ``key`` took: its grid values, past-the-edge steps, and the default of points not setting it."""
        values = {value for settings in resolved if _is_positive_number(value := settings.get(key))}
        return sorted({*axes[key], *values})

    extending = True
    while extending and points:
        extending = False
        index = winner()
        best, current_of = dict(points[index].settings), resolved[index]
        for key in axes:
            current = current_of.get(key)
            if left[key] <= 0 or not _is_positive_number(current):
                continue
            value = step_past_edge(taken(key), current)
            if value is None:
                continue
            left[key] -= 1
            candidate = {**best, key: value}
            if not is_valid(candidate):
                left[key] = 0
                continue
            measure(candidate)
            extending = True
            break  # re-read the winner before stepping along another key
    if not points:
        return SearchOutcome(points=(), edges=(), extended=0)
    index = winner()
    best, current_of = dict(points[index].settings), resolved[index]
    numeric_edges = []
    for key in axes:
        current, values = current_of.get(key), taken(key)
        if _is_positive_number(current) and current in (values[0], values[-1]):
            numeric_edges.append(key)
    other_edges = [key for key in edge_keys(grid, best) if key not in axes]
    return SearchOutcome(points=tuple(points), edges=(*numeric_edges, *other_edges), extended=len(points) - on_grid)


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
    """The bench's metrics with the validation split in the role of the test split (see module docstring); the
    balanced ASR, which the objective does not use, is left out."""
    task = prepared.task
    if task.val is None or len(task.val.labels) < 2:
        raise ValueError("tuning needs a validation split of at least 2 samples: set data.val_fraction > 0")
    return evaluate_predictions(
        predict(model, task.retain.images, task.retain.labels, batch_size),
        predict(model, task.forget.images, task.forget.labels, batch_size),
        predict(model, task.val.images, task.val.labels, batch_size),
        prepared.manifest.forgotten_classes,
        task.seed,
        balanced_asr=False,
    )


def validation_gap(method: Mapping[str, float | None], retrain: Mapping[str, float | None]) -> float:
    """Mean of the LAF and SalUn gaps to Retrain (each skips terms missing on either side)."""
    gaps = [gap for gap in (gap_laf(method, retrain), gap_salun(method, retrain)) if gap is not None]
    if not gaps:
        raise ValueError("no metric is shared by the method and Retrain")
    return float(np.mean(gaps))


@dataclass(frozen=True)
class TuningResult:
    """The forget kind tuned for (``class`` or ``sample``), the grid points, best first, the keys whose winning
    value is still on the edge of what was evaluated, and how many points lay past the grid's edges."""

    kind: str
    points: tuple[GridPoint, ...]
    edges: tuple[str, ...] = ()
    extended: int = 0

    @property
    def all_collapsed(self) -> bool:
        return all(point.collapsed for point in self.points)


def check_grid_against_set(method: str, grid: Mapping[str, Sequence[Any]], unlearn: UnlearnSection) -> None:
    """Fail with one line when ``--set`` pins a key the grid varies: the explicit value would win at every point
    (``UnlearnSection.settings``), so the grid would silently evaluate one setting several times."""
    section = get_method(method).section
    for scope, sections in unlearn.explicit.items():
        for key, value in sections.get(section, {}).items():
            clashing = sorted(pinned_keys([key]) & set(grid))
            if clashing:
                where = "defaults" if scope == "defaults" else f"kinds.{scope}"
                raise ValueError(
                    f"--set unlearn.{where}.{section}.{key}={value} conflicts with the {method} grid's "
                    f"{clashing[0]}: {list(grid[clashing[0]])}; drop the --set or that grid key"
                )


def tune_method(
    method: str,
    grid: Grid,
    request: BenchRequest,
    on_point: Callable[[GridPoint], None] = lambda point: None,
    edge_extensions: int = 0,
) -> TuningResult:
    """Evaluate every grid point of ``method`` on the request's seeds, stage by stage, widening the grid past the
    winner's edges up to ``edge_extensions`` times per key (module docstring)."""
    get_method(method)
    stages = grid_stages(grid)
    for stage in stages:
        check_grid_against_set(method, stage, request.config.unlearn)
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

    def evaluate(settings: dict[str, Any]) -> GridPoint:
        gaps, seconds, utilities = [], [], []
        for prepared, reference in zip(prepared_seeds, references, strict=True):
            tuned_request = _with_settings(request, method, bundle.name, request.scenario, settings)
            model, rte = run_method(method, prepared, tuned_request, ())
            metrics = validation_metrics(model, prepared, batch)
            gaps.append(validation_gap(metrics, reference))
            utilities.append(utility(metrics) / max(utility(reference), 1e-9))
            seconds.append(rte)
        point = GridPoint(
            settings=settings,
            validation_gap=float(np.mean(gaps)),
            seconds=float(np.mean(seconds)),
            collapsed=float(np.mean(utilities)) < COLLAPSE_FRACTION,
        )
        on_point(point)
        return point

    def is_valid(settings: dict[str, Any]) -> bool:
        try:
            build_config(method, settings)
        except ValueError:  # pydantic's ValidationError: a value past the key's bound
            return False
        return True

    def resolve(settings: dict[str, Any]) -> dict[str, Any]:
        tuned_request = _with_settings(request, method, bundle.name, request.scenario, settings)
        config = tuned_request.config.unlearn.method_config(method, bundle.name, kind, request.scenario)
        return config.model_dump()

    outcome = search_grid(grid, evaluate, edge_extensions, is_valid, resolve)
    return TuningResult(
        kind=kind,
        points=tuple(sorted(outcome.points, key=lambda point: point.validation_gap)),
        edges=outcome.edges,
        extended=outcome.extended,
    )


def _with_settings(
    request: BenchRequest, method: str, dataset: str, scenario: str, settings: Mapping[str, Any]
) -> BenchRequest:
    """A copy of ``request`` whose config holds ``settings`` as the selected layer of this method and scenario."""
    document = request.config.model_dump()
    document["unlearn"]["tuned"].setdefault(dataset, {}).setdefault(scenario, {})[method] = dict(settings)
    config = type(request.config).model_validate(document)
    return BenchRequest(**{**request.__dict__, "config": config})


def load_grids(path: Path, dataset: str | None = None) -> dict[str, Grid]:
    """Read ``{method: {key: [values]}}`` grids (or ``{method: [stage, ...]}``, tuned in stages) from YAML, with
    ``dataset``'s own section applied.

    A top-level key naming a registered dataset holds that dataset's grids, ``{method: grid}``; each replaces the
    method's top-level grid on that dataset (so a grid is read whole, in one place).
    """
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict):
        raise ValueError(f"{path} must map method names to grids")
    datasets = set(dataset_names())
    grids = {name: grid for name, grid in document.items() if name not in datasets}
    for name, section in document.items():
        if name in datasets and not isinstance(section, dict):
            raise ValueError(f"{path}: the {name} section must map method names to grids")
    own = document.get(dataset, {}) if dataset in datasets else {}
    unknown = sorted(set(own) - set(grids))
    if unknown:
        raise ValueError(f"{path}: {dataset} section has a grid for {unknown[0]!r}, which has no top-level grid")
    for name, grid in {**grids, **own}.items():
        try:
            stages = grid_stages(grid)
        except ValueError as error:
            raise ValueError(f"{path}: {name}: {error}") from None
        if not all(isinstance(values, list) for stage in stages for values in stage.values()):
            raise ValueError(f"{path}: the grid of {name} must map keys to lists of values")
    return {**grids, **own}
