"""The benchmark harness: every method on the same data, seeds and metrics, against a paired Retrain.

Per seed the original model is trained once and shared by all methods; the retrain reference is trained once per
(seed, forget set). Both are cached on disk keyed by what determines them, so reruns and other methods reuse them.
"""

from __future__ import annotations

import functools
import hashlib
import io
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
from components.files import write_atomically
from components.models.backbones import Backbone, build_backbone
from components.runtime import Callback, resolve_device
from components.training import TrainConfig, train_classifier
from components.unlearning.base import LabeledTensors, UnlearningTask, build_config, build_unlearner, get_method
from components.verification.evaluate import evaluate_model

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
    """Data, forget manifest and the two cached reference models of one seed."""

    bundle: DatasetBundle
    split: Split
    manifest: ForgetManifest
    task: UnlearningTask
    test: LabeledTensors
    retrain_model: torch.nn.Module
    retrain_seconds: float


def digest(*parts: object) -> str:
    """A short stable key of JSON-serialisable parts."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def to_tensors(bundle: DatasetBundle, images: ImageSet, device: torch.device) -> LabeledTensors:
    return LabeledTensors(
        images=bundle.to_tensor(images.images, device),
        labels=torch.as_tensor(images.labels, dtype=torch.long, device=device),
    )


def save_atomically(payload: object, path: Path) -> None:
    """torch.save through ``write_atomically``: an interrupted run never leaves a half-written cache file."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomically(path, buffer.getvalue())


class ModelCache:
    """Trained models on disk, keyed by (dataset, training IDs, model, recipe, seed)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def trained(
        self,
        kind: str,
        key_parts: tuple[object, ...],
        build: Callable[[], Backbone],
        data: LabeledTensors,
        recipe: TrainConfig,
        seed: int,
        callbacks: Sequence[Callback] = (),
    ) -> tuple[Backbone, float]:
        """Return (model, training seconds), training and caching it when absent."""
        path = self.directory / f"{kind}-{digest(*key_parts)}.pt"
        torch.manual_seed(seed)
        model = build().to(data.images.device)
        if path.exists():
            saved = torch.load(path, map_location=data.images.device, weights_only=True)
            model.load_state_dict(saved["state_dict"])
            return model.eval(), float(saved["seconds"])
        result = train_classifier(model, data.images, data.labels, recipe, seed, callbacks)
        save_atomically({"state_dict": model.state_dict(), "seconds": result.seconds}, path)
        return model.eval(), result.seconds


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
    recipe = config.train.recipe(bundle.name)
    model_name = request.model or recipe.model or bundle.default_model

    def build() -> Backbone:
        return build_backbone(model_name, bundle.image_shape, bundle.num_classes)

    recipe_key = recipe.model_dump()
    pool = to_tensors(bundle, split.pool, device)
    original, _ = cache.trained(
        "original",
        (bundle.name, ids_sha256(split.pool.ids.tolist()), model_name, recipe_key, seed),
        build,
        pool,
        recipe,
        seed,
        callbacks("original", seed),
    )
    retain = to_tensors(bundle, retain_set, device)
    retrain_model, retrain_seconds = cache.trained(
        "retrain",
        (bundle.name, ids_sha256(retain_set.ids.tolist()), model_name, recipe_key, seed),
        build,
        retain,
        recipe,
        seed,
        callbacks("retrain", seed),
    )
    task = UnlearningTask(
        original=original,
        forget=to_tensors(bundle, forget_set, device),
        retain=retain,
        num_classes=bundle.num_classes,
        seed=seed,
        build_model=build,
        train_config=recipe,
        val=to_tensors(bundle, split.val, device) if len(split.val) else None,
    )
    return PreparedSeed(
        bundle=bundle,
        split=split,
        manifest=manifest,
        task=task,
        test=to_tensors(bundle, split.test, device),
        retrain_model=retrain_model,
        retrain_seconds=retrain_seconds,
    )


def evaluate_prepared(model: torch.nn.Module, prepared: PreparedSeed, batch_size: int) -> dict[str, float | None]:
    """All metrics of both protocols for one model on one seed's data, in percent."""
    task = prepared.task
    return evaluate_model(
        model, task.retain, task.forget, prepared.test, prepared.manifest.forgotten_classes, task.seed, batch_size
    )


def run_method(
    method: str, prepared: PreparedSeed, request: BenchRequest, callbacks: Sequence[Callback]
) -> tuple[torch.nn.Module, float]:
    """(model, RTE seconds) of one method on one seed; retrain reuses the cached reference."""
    if method == "retrain":
        return prepared.retrain_model, prepared.retrain_seconds
    spec = get_method(method)
    kind = "class" if prepared.manifest.forgotten_classes else "sample"
    settings = request.config.unlearn.settings(spec.section, prepared.bundle.name, kind, method, request.scenario)
    result = build_unlearner(method, settings)(prepared.task, callbacks)
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
    for method in request.methods:  # fail on an unknown name or a bad setting before any training
        spec = get_method(method)
        for kind in ("class", "sample"):
            build_config(
                method, request.config.unlearn.settings(spec.section, request.dataset, kind, method, request.scenario)
            )
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
