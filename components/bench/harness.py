"""The benchmark harness: every method on the same data, seeds and metrics, against a paired Retrain.

Per seed the original model is trained once and shared by all methods; the retrain reference is trained once per
(seed, forget set). Both are cached on disk keyed by what determines them, so reruns and other methods reuse them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch

import components.unlearning  # noqa: F401  (registers the methods)
from components.config import PipelineConfig
from components.data.datasets import load_dataset
from components.data.scenarios import ForgetManifest, partition, resolve_scenario
from components.data.splits import Split, make_split
from components.data.types import DatasetBundle, ImageSet, ids_sha256
from components.files import write_torch
from components.models.backbones import Backbone
from components.runtime import Callback, resolve_device
from components.stages.context import RunContext
from components.unlearning.base import LabeledTensors, UnlearningTask, get_method

# (method, seed) -> callbacks for that cell; lets the CLI attach progress bars without the harness knowing.
CallbackFactory = Callable[[str, int], Sequence[Callback]]


@dataclass(frozen=True)
class BenchRequest:
    """One benchmark: a dataset, a forget scenario, the methods and the seeds."""

    dataset: str
    scenario: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    config: PipelineConfig
    data_dir: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class PreparedSeed:
    """Data, forget manifest and the two cached reference models of one seed, with the seed's run context."""

    context: RunContext
    split: Split
    manifest: ForgetManifest
    task: UnlearningTask
    test: LabeledTensors
    retrain_model: torch.nn.Module
    retrain_seconds: float

    @property
    def bundle(self) -> DatasetBundle:
        return self.context.bundle


def digest(*parts: object) -> str:
    """A short stable key of JSON-serialisable parts."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


class ModelCache:
    """Trained models on disk, keyed by (dataset, training IDs, recipe, architecture, seed, training code)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def trained(
        self,
        kind: str,
        context: RunContext,
        images: ImageSet,
        callbacks: Sequence[Callback] = (),
    ) -> tuple[Backbone, float]:
        """Return (model, training seconds) of the context's recipe on ``images``, training and caching when absent."""
        key = (context.bundle.name, ids_sha256(images.ids.tolist()), context.recipe_tags())
        path = self.directory / f"{kind}-{digest(*key)}.pt"
        data = context.tensors(images)
        if path.exists():
            torch.manual_seed(context.seed)  # the same draws as a fresh training, so later randomness matches
            model = context.build_model().to(data.images.device)
            saved = torch.load(path, map_location=data.images.device, weights_only=True)
            model.load_state_dict(saved["state_dict"])
            return model.eval(), float(saved["seconds"])
        model, seconds = context.train(data, callbacks)
        write_torch({"state_dict": model.state_dict(), "seconds": seconds}, path)
        return model.eval(), seconds


def prepare_seed(
    request: BenchRequest,
    bundle: DatasetBundle,
    seed: int,
    device: torch.device,
    cache: ModelCache,
    callbacks: CallbackFactory,
    manifest_dir: Path | None = None,
) -> PreparedSeed:
    """Split, resolve the forget set, and get (train or load) the original and retrain models of one seed."""
    config = request.config
    split = make_split(bundle, config.data.val_fraction, seed)
    manifest = resolve_scenario(request.scenario, split.pool, bundle.name, seed)
    if manifest_dir is not None:
        manifest.save(manifest_dir / f"forget-seed{seed}.json")
    retain_set, forget_set = partition(split.pool, manifest)
    context = RunContext.create(
        config,
        bundle,
        forgotten_classes=manifest.forgotten_classes,
        scenario=request.scenario,
        seed=seed,
        architecture=request.model,
        device=device,
    )
    original, _ = cache.trained("original", context, split.pool, callbacks("original", seed))
    retrain_model, retrain_seconds = cache.trained("retrain", context, retain_set, callbacks("retrain", seed))
    task = context.unlearning_task(
        original,
        retain=context.tensors(retain_set),
        forget=context.tensors(forget_set),
        val=context.tensors(split.val) if len(split.val) else None,
    )
    return PreparedSeed(
        context=context,
        split=split,
        manifest=manifest,
        task=task,
        test=context.tensors(split.test),
        retrain_model=retrain_model,
        retrain_seconds=retrain_seconds,
    )


def evaluate_prepared(model: torch.nn.Module, prepared: PreparedSeed, batch_size: int) -> dict[str, float | None]:
    """All metrics of both protocols for one model on one seed's data, in percent."""
    task = prepared.task
    return prepared.context.evaluate(model, task.retain, task.forget, prepared.test, batch_size)


