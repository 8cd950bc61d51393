"""Prefect tasks: thin wrappers that add retries-free orchestration, tags, logging and MLflow tracking around the
component functions (``components/stages``, ``components/deletion/policy.py``), where every decision lives.

Tasks take live objects (models, arrays) and return them in memory, so caching and result persistence are off;
the retrain reference is cached in the model registry instead, keyed by ``policy.reference_key``. Every task that
trains or unlearns carries the ``gpu`` tag, so a tag concurrency limit serialises GPU work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import deployment
from prefect.transactions import get_transaction

from components.adapters.expectations import docs_index, latest_validations
from components.adapters.services import PipelineEnvironment
from components.adapters.tracking import ModelVersionRef, TrackingStore, config_sha256, metrics_callback
from components.adapters.versioning import DataSnapshot
from components.config import PipelineConfig
from components.data.types import DataError, ImageSet, ids_sha256
from components.deletion import ledger, policy
from components.deletion.store import ForgetBatch, StoredDataset, image_set_from_bytes
from components.models.backbones import Backbone
from components.reporting import DeletionOutcome, write_deletion_report
from components.runtime import Callback
from components.stages import certify as certification_stage
from components.stages import steps
from components.stages.context import RunContext
from components.unlearning.base import UnlearningResult
from components.verification.certification import Certification
from pipelines import progress

TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, **progress.STAGE_HOOKS}
GPU_TAG = "gpu"
AUDIT_DUE_EVENT = "mixunlearn.retrain-audit.due"


def epoch_metrics(env: PipelineEnvironment) -> Sequence[Callback]:
    """Log epoch-level events and guard checks only: a SQLite write per step would cost more than the step. An
    observer installed by the CLI (``progress.observe``) gets every event as well."""
    log = metrics_callback(env.tracking)

    def callback(event: str, values: Mapping[str, float], step: int) -> None:
        if event in ("train_epoch", "unlearn_guard", "unlearn_monitor") or (event == "unlearn_step" and step % 50 == 0):
            log(event, dict(values), step)

    return [callback, *progress.epoch_callbacks()]


@task(name="prepare-data", **TASK_OPTIONS)
def prepare_data(config: PipelineConfig, env: PipelineEnvironment) -> StoredDataset:
    stored, created = steps.prepare_data(config, env.store, env.versioning)
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
def validate_data(config: PipelineConfig, env: PipelineEnvironment, stored: StoredDataset) -> None:
    """The data contract on every split; each split's validation result and Data Docs page go to the run too."""
    with env.tracking.child_run("validate-data", {"stage": "validate"}):
        reports = steps.validate_data(stored, steps.gx_outputs(config, env.root))
        env.tracking.log_metrics({f"expectations_failed_{r.suite}_{i}": len(r.failures) for i, r in enumerate(reports)})
        for report in reports:
            log_validation(env, report.suite, report.run_name, report.result_file, report.docs_page)
        for report in reports:
            report.raise_for_failures()


def log_validation(
    env: PipelineEnvironment, suite: str, run_name: str | None, result_file: Path | None, docs_page: Path | None
) -> None:
    """Log a kept GX validation result (JSON) and its Data Docs page (HTML) under ``gx/<suite>/<run name>/``."""
    for path in (result_file, docs_page):
        if path is not None and path.is_file():
            env.tracking.log_artifact(path, f"gx/{suite}/{run_name}")


@task(name="version-data", **TASK_OPTIONS)
def version_data(env: PipelineEnvironment, message: str) -> DataSnapshot:
    snapshot = env.versioning.snapshot(message)
    get_run_logger().info("data version %s at git %s", snapshot.md5, snapshot.git_rev[:12])
    return snapshot


