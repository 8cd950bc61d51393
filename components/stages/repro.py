"""File-based stages for ``dvc repro``: the flow's computation for the latest deletion batch, from params.yaml.

Each stage reads the data under ``data/`` and earlier stages' outputs under ``artifacts/``, and writes its own
outputs under ``artifacts/<stage>/``. The latest batch's forget samples are read from the data version before
that batch (its ``parent_git_rev``) through DVC: deleted data is never kept in the working tree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.adapters.versioning import DataVersioning
from components.config import PipelineConfig
from components.data.types import DataError, ImageSet
from components.deletion.lineage import batch_lineage
from components.deletion.store import DataStore, ForgetBatch, StoredDataset, image_set_from_bytes, write_json
from components.files import write_torch
from components.reporting import DeletionOutcome, write_deletion_report
from components.stages import steps


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
    return image_set_from_bytes(payload)


def stage_validate(ctx: StageContext) -> dict[str, Any]:
    stored, _ = steps.prepare_data(ctx.config, ctx.store)
    reports = steps.validate_data(stored)
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
    stored, _ = steps.prepare_data(ctx.config, ctx.store)
    batch = _latest_batch(ctx, stored)
    pool = _parent_pool(ctx, stored, batch) if batch else stored.pool
    context = steps.run_context(ctx.config, stored)
    model, seconds = context.train(context.tensors(pool))
    write_torch(model.state_dict(), ctx.out("train") / "model.pt")
    metrics = {"train_seconds": seconds, "pool_size": len(pool), "batch_id": batch.batch_id if batch else None}
    write_json(ctx.out("train") / "metrics.json", metrics)
    return metrics


def _require_batch_data(ctx: StageContext, stored: StoredDataset) -> tuple[ForgetBatch, steps.BatchData]:
    batch = _latest_batch(ctx, stored)
    if batch is None:
        raise DataError("no forget batch has been applied yet: run `mixunlearn run` with a request first")
    return batch, steps.split_for_batch(_parent_pool(ctx, stored, batch), batch)


def stage_unlearn(ctx: StageContext) -> dict[str, Any]:
    stored = ctx.store.load(ctx.config.base.dataset)
    batch, data = _require_batch_data(ctx, stored)
    context = steps.batch_context(steps.run_context(ctx.config, stored), batch, data)
    original = steps.load_state(ctx.out("train") / "model.pt", context.build_model())
    method = ctx.config.pipeline.method
    task = context.unlearning_task(original, retain=context.tensors(data.retain), forget=context.tensors(data.forget))
    result = context.unlearn(method, task)
    write_torch(result.model.state_dict(), ctx.out("unlearn") / "model.pt")
    metrics = {"rte_seconds": result.seconds, "batch_id": batch.batch_id, "method": method}
    write_json(ctx.out("unlearn") / "metrics.json", metrics)
    return metrics


def stage_retrain(ctx: StageContext) -> dict[str, Any]:
    stored = ctx.store.load(ctx.config.base.dataset)
    context = steps.run_context(ctx.config, stored)
    model, seconds = context.train(context.tensors(stored.pool))
    write_torch(model.state_dict(), ctx.out("retrain") / "model.pt")
    metrics = {"train_seconds": seconds, "pool_size": len(stored.pool)}
    write_json(ctx.out("retrain") / "metrics.json", metrics)
    return metrics


def stage_verify(ctx: StageContext) -> dict[str, Any]:
    stored = ctx.store.load(ctx.config.base.dataset)
    batch, data = _require_batch_data(ctx, stored)
    context = steps.batch_context(steps.run_context(ctx.config, stored), batch, data)
    method = ctx.config.pipeline.method
    models = {
        method: ctx.out("unlearn") / "model.pt",
        "retrain": ctx.out("retrain") / "model.pt",
        "original": ctx.out("train") / "model.pt",
    }
    retain, forget, test = (context.tensors(images) for images in (data.retain, data.forget, stored.test))
    metrics = {
        name: context.evaluate(steps.load_state(path, context.build_model()), retain, forget, test)
        for name, path in models.items()
    }
    verdict = steps.verify(ctx.config, metrics[method], metrics["retrain"])
    seconds = {
        method: json.loads((ctx.out("unlearn") / "metrics.json").read_text())["rte_seconds"],
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
        lineage=batch_lineage(batch),
    )
    out = ctx.out("verify")
    write_deletion_report(outcome, out, "dvc-repro", "none")
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