def run_method(
    method: str, prepared: PreparedSeed, request: BenchRequest, callbacks: Sequence[Callback]
) -> tuple[torch.nn.Module, float]:
    """(model, RTE seconds) of one method on one seed; retrain reuses the cached reference.

    The method's settings come from ``request.config`` (tuning swaps in a config per grid point).
    """
    if method == "retrain":
        return prepared.retrain_model, prepared.retrain_seconds
    context = dataclasses.replace(prepared.context, config=request.config)
    result = context.unlearn(method, prepared.task, callbacks)
    return result.model, result.seconds


def run_bench(
    request: BenchRequest,
    out_dir: Path | None = None,
    callbacks: CallbackFactory = lambda method, seed: (),
    on_row: Callable[[dict[str, object]], None] = lambda row: None,
    jobs: int = 1,
) -> list[dict[str, object]]:
    """Run every (seed, method) cell and return one row per cell (metrics in percent, RTE in seconds).

    With ``jobs > 1`` everything runs in that many spawned processes (each with ``cores // jobs`` torch threads):
    each seed's reference models are prepared, and a seed's cells are queued as soon as its references exist, so
    no process waits on another seed's training. Rows keep the (seed, method) order either way. Every RTE, the
    Retrain reference's included when it is trained in the same run, is then measured next to one other busy
    process, so time ratios stay like-for-like; absolute seconds are not comparable to ``jobs = 1`` runs.
    """
    for method in request.methods:  # fail on an unknown name before any training (settings validate on load)
        get_method(method)
    manifest_dir = out_dir / "manifests" if out_dir else None
    if jobs > 1:
        return _run_parallel(request, manifest_dir, jobs, on_row)
    device = resolve_device(request.config.base.device)
    bundle = load_dataset(request.dataset, request.data_dir)
    cache = ModelCache(Path(request.config.bench.cache_dir))
    rows: list[dict[str, object]] = []
    for seed in request.seeds:
        prepared = prepare_seed(request, bundle, seed, device, cache, callbacks, manifest_dir)
        for method in request.methods:
            row = _cell_row(method, prepared, request, callbacks(method, seed))
            rows.append(row)
            on_row(row)
    return rows


def _cell_row(
    method: str, prepared: PreparedSeed, request: BenchRequest, callbacks: Sequence[Callback]
) -> dict[str, object]:
    model, seconds = run_method(method, prepared, request, callbacks)
    metrics = evaluate_prepared(model, prepared, request.config.bench.eval_batch_size)
    return {"method": method, "seed": prepared.task.seed, **metrics, "seconds": seconds}


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=4)
def _worker_bundle(dataset: str, data_dir: str | None) -> DatasetBundle:
    return load_dataset(dataset, data_dir)


def _worker_prepare(request: BenchRequest, seed: int, manifest_dir: Path | None) -> PreparedSeed:
    device = resolve_device(request.config.base.device)
    bundle = _worker_bundle(request.dataset, request.data_dir)
    cache = ModelCache(Path(request.config.bench.cache_dir))
    return prepare_seed(request, bundle, seed, device, cache, lambda method, seed: (), manifest_dir)


def _worker_seed(request: BenchRequest, seed: int, manifest_dir: Path | None) -> int:
    _worker_prepare(request, seed, manifest_dir)
    return seed


def _worker_cell(request: BenchRequest, seed: int, method: str) -> dict[str, object]:
    return _cell_row(method, _worker_prepare(request, seed, None), request, ())


def _run_parallel(
    request: BenchRequest, manifest_dir: Path | None, jobs: int, on_row: Callable[[dict[str, object]], None]
) -> list[dict[str, object]]:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    # spawn, not fork: a forked child inherits the parent's OpenMP thread pool state and can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init, initargs=(threads,)) as pool:
        preparing = [pool.submit(_worker_seed, request, seed, manifest_dir) for seed in request.seeds]
        cells: dict[tuple[int, str], Future[dict[str, object]]] = {}
        for future in as_completed(preparing):
            seed = future.result()
            for method in request.methods:
                cells[(seed, method)] = pool.submit(_worker_cell, request, seed, method)
        rows = []
        for seed in request.seeds:
            for method in request.methods:
                rows.append(cells[(seed, method)].result())
                on_row(rows[-1])
    return rows
