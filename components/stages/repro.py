"""File-based stages for ``dvc repro``: the flow's computation for the latest deletion batch, from params.yaml.

Each stage reads the data under ``data/`` and earlier stages' outputs under ``artifacts/``, and writes its own
outputs under ``artifacts/<stage>/``. The latest batch's forget samples are read from the data version before
that batch (its ``parent_git_rev``) through DVC: deleted data is never kept in the working tree.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.adapters.versioning import DataVersioning
from components.config import PipelineConfig
from components.data.types import DataError, ImageSet
from components.deletion.store import DataStore, ForgetBatch, StoredDataset, write_json
from components.files import write_atomically
from components.runtime import resolve_device
from components.stages import steps as stages
from components.stages.report import DeletionOutcome, write_report


@dataclass(frozen=True)
class StageContext:
    config: PipelineConfig
    root: Path

    @property
    def store(self) -> DataStore:
        return DataStore(self.root / "data")

    def out(self, stage: str) -> Path:
        path = self.root / self.config.pipeline.artifacts_dir / stage
        path.mkdir(parents=True, exist_ok=True)
        return path


def _latest_batch(ctx: StageContext, stored: StoredDataset) -> ForgetBatch | None:
    batches = ctx.store.batches(stored.name)
    return batches[-1] if batches else None


def _parent_pool(ctx: StageContext, stored: StoredDataset, batch: ForgetBatch) -> ImageSet:
    """The training pool as it was before ``batch``, read back from its DVC version."""
    if batch.parent_git_rev is None:
        raise DataError(f"batch {batch.batch_id} records no parent data version; it cannot be reproduced")
    payload = DataVersioning(ctx.root).read_at(f"data/{stored.name}/pool.npz", batch.parent_git_rev)
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return ImageSet(ids=archive["ids"], images=archive["images"], labels=archive["labels"].astype(np.int64))


def _save_model(model: torch.nn.Module, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_atomically(path, buffer.getvalue())


def stage_validate(ctx: StageContext) -> dict[str, Any]:
    stored, _ = stages.prepare_data(ctx.config, ctx.store)
    reports = stages.validate_data(stored)
    document = {
        "dataset": stored.name,
        "success": all(r.success for r in reports),
        "failures": [f for r in reports for f in r.failures],
    }
    write_json(ctx.out("validate") / "report.json", document)
    for report in reports:
        report.raise_for_failures()
    return document


def stage_train(ctx: StageContext) -> dict[str, Any]:
    """The original model: trained on the data version before the latest batch (the current one if none)."""
    stored, _ = stages.prepare_data(ctx.config, ctx.store)
    batch = _latest_batch(ctx, stored)
    pool = _parent_pool(ctx, stored, batch) if batch else stored.pool
    model, seconds = stages.train_model(ctx.config, stored.bundle(), pool, resolve_device(ctx.config.base.device))
    _save_model(model, ctx.out("train") / "model.pt")
    metrics = {"train_seconds": seconds, "pool_size": len(pool), "batch_id": batch.batch_id if batch else None}
    write_json(ctx.out("train") / "metrics.json", metrics)
    return metrics


def _batch_data(ctx: StageContext, stored: StoredDataset) -> tuple[ForgetBatch, stages.BatchData] | None:
    batch = _latest_batch(ctx, stored)
    if batch is None:
        return None
    parent = _parent_pool(ctx, stored, batch)
    forget_mask = np.isin(parent.ids, np.asarray(batch.forget_ids))
    data = stages.BatchData(
        retain=parent.subset(np.flatnonzero(~forget_mask)), forget=parent.subset(np.flatnonzero(forget_mask))
    )
    return batch, data


def _require_batch_data(ctx: StageContext, stored: StoredDataset) -> tuple[ForgetBatch, stages.BatchData]:
    found = _batch_data(ctx, stored)
    if found is None:
        raise DataError("no forget batch has been applied yet: run `mixunlearn run` with a request first")
    return found


def stage_unlearn(ctx: StageContext) -> dict[str, Any]:
    stored = ctx.store.load(ctx.config.base.dataset)
    batch, data = _require_batch_data(ctx, stored)
    bundle = stored.bundle()
    original = stages.load_state(ctx.out("train") / "model.pt", stages.model_builder(ctx.config, bundle))
    device = resolve_device(ctx.config.base.device)
    result = stages.unlearn(ctx.config, bundle, original.to(device), data, batch.forgotten_classes, device)
    _save_model(result.model, ctx.out("unlearn") / "model.pt")
    metrics = {"rte_seconds": result.seconds, "batch_id": batch.batch_id, "method": ctx.config.pipeline.method}
    write_json(ctx.out("unlearn") / "metrics.json", metrics)
    return metrics


def stage_retrain(ctx: StageContext) -> dict[str, Any]:
    stored = ctx.store.load(ctx.config.base.dataset)
    model, seconds = stages.train_model(
        ctx.config, stored.bundle(), stored.pool, resolve_device(ctx.config.base.device)
    )
    _save_model(model, ctx.out("retrain") / "model.pt")
    metrics = {"train_seconds": seconds, "pool_size": len(stored.pool)}
    write_json(ctx.out("retrain") / "metrics.json", metrics)
    return metrics


def stage_verify(ctx: StageContext) -> dict[str, Any]:
    stored = ctx.store.load(ctx.config.base.dataset)
    batch, data = _require_batch_data(ctx, stored)
    bundle = stored.bundle()
    device = resolve_device(ctx.config.base.device)
    models = {
        ctx.config.pipeline.method: ctx.out("unlearn") / "model.pt",
        "retrain": ctx.out("retrain") / "model.pt",
        "original": ctx.out("train") / "model.pt",
    }
    metrics = {
        name: stages.evaluate(
            stages.load_state(path, stages.model_builder(ctx.config, bundle)),
            bundle,
            data,
            stored.test,
            batch.forgotten_classes,
            ctx.config.base.seed,
            device,
        )
        for name, path in models.items()
    }
    verdict = stages.verify(ctx.config, metrics[ctx.config.pipeline.method], metrics["retrain"])
    seconds = {
        ctx.config.pipeline.method: json.loads((ctx.out("unlearn") / "metrics.json").read_text())["rte_seconds"],
        "retrain": json.loads((ctx.out("retrain") / "metrics.json").read_text())["train_seconds"],
        "original": 0.0,
    }
    outcome = DeletionOutcome(
        batch=batch,
        verdict=verdict,
        promoted_source="unlearned" if verdict.passed else "retrain",
        promoted_version="(dvc repro: not registered)",
        previous_version=None,
        metrics=metrics,
        seconds=seconds,
        lineage={
            "forget_batch_id": batch.batch_id,
            "forget_manifest_sha256": batch.sha256,
            "parent_git_rev": batch.parent_git_rev or "",
            "parent_data_md5": batch.parent_data_md5 or "",
        },
    )
    out = ctx.out("verify")
    write_report(outcome, out, "dvc-repro", "none")
    document = {
        "passed": verdict.passed,
        "summary": verdict.summary(),
        "gates": {c.name: {"value": c.value, "limit": c.limit, "passed": c.passed} for c in verdict.checks},
        "metrics": metrics,
    }
    write_json(out / "verdict.json", document)
    return document


STAGES: dict[str, Callable[[StageContext], dict[str, Any]]] = {
    "validate": stage_validate,
    "train": stage_train,
    "unlearn": stage_unlearn,
    "retrain": stage_retrain,
    "verify": stage_verify,
}