@task(name="original-model", tags=[GPU_TAG], **TASK_OPTIONS)
def original_model(
    context: RunContext, env: PipelineEnvironment, stored: StoredDataset, snapshot: DataSnapshot
) -> tuple[Backbone, ModelVersionRef, float]:
    """The serving model for this data version: the champion when it serves this pool, else a new original.

    Returns (model, version, training seconds), the seconds 0 when the champion was reused."""
    config = context.config
    name = env.model_name(config)
    unfinished = ledger.BatchLedger(env.root).unfinished(stored.name)
    if unfinished is not None:  # the data may already lack its samples: it is no data version to train on
        raise RuntimeError(f"batch {unfinished.batch.batch_id} is unfinished; resume it before training an original")
    champion = env.tracking.get_alias(name, config.pipeline.alias)
    pool = policy.pool_fingerprint(stored)
    if champion is not None and policy.serves_pool(env.tracking.version_tags(name, champion.version), pool):
        model = env.tracking.load_model(champion, into=context.build_model())
        get_run_logger().info(
            "reusing %s@%s (version %s) for data %s", name, config.pipeline.alias, champion.version, snapshot.md5
        )
        return model, champion, 0.0
    with env.tracking.child_run("train-original", {"stage": "train", "data_md5": snapshot.md5}):
        env.tracking.log_params({"train." + k: v for k, v in context.recipe.model_dump().items()})
        env.tracking.log_input(stored.name, snapshot.md5, "data/", "train")
        model, seconds = context.train(context.tensors(stored.pool), epoch_metrics(env))
        env.tracking.log_metrics({"train_seconds": seconds})
        ref = env.tracking.log_model(
            model.cpu(),
            input_example(stored),
            name,
            {
                "source": "original",
                "data_md5": snapshot.md5,
                "git_rev": snapshot.git_rev,
                "pool_sha256": pool,
                "config_sha256": config_sha256(config.model_dump()),
                "promoted_by": "deletion-batch",
                **({"pipeline_run_id": env.tracking.parent_run_id} if env.tracking.parent_run_id else {}),
                **context.recipe_tags(),
            },
        )
    env.tracking.set_alias(name, config.pipeline.alias, ref.version)
    get_run_logger().info("trained and registered %s version %s as %s", name, ref.version, config.pipeline.alias)
    return model, ref, seconds


@task(name="plan-batch", **TASK_OPTIONS)
def plan_batch(
    config: PipelineConfig, env: PipelineEnvironment, stored: StoredDataset, snapshot: DataSnapshot
) -> ForgetBatch | None:
    """Plan the next batch from the pending requests; rejected ones move to requests/rejected with their reasons."""
    plan = policy.plan_batch(
        env.store,
        stored,
        env.store.pending(stored.name),
        config.pipeline.max_batch_fraction,
        parent_data_md5=snapshot.md5,
        parent_git_rev=snapshot.git_rev,
        gx_outputs=steps.gx_outputs(config, env.root),
    )
    logger = get_run_logger()
    for rejection in plan.rejected:
        env.store.reject(rejection.request, list(rejection.reasons))
        logger.warning("rejected request %s: %s", rejection.request.request_id, "; ".join(rejection.reasons))
    for request in plan.deferred:
        logger.info("request %s waits for the next batch (batch limit reached)", request.request_id)
    return plan.batch


@task(name="close-interrupted-runs", **TASK_OPTIONS)
def close_interrupted_runs(env: PipelineEnvironment, dataset: str) -> list[str]:
    """End the dataset's MLflow runs left ``RUNNING`` by a killed process as ``KILLED``. Called while the model's
    slot is held, so no live batch or audit of this dataset owns one of them."""
    closed = env.tracking.close_interrupted_runs({"dataset": dataset})
    if closed:
        get_run_logger().warning("closed %d interrupted MLflow run(s) as KILLED: %s", len(closed), ", ".join(closed))
    return closed


@task(name="unfinished-batch", **TASK_OPTIONS)
def unfinished_batch(env: PipelineEnvironment, dataset: str) -> ledger.BatchState | None:
    """The batch an interrupted run left unfinished (``components/deletion/ledger.py``), if any."""
    state = ledger.BatchLedger(env.root).unfinished(dataset)
    if state is not None:
        get_run_logger().warning("resuming batch %s from stage %s", state.batch.batch_id, state.stage)
    return state


@task(name="start-batch", **TASK_OPTIONS)
def start_batch(env: PipelineEnvironment, batch: ForgetBatch, parent_model_version: str) -> ledger.BatchState:
    """Record the planned batch and the champion it starts from, before anything of it happens."""
    return ledger.BatchLedger(env.root).save(ledger.plan(batch, parent_model_version))


