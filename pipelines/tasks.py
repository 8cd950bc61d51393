"""Prefect tasks: thin wrappers that call component functions and record each stage in MLflow.

Tasks take live objects (models, arrays) and return them in memory, so caching and result persistence are off;
the retrain reference is cached in the model registry instead, keyed by (data md5, recipe, seed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.transactions import get_transaction

from components.adapters.expectations import ValidationFailed
from components.adapters.services import PipelineEnvironment
from components.adapters.tracking import ModelVersionRef, TrackingStore, config_sha256, metrics_callback
from components.adapters.versioning import DataSnapshot
from components.config import PipelineConfig
from components.data.types import ids_sha256
from components.deletion.store import ForgetBatch, StoredDataset
from components.models.backbones import Backbone
from components.runtime import Callback, resolve_device
from components.stages import steps as stages
from components.stages.report import DeletionOutcome, write_report
from components.unlearning.base import UnlearningResult, get_method
from components.verification.gates import Verdict

TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


def epoch_metrics(env: PipelineEnvironment) -> Sequence[Callback]:
    """Log epoch-level events only: a SQLite write per step would cost more than the step."""
    log = metrics_callback(env.tracking)

    def callback(event: str, values: Mapping[str, float], step: int) -> None:
        if event == "train_epoch" or (event == "unlearn_step" and step % 50 == 0):
            log(event, dict(values), step)

    return [callback]


def pool_fingerprint(stored: StoredDataset) -> str:
    """sha256 of the training pool's sample IDs: the samples a model was trained on or honours.

    The DVC md5 of ``data/`` also changes when requests are queued or batch records are written, so model reuse
    and the reference cache key on this instead."""
    return ids_sha256(stored.pool.ids.tolist())


def recipe_tags(config: PipelineConfig, stored: StoredDataset) -> dict[str, str]:
    recipe, model_name = stages.recipe_for(config, stored.bundle())
    return {
        "recipe_sha256": config_sha256(recipe.model_dump()),
        "model_arch": model_name,
        "seed": str(config.base.seed),
    }


@task(name="prepare-data", **TASK_OPTIONS)
def prepare_data(config: PipelineConfig, env: PipelineEnvironment) -> StoredDataset:
    stored, created = stages.prepare_data(config, env.store)
    get_run_logger().info(
        "%s %s: pool %d, val %d, test %d samples",
        "materialised" if created else "reusing",
        stored.name,
        len(stored.pool),
        len(stored.val),
        len(stored.test),
    )
    return stored


@task(name="validate-data", **TASK_OPTIONS)
def validate_data(env: PipelineEnvironment, stored: StoredDataset) -> None:
    with env.tracking.child_run("validate-data", {"stage": "validate"}):
        reports = stages.validate_data(stored)
        env.tracking.log_metrics({f"expectations_failed_{r.suite}_{i}": len(r.failures) for i, r in enumerate(reports)})
        for report in reports:
            report.raise_for_failures()


@task(name="version-data", **TASK_OPTIONS)
def version_data(env: PipelineEnvironment, message: str) -> DataSnapshot:
    snapshot = env.versioning.snapshot(message)
    get_run_logger().info("data version %s at git %s", snapshot.md5, snapshot.git_rev[:12])
    return snapshot


@task(name="original-model", **TASK_OPTIONS)
def original_model(
    config: PipelineConfig, env: PipelineEnvironment, stored: StoredDataset, snapshot: DataSnapshot
) -> tuple[Backbone, ModelVersionRef, float]:
    """The serving model for this data version: the champion when its lineage matches, else a new original.

    Returns (model, version, training seconds), the seconds 0 when the champion was reused."""
    name = env.model_name(config)
    champion = env.tracking.get_alias(name, config.pipeline.alias)
    bundle = stored.bundle()
    pool = pool_fingerprint(stored)
    if champion is not None and env.tracking.version_tags(name, champion.version).get("pool_sha256") == pool:
        model = env.tracking.load_model(champion, into=stages.model_builder(config, bundle))
        get_run_logger().info(
            "reusing %s@%s (version %s) for data %s", name, config.pipeline.alias, champion.version, snapshot.md5
        )
        return model, champion, 0.0
    with env.tracking.child_run("train-original", {"stage": "train", "data_md5": snapshot.md5}):
        env.tracking.log_params({"train." + k: v for k, v in stages.recipe_for(config, bundle)[0].model_dump().items()})
        env.tracking.log_input(stored.name, snapshot.md5, "data/", "train")
        device = resolve_device(config.base.device)
        model, seconds = stages.train_model(config, bundle, stored.pool, device, epoch_metrics(env))
        env.tracking.log_metrics({"train_seconds": seconds})
        ref = env.tracking.log_model(
            model.cpu(),
            _example(stored),
            name,
            {
                "source": "original",
                "data_md5": snapshot.md5,
                "git_rev": snapshot.git_rev,
                "pool_sha256": pool,
                "config_sha256": config_sha256(config.model_dump()),
                **recipe_tags(config, stored),
            },
        )
    env.tracking.set_alias(name, config.pipeline.alias, ref.version)
    get_run_logger().info("trained and registered %s version %s as %s", name, ref.version, config.pipeline.alias)
    return model, ref, seconds


@task(name="collect-batch", **TASK_OPTIONS)
def collect_batch(
    config: PipelineConfig, env: PipelineEnvironment, stored: StoredDataset, snapshot: DataSnapshot
) -> ForgetBatch | None:
    """Validate pending requests (rejecting bad ones with their reasons) and plan one batch of the rest."""
    pending = env.store.pending(stored.name)
    if not pending:
        return None
    accepted = []
    for request, report in stages.validate_requests(config, env.store, stored, pending):
        if report.success:
            accepted.append(request)
        else:
            env.store.reject(request, report.failures)
            get_run_logger().warning("rejected request %s: %s", request.request_id, "; ".join(report.failures))
    if not accepted:
        return None
    batch = env.store.plan_batch(stored, accepted, parent_data_md5=snapshot.md5, parent_git_rev=snapshot.git_rev)
    combined = stages.validate_requests(config, env.store, stored, [_as_request(batch, accepted[0])])
    report = combined[0][1]
    if not report.success:
        raise ValidationFailed(f"batch {batch.batch_id} breaks the deletion policy: {'; '.join(report.failures)}")
    return batch


def _as_request(batch: ForgetBatch, template: Any) -> Any:
    """The batch as one request, so the policy (batch size) is checked on the union of its requests."""
    return template.model_copy(update={"request_id": batch.batch_id, "ids": batch.forget_ids + batch.removed_elsewhere})


@task(name="apply-batch", **TASK_OPTIONS)
def apply_batch(env: PipelineEnvironment, stored: StoredDataset, batch: ForgetBatch) -> StoredDataset:
    return env.store.apply_batch(stored, batch)


@task(name="unlearn", tags=["gpu"], **TASK_OPTIONS)
def unlearn(
    config: PipelineConfig,
    env: PipelineEnvironment,
    stored: StoredDataset,
    original: Backbone,
    batch: ForgetBatch,
    batch_data: stages.BatchData,
) -> UnlearningResult:
    with env.tracking.child_run("unlearn", {"stage": "unlearn", "forget_batch_id": batch.batch_id}):
        method = config.pipeline.method
        kind = "class" if batch.forgotten_classes else "sample"
        bundle = stored.bundle()
        spec_section = get_method(method).section
        env.tracking.log_params(
            {"method": method, "forget_kind": kind, **config.unlearn.settings(spec_section, bundle.name, kind, method)}
        )
        env.tracking.log_input(stored.name, batch.sha256[:32], f"data/batches/{batch.batch_id}.json", "forget")
        device = resolve_device(config.base.device)
        result = stages.unlearn(
            config, bundle, original, batch_data, batch.forgotten_classes, device, epoch_metrics(env)
        )
        env.tracking.log_metrics({"rte_seconds": result.seconds})
    return result


@task(name="retrain-reference", **TASK_OPTIONS)
def retrain_reference(
    config: PipelineConfig, env: PipelineEnvironment, stored_after: StoredDataset, snapshot: DataSnapshot
) -> tuple[Backbone, ModelVersionRef, float, bool]:
    """The retrain-from-scratch reference on the retained data, reused when (data md5, recipe, seed) match."""
    name = env.reference_name(config)
    bundle = stored_after.bundle()
    key = {"pool_sha256": pool_fingerprint(stored_after), **recipe_tags(config, stored_after)}
    found = env.tracking.find_versions(name, key) if _registered(env, name) else []
    if found:
        ref = found[-1]
        model = env.tracking.load_model(ref, into=stages.model_builder(config, bundle))
        seconds = float(env.tracking.version_tags(name, ref.version).get("train_seconds", "nan"))
        get_run_logger().info("reusing retrain reference %s version %s", name, ref.version)
        return model, ref, seconds, False
    with env.tracking.child_run("retrain-reference", {"stage": "retrain", "data_md5": snapshot.md5, **key}):
        env.tracking.log_input(stored_after.name, snapshot.md5, "data/", "retain")
        device = resolve_device(config.base.device)
        model, seconds = stages.train_model(config, bundle, stored_after.pool, device, epoch_metrics(env))
        env.tracking.log_metrics({"train_seconds": seconds})
        ref = env.tracking.log_model(
            model.cpu(),
            _example(stored_after),
            name,
            {"source": "retrain", "train_seconds": f"{seconds:.3f}", "data_md5": snapshot.md5, **key},
        )
    return model, ref, seconds, True


def _registered(env: PipelineEnvironment, name: str) -> bool:
    try:
        return bool(env.tracking.find_versions(name))
    except Exception:  # the registered model does not exist yet
        return False


@task(name="evaluate", **TASK_OPTIONS)
def evaluate(
    config: PipelineConfig,
    env: PipelineEnvironment,
    label: str,
    model: torch.nn.Module,
    stored_after: StoredDataset,
    batch: ForgetBatch,
    batch_data: stages.BatchData,
) -> dict[str, float | None]:
    with env.tracking.child_run(f"evaluate-{label}", {"stage": "verify", "model": label}):
        metrics = stages.evaluate(
            model,
            stored_after.bundle(),
            batch_data,
            stored_after.test,
            batch.forgotten_classes,
            config.base.seed,
            resolve_device(config.base.device),
        )
        env.tracking.log_metrics({k: v for k, v in metrics.items() if v is not None})
    return metrics


@task(name="promote", **TASK_OPTIONS)
def promote(
    config: PipelineConfig,
    env: PipelineEnvironment,
    verdict: Verdict,
    unlearned: torch.nn.Module,
    reference: torch.nn.Module,
    stored_after: StoredDataset,
    tags: Mapping[str, str],
) -> tuple[str, str, str | None]:
    """Register the unlearned model (pass) or the retrain reference (fail) and move the alias to it.

    Returns (source, new version, previous version). The previous alias target is stored in the transaction so
    the rollback hook can put it back if anything later in the transaction fails.
    """
    name = env.model_name(config)
    previous = env.tracking.get_alias(name, config.pipeline.alias)
    transaction = get_transaction()
    if transaction is not None:
        # plain values only: the transaction deep-copies what it stores
        transaction.set("tracking_uri", env.tracking.tracking_uri)
        transaction.set("experiment", env.tracking.experiment)
        transaction.set("alias", config.pipeline.alias)
        transaction.set("model_name", name)
        transaction.set("previous_version", previous.version if previous else None)
    source, model = ("unlearned", unlearned) if verdict.passed else ("retrain", reference)
    with env.tracking.child_run("promote", {"stage": "promote", "verdict": "pass" if verdict.passed else "fail"}):
        ref = env.tracking.log_model(
            model.cpu(),
            _example(stored_after),
            name,
            {
                **tags,
                "source": source,
                "verdict": "pass" if verdict.passed else "fail",
                "verdict_detail": verdict.summary()[:5000],
            },
        )
        env.tracking.set_alias(name, config.pipeline.alias, ref.version)
    return source, ref.version, previous.version if previous else None


@promote.on_rollback
def restore_alias(transaction: Any) -> None:
    """Put the alias back on the version it named before the promotion."""
    tracking = TrackingStore(transaction.get("tracking_uri"), transaction.get("experiment"))
    name, previous = transaction.get("model_name"), transaction.get("previous_version")
    alias = transaction.get("alias")
    if previous is None:
        tracking.delete_alias(name, alias)
    else:
        tracking.set_alias(name, alias, previous)


@task(name="record-decision", **TASK_OPTIONS)
def record_decision(env: PipelineEnvironment, config: PipelineConfig, version: str, expected_source: str) -> None:
    """Read the alias back: the transaction commits only when the registry says what we decided."""
    name = env.model_name(config)
    current = env.tracking.get_alias(name, config.pipeline.alias)
    if current is None or current.version != version:
        raise RuntimeError(f"{name}@{config.pipeline.alias} does not point at version {version} after promotion")
    if env.tracking.version_tags(name, version).get("source") != expected_source:
        raise RuntimeError(f"{name} version {version} is not the {expected_source} model")


@task(name="report", **TASK_OPTIONS)
def report(config: PipelineConfig, env: PipelineEnvironment, outcome: DeletionOutcome) -> str:
    out_dir = env.root / config.pipeline.reports_dir / outcome.batch.batch_id
    paths = write_report(outcome, out_dir, env.model_name(config), config.pipeline.alias)
    env.tracking.log_artifact(paths["md"], "report")
    env.tracking.log_artifact(paths["png"], "report")
    markdown = paths["md"].read_text()
    create_markdown_artifact(markdown, key=report_key(outcome.batch.dataset), description=outcome.batch.batch_id)
    return str(paths["md"])


def report_key(dataset: str) -> str:
    """The Prefect artifact key of a dataset's deletion report: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"deletion-report-{dataset}".lower())


def _example(stored: StoredDataset) -> np.ndarray:
    """A two-image input example for torch.export (normalised like training inputs)."""
    return stored.bundle().to_tensor(stored.pool.images[:2]).numpy()
