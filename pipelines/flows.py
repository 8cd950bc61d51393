"""The deletion-batch flow: pending forget requests become a verified, audited, served model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from prefect import flow, get_run_logger
from prefect.transactions import transaction

from components.adapters.services import open_environment
from components.adapters.tracking import config_sha256
from components.adapters.versioning import DataSnapshot
from components.config import PipelineConfig
from components.deletion import audit, policy
from components.deletion.lineage import batch_lineage
from components.reporting import DeletionOutcome, markdown_table, outcome_document
from components.runtime import Stopwatch
from components.stages import steps
from components.stages.certify import certification_metrics
from pipelines import tasks
from pipelines.concurrency import model_slot
from pipelines.unlearn import unlearn_step


@dataclass(frozen=True)
class RunSummary:
    """What the CLI prints after a run."""

    status: str  # "promoted" | "nothing-pending"
    model: str
    alias: str
    version: str
    data_md5: str
    message: str
    report: str | None = None
    verdict: str | None = None  # one line starting with PASS or FAIL
    metrics_table: str | None = None
    compute_seconds: float = 0.0  # training, unlearning and evaluation; the rest of the run is orchestration


@flow(name="deletion-batch", log_prints=False)
def deletion_batch(config: PipelineConfig, root: str = ".") -> RunSummary:
    """Validate and version the data, then unlearn the pending deletion batch, verify it (``verify.mode``: certify
    it against the untouched champion, compare it with a retrained reference, or both), and promote the result, or
    a retrained model when verification fails, under the registry alias.

    The whole batch holds the model's concurrency slot (``pipelines/concurrency.py``): a second run for the same
    model waits, then finds these requests processed."""
    with model_slot(config.pipeline.registered_model.format(dataset=config.base.dataset)):
        return _deletion_batch(config, root)


def _deletion_batch(config: PipelineConfig, root: str) -> RunSummary:
    env = open_environment(config, Path(root))
    logger = get_run_logger()
    evaluation = Stopwatch(torch.device("cpu"))  # the evaluate tasks' wall seconds
    name, alias = env.model_name(config), config.pipeline.alias
    tasks.close_interrupted_runs(env, config.base.dataset)  # the slot is held: no live run of ours owns them
    with env.tracking.parent_run(
        f"deletion-batch-{config.base.dataset}",
        {"dataset": config.base.dataset, "config_sha256": config_sha256(config.model_dump())},
    ) as parent_run_id:
        env.tracking.log_params({"dataset": config.base.dataset, "seed": config.base.seed})
        stored = tasks.prepare_data(config, env)
        context = steps.run_context(config, stored)
        tasks.validate_data(config, env, stored)
        # an interrupted batch (components/deletion/ledger.py) is finished before any new request is planned
        state = tasks.unfinished_batch(env, config.base.dataset)
        resumed = None if state is None else f"resumed batch {state.batch.batch_id} from stage {state.stage}"
        if state is None:
            snapshot = tasks.version_data(env, f"data: {stored.name} version before deletion batches")
            original, original_ref, train_seconds = tasks.original_model(context, env, stored, snapshot)
            batch = tasks.plan_batch(config, env, stored, snapshot)
            if batch is None:
                message = (
                    f"nothing pending: {name}@{alias} (version {original_ref.version}) serves data {snapshot.md5}"
                    + ("; reused the existing model and data version" if train_seconds == 0 else "")
                )
                logger.info(message)
                env.tracking.set_tags({"outcome": "nothing-pending"})
                return RunSummary(
                    "nothing-pending",
                    name,
                    alias,
                    original_ref.version,
                    snapshot.md5,
                    message,
                    compute_seconds=train_seconds,
                )
            state = tasks.start_batch(env, batch, original_ref.version)
        else:
            batch, train_seconds = state.batch, 0.0
            env.tracking.set_tags({"resumed_batch": batch.batch_id, "resumed_from_stage": state.stage})
            original, original_ref = tasks.parent_model(context, env, state)

        batch_data = steps.split_for_batch(tasks.pool_before_batch(env, stored, batch), batch)
        context = steps.batch_context(context, batch, batch_data)
        method = context.serving_method  # by the batch's forget kind (pipeline.kind_methods)
        candidate = policy.candidate_row(method)
        env.tracking.log_params({"method": method, "forget_kind": context.forget_kind})
        stored_after = tasks.apply_batch(env, stored, batch)  # on resumed data it only completes the record
        state = tasks.record_stage(env, state, "data_deleted")
        if state.reached("snapshotted") and state.data_md5 and state.git_rev:
            snapshot_after = DataSnapshot(state.data_md5, state.git_rev, env.versioning.dvc_file)
        else:
            snapshot_after = tasks.version_data(
                env, f"data: forget batch {batch.batch_id} ({len(batch.forget_ids)} samples)"
            )
            state = tasks.record_stage(
                env, state, "snapshotted", data_md5=snapshot_after.md5, git_rev=snapshot_after.git_rev
            )
        # rerun on resume: it is cheap; on the GPU work pool when MIXUNLEARN_GPU_DEPLOYMENT names a deployment
        result = unlearn_step(context, env, original, original_ref, batch, batch_data, stored.val)
        state = tasks.record_stage(env, state, "unlearned")
        mode = config.verify.mode
        certification = None
        if mode in ("certify", "both"):
            with evaluation.measure():
                certification = tasks.certify(context, env, result.model, original, batch_data, stored_after)
            env.tracking.log_metrics(certification_metrics(certification))  # on the parent run as well
            env.tracking.set_tags({"certification": certification.verdict_line()[:5000]})
        reference, reference_ref, reference_seconds, retrained = None, None, 0.0, False
        if policy.needs_reference(mode, certification):
            # reference/both: the comparison; certify: the fallback that honours the batch when certification fails
            reference, reference_ref, reference_seconds, retrained = tasks.retrain_reference(
                context, env, stored_after, snapshot_after
            )
        metrics: dict[str, dict[str, float | None]] = {}
        if mode != "certify":
            # certify mode decides without these metrics; the Retrain audit measures them off the deletion path
            with evaluation.measure():
                metrics[candidate] = tasks.evaluate(context, env, "unlearned", result.model, batch_data, stored_after)
                if reference is not None:
                    metrics["retrain"] = tasks.evaluate(context, env, "retrain", reference, batch_data, stored_after)
                metrics["original"] = tasks.evaluate(context, env, "original", original, batch_data, stored_after)
        # the gates whenever a reference exists (in certify mode a fallback's gates are shown, not decided on)
        verdict = steps.verify(config, metrics[candidate], metrics["retrain"]) if "retrain" in metrics else None
        decision = policy.decide(mode, certification, verdict if mode != "certify" else None)
        verdict_line = policy.verdict_line(mode, certification, verdict if mode != "certify" else None)
        lineage = batch_lineage(
            batch,
            data_md5=snapshot_after.md5,
            pool_sha256=policy.pool_fingerprint(stored_after),
            git_rev=snapshot_after.git_rev,
            parent_model_version=original_ref.version,
            reference_run_id=reference_ref.run_id if reference_ref else None,
            reference_version=f"{reference_ref.name}/{reference_ref.version}" if reference_ref else None,
            config_sha256=config_sha256(config.model_dump()),
            pipeline_run_id=parent_run_id,
            method=method,
            verify_mode=mode,
            certification=certification.verdict_line()[:5000] if certification else None,
            promoted_by="deletion-batch",
        )
        promoted = result.model if decision.source == "unlearned" else reference
        if promoted is None:  # policy.needs_reference trains a reference for every decision that promotes one
            raise RuntimeError(f"verify.mode {mode}: the decision promotes a retrained model but none was trained")
        state = tasks.record_stage(env, state, "verified")
        done = tasks.batch_promotion(config, env, batch.batch_id)
        if done is None:
            with transaction():
                version, previous = tasks.promote(config, env, decision, verdict_line, promoted, stored_after, lineage)
                tasks.record_decision(env, config, version, decision.source)
        else:  # an interrupted run registered it already: the registry keeps one version per batch
            source = tasks.adopt_promotion(config, env, done)
            tasks.record_decision(env, config, done.version, source)
            version, previous = done.version, original_ref.version
            if source != decision.source:
                logger.warning("this run decided %s, but the batch was promoted as %s", decision.source, source)
                decision = policy.Promotion(source, "pass" if source == "unlearned" else "fail", decision.reason)
        state = tasks.record_stage(env, state, "promoted", promoted_version=version)
        links = audit.chain(version, lambda v: env.tracking.version_tags(name, v))
        audit_due = None
        if audit.needs_audit(links, config.audit.every_batches):
            audit_due = (
                f"Retrain audit due: {config.audit.every_batches} or more unlearned batches since the last audit "
                "or model trained from scratch (`mixunlearn retrain-audit`)"
            )
            tasks.announce_audit_due(config.base.dataset, version)
        outcome = DeletionOutcome(
            batch=batch,
            verdict=verdict,
            promoted_source=decision.source,
            promoted_version=version,
            previous_version=previous,
            metrics=metrics,
            seconds={
                candidate: result.seconds,
                **({"retrain": reference_seconds} if reference is not None else {}),
                "original": 0.0,
            },
            lineage=lineage,
            certification=certification.to_document() if certification else None,
            mode=mode,
            summary_line=verdict_line,
            audit_history=audit.history(links),
            audit_due=audit_due,
            unlearning={"method": method, "seconds": result.seconds, "history": result.history},
        )
        report_path = tasks.report(config, env, outcome)
        state = tasks.record_stage(env, state, "reported")
        env.tracking.set_tags({"outcome": "promoted", "verdict": decision.verdict, "promoted_version": version})
        message = (
            f"{verdict_line}; {name}@{alias} -> version {version} ({decision.source} model, "
            f"previously {previous or 'none'})"
            + (f"\n{resumed}" if resumed else "")
            + (f"\n{audit_due}" if audit_due else "")
        )
        logger.info(message)
        return RunSummary(
            "promoted",
            name,
            alias,
            version,
            snapshot_after.md5,
            message,
            report_path,
            verdict_line,
            markdown_table(outcome_document(outcome)) if metrics else None,
            train_seconds + result.seconds + (reference_seconds if retrained else 0.0) + evaluation.seconds,
        )