def record_stage(
    env: PipelineEnvironment, state: ledger.BatchState, stage: ledger.Stage, **facts: str | None
) -> ledger.BatchState:
    """Record that ``state``'s batch reached ``stage`` (a plain function: a ledger write, nothing to orchestrate)."""
    return ledger.BatchLedger(env.root).record(state, stage, **facts)


@task(name="parent-model", tags=[GPU_TAG], **TASK_OPTIONS)
def parent_model(
    context: RunContext, env: PipelineEnvironment, state: ledger.BatchState
) -> tuple[Backbone, ModelVersionRef]:
    """The champion a resumed batch started from, loaded from the registry (never a model trained now)."""
    name = env.model_name(context.config)
    if state.parent_model_version is None:
        raise RuntimeError(f"batch {state.batch.batch_id} recorded no parent model version; it cannot be resumed")
    record = env.tracking.version_record(name, state.parent_model_version)
    if record is None:
        raise RuntimeError(
            f"{name} version {state.parent_model_version}, batch {state.batch.batch_id}'s parent, is gone"
        )
    return env.tracking.load_model(record.ref, into=context.build_model()), record.ref


@task(name="pool-before-batch", **TASK_OPTIONS)
def pool_before_batch(env: PipelineEnvironment, stored: StoredDataset, batch: ForgetBatch) -> ImageSet:
    """The training pool the batch was planned on: the current one until the samples are deleted, then the one
    committed at the batch's parent data version (DVC keeps the deleted samples retrievable)."""
    if policy.pool_fingerprint(stored) == batch.parent_pool_sha256:
        return stored.pool
    if batch.parent_git_rev is None:
        raise DataError(f"batch {batch.batch_id} recorded no parent data version; its forget samples are lost")
    pool = image_set_from_bytes(env.versioning.read_at(f"data/{stored.name}/pool.npz", batch.parent_git_rev))
    if ids_sha256(pool.ids.tolist()) != batch.parent_pool_sha256:
        raise DataError(f"the pool at {batch.parent_git_rev[:12]} is not the one batch {batch.batch_id} was planned on")
    get_run_logger().info(
        "read the pre-batch pool of %s back from data version %s", batch.batch_id, batch.parent_git_rev[:12]
    )
    return pool


@task(name="batch-promotion", **TASK_OPTIONS)
def batch_promotion(config: PipelineConfig, env: PipelineEnvironment, batch_id: str) -> ModelVersionRef | None:
    """The verified version an earlier run of this batch already registered (``forget_batch_id`` and ``verdict``
    tags), so that a resumed batch does not promote twice."""
    name = env.model_name(config)
    if not env.tracking.is_registered(name):
        return None
    found = [
        ref
        for ref in env.tracking.find_versions(name, {"forget_batch_id": batch_id})
        if env.tracking.version_tags(name, ref.version).get("verdict")
    ]
    return found[-1] if found else None


@task(name="adopt-promotion", **TASK_OPTIONS)
def adopt_promotion(config: PipelineConfig, env: PipelineEnvironment, ref: ModelVersionRef) -> str:
    """Point the alias at the version an interrupted run of this batch registered (when it is not already);
    returns that version's source (unlearned or retrain)."""
    name = env.model_name(config)
    current = env.tracking.get_alias(name, config.pipeline.alias)
    if current is None or current.version != ref.version:
        env.tracking.set_alias(name, config.pipeline.alias, ref.version)
    source = env.tracking.version_tags(name, ref.version).get("source", "")
    get_run_logger().info(
        "batch already promoted as %s version %s (%s); not promoting again", name, ref.version, source
    )
    return source


@task(name="apply-batch", **TASK_OPTIONS)
def apply_batch(env: PipelineEnvironment, stored: StoredDataset, batch: ForgetBatch) -> StoredDataset:
    return env.store.apply_batch(stored, batch)


