"""File-based stages for ``dvc repro``: the flow's computation for the latest deletion batch, from params.yaml.

Each stage reads the data under ``data/`` and earlier stages' outputs under ``artifacts/``, and writes its own
outputs under ``artifacts/<stage>/``. The latest batch's forget samples are read from the data version before
that batch (its ``parent_git_rev``) through DVC: deleted data is never kept in the working tree. The batch is
unlearned from the model version the flow unlearned it from (its ``parent_model_version`` tag in the registry),
and verified the way ``verify.mode`` says, so the stages reproduce the flow's verdict, not a fresh original's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.adapters.services import open_environment
from components.adapters.tracking import TrackingStore
from components.adapters.versioning import DataVersioning
from components.config import PipelineConfig
from components.data.types import DataError, ImageSet
from components.deletion import policy
from components.deletion.lineage import batch_lineage
from components.deletion.store import DataStore, ForgetBatch, StoredDataset, image_set_from_bytes, write_json
from components.files import write_torch
from components.reporting import DeletionOutcome, write_deletion_report
from components.stages import steps
from components.stages.certify import certification_metrics, certify_batch
from components.verification.certification import Certification
from components.verification.gates import Verdict


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
    reports = steps.validate_data(stored, steps.gx_outputs(ctx.config, ctx.root))
    document = {
        "dataset": stored.name,
        "success": all(r.success for r in reports),
        "failures": [f for r in reports for f in r.failures],
    }
    write_json(ctx.out("validate") / "report.json", document)
    for report in reports:
        report.raise_for_failures()
    return document


def _parent_version(ctx: StageContext, batch: ForgetBatch) -> tuple[TrackingStore, str, str]:
    """(tracking store, registered model name, parent version) of the version the flow promoted for ``batch``."""
    tracking = open_environment(ctx.config, ctx.root).tracking
    name = ctx.config.pipeline.registered_model.format(dataset=ctx.config.base.dataset)
    found = tracking.find_versions(name, {"forget_batch_id": batch.batch_id}) if tracking.is_registered(name) else []
    promoted = [ref for ref in found if tracking.version_tags(name, ref.version).get("verdict")]
    if not promoted:
        raise DataError(f"no registered version of {name} records batch {batch.batch_id}; run `mixunlearn run` first")
    parent = tracking.version_tags(name, promoted[-1].version).get("parent_model_version")
    if not parent:
        raise DataError(f"{name} version {promoted[-1].version} records no parent_model_version")
    return tracking, name, parent


def stage_parent(ctx: StageContext) -> dict[str, Any]:
    """The model the latest batch was unlearned from: its parent model version, loaded from the registry.

    Before any batch there is no parent: a model is trained on the current data instead (``source: trained``).
    """
    stored, _ = steps.prepare_data(ctx.config, ctx.store)
    batch = _latest_batch(ctx, stored)
    context = steps.run_context(ctx.config, stored)
    out = ctx.out("parent")
    if batch is None:
        model, seconds = context.train(context.tensors(stored.pool))
        metrics: dict[str, Any] = {
            "source": "trained",
            "note": "no forget batch yet: trained an original on the current data",
            "batch_id": None,
            "parent_model_version": None,
            "train_seconds": seconds,
            "pool_size": len(stored.pool),
        }
    else:
        tracking, name, version = _parent_version(ctx, batch)
        record = tracking.version_record(name, version)
        if record is None:
            raise DataError(f"{name} version {version}, batch {batch.batch_id}'s parent, is gone from the registry")
        model = tracking.load_model(record.ref, into=context.build_model())
        metrics = {
            "source": "registry",
            "batch_id": batch.batch_id,
            "model": name,
            "parent_model_version": version,
            "train_seconds": 0.0,
        }
    write_torch(model.state_dict(), out / "model.pt")
    write_json(out / "metrics.json", metrics)
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
    original = steps.load_state(ctx.out("parent") / "model.pt", context.build_model())
    method = context.serving_method
    # the loop's monitors (MixUnlearn's guard and forgetting monitor) see their share of val, never test, and never
    # certification's share
    monitor = context.heldout_split(stored.val).monitor if len(stored.val) else None
    val = context.tensors(monitor) if monitor is not None else None
    task = context.unlearning_task(
        original, retain=context.tensors(data.retain), forget=context.tensors(data.forget), val=val
    )
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
    """The flow's verdict for ``verify.mode``: certification against the parent model (certify, both) and the gates
    against the retrained reference (reference, both; shown, not decided on, in certify mode)."""
    stored = ctx.store.load(ctx.config.base.dataset)
    batch, data = _require_batch_data(ctx, stored)
    context = steps.batch_context(steps.run_context(ctx.config, stored), batch, data)
    method, mode = context.serving_method, ctx.config.verify.mode
    candidate = policy.candidate_row(method)
    paths = {
        candidate: ctx.out("unlearn") / "model.pt",
        "retrain": ctx.out("retrain") / "model.pt",
        "original": ctx.out("parent") / "model.pt",
    }
    models = {name: steps.load_state(path, context.build_model()) for name, path in paths.items()}
    certification = None
    if mode in ("certify", "both"):
        certification = certify_batch(
            context, models[candidate], models["original"], data.forget, stored.val, stored.pool
        )
    retain, forget, test = (context.tensors(images) for images in (data.retain, data.forget, stored.test))
    metrics = {name: context.evaluate(model, retain, forget, test) for name, model in models.items()}
    gates = steps.verify(ctx.config, metrics[candidate], metrics["retrain"])
    decided = gates if mode != "certify" else None
    decision = policy.decide(mode, certification, decided)
    summary = policy.verdict_line(mode, certification, decided)
    parent = json.loads((ctx.out("parent") / "metrics.json").read_text())
    seconds = {
        candidate: json.loads((ctx.out("unlearn") / "metrics.json").read_text())["rte_seconds"],
        "retrain": json.loads((ctx.out("retrain") / "metrics.json").read_text())["train_seconds"],
        "original": 0.0,
    }
    outcome = DeletionOutcome(
        batch=batch,
        verdict=gates,
        promoted_source=decision.source,
        promoted_version="(dvc repro: not registered)",
        previous_version=parent.get("parent_model_version"),
        metrics=metrics,
        seconds=seconds,
        lineage=batch_lineage(
            batch,
            parent_model_version=parent.get("parent_model_version"),
            method=method,
            verify_mode=mode,
            certification=certification.verdict_line()[:5000] if certification else None,
        ),
        certification=certification.to_document() if certification else None,
        mode=mode,
        summary_line=summary,
    )
    out = ctx.out("verify")
    write_deletion_report(outcome, out, "dvc-repro", "none")
    document = {
        "mode": mode,
        "passed": decision.source == "unlearned",
        "summary": summary,
        "parent_model_version": parent.get("parent_model_version"),
        "gates": {c.name: {"value": c.value, "limit": c.limit, "passed": c.passed} for c in gates.checks},
        "certification": certification_metrics(certification) if certification else None,
        "metrics": metrics,
    }
    write_json(out / "verdict.json", document)
    _write_checks(out / "checks.csv", gates, certification)
    return document


def _write_checks(path: Path, gates: Verdict, certification: Certification | None) -> None:
    """One row per check (the gates, and the certification's checks when it ran): the ``dvc plots`` data."""
    rows = [("gate", c.name, c.value, c.limit, int(c.passed)) for c in gates.checks]
    if certification is not None:
        rows += [("certification", c.name, c.value, c.limit, int(c.passed)) for c in certification.candidate_checks]
    lines = ["kind,check,value,limit,passed", *(",".join(str(cell) for cell in row) for row in rows)]
    path.write_text("\n".join(lines) + "\n")


STAGES: dict[str, Callable[[StageContext], dict[str, Any]]] = {
    "validate": stage_validate,
    "parent": stage_parent,
    "unlearn": stage_unlearn,
    "retrain": stage_retrain,
    "verify": stage_verify,
}