@task(name="unlearn", tags=[GPU_TAG], **TASK_OPTIONS)
def unlearn(
    context: RunContext,
    env: PipelineEnvironment,
    original: Backbone,
    batch: ForgetBatch,
    batch_data: steps.BatchData,
    val: ImageSet | None = None,
) -> UnlearningResult:
    """``val``: the validation split; the method sees only its monitor share (MixUnlearn's retained-accuracy guard
    and forgetting monitor), which certification never reads."""
    method = context.serving_method
    monitor = context.heldout_split(val).monitor if val is not None and len(val) else None
    with env.tracking.child_run("unlearn", {"stage": "unlearn", "forget_batch_id": batch.batch_id}):
        env.tracking.log_params(
            {"method": method, "forget_kind": context.forget_kind, **context.method_settings(method)}
        )
        env.tracking.log_input(batch.dataset, batch.sha256[:32], f"data/batches/{batch.batch_id}.json", "forget")
        task = context.unlearning_task(
            original,
            retain=context.tensors(batch_data.retain),
            forget=context.tensors(batch_data.forget),
            val=context.tensors(monitor) if monitor is not None else None,
            copy_original=True,  # the champion stays the control and the rollback target
        )
        result = context.unlearn(method, task, epoch_metrics(env))
        env.tracking.log_metrics({"rte_seconds": result.seconds})
    return result


@task(name="retrain-reference", tags=[GPU_TAG], **TASK_OPTIONS)
def retrain_reference(
    context: RunContext, env: PipelineEnvironment, stored_after: StoredDataset, snapshot: DataSnapshot
) -> tuple[Backbone, ModelVersionRef, float, bool]:
    """The retrain-from-scratch reference on the retained data, reused when ``policy.reference_key`` matches."""
    name = env.reference_name(context.config)
    key = policy.reference_key(policy.pool_fingerprint(stored_after), context.recipe_tags())
    found = env.tracking.find_versions(name, key) if env.tracking.is_registered(name) else []
    if found:
        ref = found[-1]
        model = env.tracking.load_model(ref, into=context.build_model())
        seconds = float(env.tracking.version_tags(name, ref.version).get("train_seconds", "nan"))
        get_run_logger().info("reusing retrain reference %s version %s", name, ref.version)
        return model, ref, seconds, False
    with env.tracking.child_run("retrain-reference", {"stage": "retrain", "data_md5": snapshot.md5, **key}):
        env.tracking.log_input(stored_after.name, snapshot.md5, "data/", "retain")
        model, seconds = context.train(context.tensors(stored_after.pool), epoch_metrics(env))
        env.tracking.log_metrics({"train_seconds": seconds})
        ref = env.tracking.log_model(
            model.cpu(),
            input_example(stored_after),
            name,
            {"source": "retrain", "train_seconds": f"{seconds:.3f}", "data_md5": snapshot.md5, **key},
        )
    return model, ref, seconds, True


@task(name="certify", **TASK_OPTIONS)
def certify(
    context: RunContext,
    env: PipelineEnvironment,
    unlearned: torch.nn.Module,
    original: torch.nn.Module,
    batch_data: steps.BatchData,
    stored_after: StoredDataset,
) -> Certification:
    """Certify the unlearned model against the untouched champion on the forget batch, the validation split and a
    seeded sample of the retained pool; the checks are logged as ``cert_*`` metrics of a ``certify`` child run."""
    with env.tracking.child_run("certify", {"stage": "verify", "model": "unlearned"}):
        certification = certification_stage.certify_batch(
            context, unlearned, original, batch_data.forget, stored_after.val, stored_after.pool
        )
        env.tracking.log_metrics(certification_stage.certification_metrics(certification))
        env.tracking.set_tags({"certification": certification.verdict_line()[:5000]})
    get_run_logger().info("certification: %s", certification.verdict_line())
    return certification


@task(name="evaluate", **TASK_OPTIONS)
def evaluate(
    context: RunContext,
    env: PipelineEnvironment,
    label: str,
    model: torch.nn.Module,
    batch_data: steps.BatchData,
    stored_after: StoredDataset,
) -> dict[str, float | None]:
    with env.tracking.child_run(f"evaluate-{label}", {"stage": "verify", "model": label}):
        metrics = context.evaluate(
            model,
            context.tensors(batch_data.retain),
            context.tensors(batch_data.forget),
            context.tensors(stored_after.test),
        )
        env.tracking.log_metrics({k: v for k, v in metrics.items() if v is not None})
    return metrics


@task(name="promote", **TASK_OPTIONS)
def promote(
    config: PipelineConfig,
    env: PipelineEnvironment,
    decision: policy.Promotion,
    verdict_detail: str,
    model: torch.nn.Module,
    stored_after: StoredDataset,
    tags: Mapping[str, str],
) -> tuple[str, str | None]:
    """Register the model ``decision`` chose and move the alias to it; returns (new version, previous version).

    The previous alias target is stored in the transaction so the rollback hook can put it back if anything later
    in the transaction fails.
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
    with env.tracking.child_run("promote", {"stage": "promote", "verdict": decision.verdict}):
        ref = env.tracking.log_model(
            model.cpu(),
            input_example(stored_after),
            name,
            {
                **tags,
                "source": decision.source,
                "verdict": decision.verdict,
                "verdict_detail": verdict_detail[:5000],
            },
        )
        env.tracking.set_alias(name, config.pipeline.alias, ref.version)
    return ref.version, previous.version if previous else None


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
    tags = env.tracking.version_tags(name, version)
    if tags.get("source") != expected_source:
        raise RuntimeError(f"{name} version {version} is not the {expected_source} model")
    if not tags.get("verdict"):  # the alias never serves a model that carries no verification record
        raise RuntimeError(f"{name} version {version} has no verdict tag; it was never verified")


@task(name="announce-audit-due", **TASK_OPTIONS)
def announce_audit_due(dataset: str, version: str) -> bool:
    """Emit the audit-due event that the served ``retrain-audit`` deployment is triggered by; returns whether it was
    emitted. Outside a deployment (a plain ``mixunlearn run``) nothing listens, so nothing is emitted: the run says
    the audit is due instead."""
    if deployment.id is None:
        return False
    emit_event(
        event=AUDIT_DUE_EVENT,
        resource={"prefect.resource.id": f"mixunlearn.dataset.{dataset}", "mixunlearn.model-version": version},
        payload={"version": version},
    )
    return True


@task(name="report", **TASK_OPTIONS)
def report(config: PipelineConfig, env: PipelineEnvironment, outcome: DeletionOutcome) -> str:
    """Write the deletion report, linking the Data Docs pages of the batch's validations (the data contract of each
    split, the request contract of each request), and log it with those validations to MLflow."""
    out_dir = env.root / config.pipeline.reports_dir / outcome.batch.batch_id
    outputs = steps.gx_outputs(config, env.root)
    batch = outcome.batch
    wanted = [("data", f"{batch.dataset}-{split}") for split in ("pool", "val", "test")]
    validations = latest_validations(outputs, [*wanted, *(("requests", r) for r in batch.request_ids)])
    outcome = replace(
        outcome,
        validations=[
            {
                "contract": v.contract,
                "run_name": v.run_name,
                "run_time": v.run_time,
                "success": v.success,
                "docs_page": v.docs_page,
                "result_file": v.result_file,
            }
            for v in validations
        ],
        data_docs=docs_index(outputs) if docs_index(outputs).is_file() else None,
    )
    paths = write_deletion_report(outcome, out_dir, env.model_name(config), config.pipeline.alias)
    for path in paths.values():
        env.tracking.log_artifact(path, "report")
    for v in validations:
        log_validation(env, v.suite, v.run_name, v.result_file, v.docs_page)
    markdown = paths["md"].read_text()
    create_markdown_artifact(markdown, key=report_key(outcome.batch.dataset), description=outcome.batch.batch_id)
    return str(paths["md"])


def report_key(dataset: str) -> str:
    """The Prefect artifact key of a dataset's deletion report: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"deletion-report-{dataset}".lower())


def input_example(stored: StoredDataset) -> np.ndarray:
    """A two-image input example for torch.export, from the test split: a training sample in a registered model's
    metadata could be one a later request erases."""
    return stored.bundle().to_tensor(stored.test.images[:2]).numpy()
