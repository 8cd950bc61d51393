"""The Retrain audit flow: the serving model against a model retrained from scratch on the same data, off the
deletion batches' critical path.

It retrains on the current data version (reusing a reference already trained for this pool, recipe, seed and
training code), applies the ``verify`` gates to the serving model, records the result as ``audit_*`` tags on the
audited model version (and as metrics of a ``retrain-audit`` MLflow run), writes a report with the chain's audit
history, and, when a gate fails and ``audit.promote_on_failure`` holds, serves the retrained model in a transaction.
A data version already audited is not retrained again.

After ``mixunlearn purge`` deleted the data version the chain's last from-scratch model was trained on, the samples
forgotten since are gone and forgetting cannot be measured on them: the audit is refused with one line (status
``purged``; the CLI exits 2), and nothing is retrained, logged or tagged. A version audited before the purge keeps
its audit ("already audited"); a from-scratch serving model needs no forget set ("exact").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from prefect import flow, get_run_logger, task
from prefect.transactions import transaction

from components.adapters.services import PipelineEnvironment, open_environment
from components.adapters.tracking import config_sha256
from components.adapters.versioning import DataSnapshot
from components.config import PipelineConfig
from components.deletion import audit, policy
from components.deletion.store import StoredDataset, image_set_from_bytes
from components.reporting import write_audit_report
from components.runtime import Stopwatch
from components.stages import steps
from pipelines import tasks
from pipelines.concurrency import model_slot


@dataclass(frozen=True)
class AuditSummary:
    """What ``mixunlearn retrain-audit`` prints."""

    status: str  # "audited" | "already-audited" | "exact" | "skipped" | "purged" | "nothing-to-audit"
    model: str
    version: str | None
    message: str  # one line; starts with PASS or FAIL when the serving model was compared
    promoted_version: str | None = None
    report: str | None = None
    compute_seconds: float = 0.0


@task(name="forgotten-since-scratch", **tasks.TASK_OPTIONS)
def forgotten_since_scratch(
    env: PipelineEnvironment, stored: StoredDataset, scratch: audit.ChainLink
) -> steps.BatchData:
    """The samples removed since the chain's last from-scratch model, read back from its DVC data version."""
    git_rev = scratch.tags.get("git_rev")
    if not git_rev:
        raise RuntimeError(f"version {scratch.version} records no git_rev: its data version cannot be read back")
    pool_file = (env.store.dataset_dir(stored.name) / "pool.npz").relative_to(env.root)
    payload = env.versioning.read_at(pool_file.as_posix(), git_rev)
    return steps.forgotten_since(image_set_from_bytes(payload), stored.pool)


@task(name="record-audit", **tasks.TASK_OPTIONS)
def record_audit(env: PipelineEnvironment, name: str, record: audit.AuditRecord) -> None:
    env.tracking.set_version_tags(name, record.version, record.tags())


@task(name="still-serving", **tasks.TASK_OPTIONS)
def still_serving(env: PipelineEnvironment, config: PipelineConfig, version: str) -> bool:
    """Compare-and-set guard: a deletion batch may have promoted a newer version while the audit retrained."""
    current = env.tracking.get_alias(env.model_name(config), config.pipeline.alias)
    return current is not None and current.version == version


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@flow(name="retrain-audit", log_prints=False)
def retrain_audit(config: PipelineConfig, root: str = ".") -> AuditSummary:
    """Audit the serving model of ``config.base.dataset`` against Retrain on the current data version, holding the
    model's concurrency slot (a deletion batch for the same model waits, and so does this audit for one)."""
    with model_slot(config.pipeline.registered_model.format(dataset=config.base.dataset)):
        return _retrain_audit(config, root)


def _retrain_audit(config: PipelineConfig, root: str) -> AuditSummary:
    env = open_environment(config, Path(root))
    logger = get_run_logger()
    name, alias = env.model_name(config), config.pipeline.alias
    serving = env.tracking.get_alias(name, alias) if env.tracking.is_registered(name) else None
    if serving is None:
        return AuditSummary("nothing-to-audit", name, None, f"nothing to audit: {name}@{alias} does not exist")
    stored = env.store.load(config.base.dataset)
    pool = policy.pool_fingerprint(stored)
    links = audit.chain(serving.version, lambda version: env.tracking.version_tags(name, version))
    link = links[-1]
    if link.tags.get("pool_sha256") != pool:
        message = (
            f"skipped: {name}@{alias} (version {serving.version}) does not serve the current data version "
            "(a deletion batch is in progress or unfinished); audit it once the batch is promoted"
        )
        logger.warning(message)
        return AuditSummary("skipped", name, serving.version, message)
    if audit.already_audited(link.tags, pool):
        message = (
            f"{'PASS' if link.tags['audit_verdict'] in ('pass', 'exact') else 'FAIL'}: already audited: "
            f"{name} version {serving.version} on this data version ({link.tags['audit_verdict']}, "
            f"{link.tags.get('audit_at', '')}); nothing retrained"
        )
        return AuditSummary("already-audited", name, serving.version, message)
    if link.from_scratch:
        record = audit.exact_record(link, pool, _now())
        record_audit(env, name, record)
        return AuditSummary("exact", name, serving.version, record.detail + "; nothing to retrain")

    scratch = audit.last_from_scratch(links)
    # a purged data version cannot give the forgotten samples back: refused before any run or model is made
    purged = env.versioning.purged().get(env.versioning.md5_at(scratch.tags.get("git_rev", "")) or "")
    if purged is not None:
        message = audit.purged_line(link, scratch, purged)
        logger.warning(message)
        return AuditSummary("purged", name, serving.version, message)

    stopwatch = Stopwatch(torch.device("cpu"))  # the evaluate tasks' wall seconds
    with env.tracking.parent_run(
        f"retrain-audit-{config.base.dataset}",
        {"dataset": config.base.dataset, "audited_version": serving.version, "stage": "audit"},
    ) as run_id:
        data = forgotten_since_scratch(env, stored, scratch)
        context = steps.run_context(config, stored).for_batch(steps.fully_forgotten_classes(data))
        snapshot = DataSnapshot(
            md5=link.tags.get("data_md5", ""), git_rev=link.tags.get("git_rev", ""), dvc_file=env.versioning.dvc_file
        )
        serving_model = env.tracking.load_model(serving, into=context.build_model())
        reference, reference_ref, reference_seconds, retrained = tasks.retrain_reference(context, env, stored, snapshot)
        with stopwatch.measure():
            metrics = {
                "serving": tasks.evaluate(context, env, "serving", serving_model, data, stored),
                "retrain": tasks.evaluate(context, env, "retrain", reference, data, stored),
            }
        verdict = steps.verify(config, metrics["serving"], metrics["retrain"])
        gap = next((check.value for check in verdict.checks if check.name == "gap_laf"), None)
        record = audit.compared_record(
            link,
            pool,
            verdict,
            gap,
            audit.batches_since_scratch(links),
            _now(),
            f"{reference_ref.name}/{reference_ref.version}",
            run_id,
        )
        env.tracking.log_metrics(
            {
                **{f"serving_{k}": v for k, v in metrics["serving"].items() if v is not None},
                **{f"retrain_{k}": v for k, v in metrics["retrain"].items() if v is not None},
                **{f"gate_{c.name}": c.value for c in verdict.checks if c.value is not None},
                "audit_passed": float(verdict.passed),
                "forgotten_since_scratch": float(len(data.forget)),
            }
        )
        env.tracking.set_tags({"audit_verdict": record.outcome, "audit_detail": record.detail[:5000]})
        promoted = None
        if not verdict.passed and config.audit.promote_on_failure:
            if still_serving(env, config, serving.version):
                decision = policy.Promotion("retrain", "fail", "Retrain audit failed: " + record.detail)
                tags = {
                    "pool_sha256": pool,
                    "data_md5": snapshot.md5,
                    "git_rev": snapshot.git_rev,
                    "parent_model_version": serving.version,
                    "reference_version": record.reference or "",
                    "config_sha256": config_sha256(config.model_dump()),
                    "promoted_by": "retrain-audit",
                    "pipeline_run_id": run_id,
                    **context.recipe_tags(),
                }
                with transaction():
                    promoted, _ = tasks.promote(config, env, decision, record.detail, reference, stored, tags)
                    tasks.record_decision(env, config, promoted, "retrain")
            else:
                logger.warning("%s@%s moved during the audit: the retrained model is not promoted", name, alias)
        # the audit tags are written last: they mark the data version audited, so a crash before them reruns it
        recorded = {serving.version: record}
        if promoted:
            recorded[promoted] = audit.exact_record(audit.ChainLink(promoted, {"source": "retrain"}), pool, _now())
        links = [
            audit.ChainLink(link.version, {**link.tags, **recorded[link.version].tags()})
            if link.version in recorded
            else link
            for link in audit.chain(promoted or serving.version, lambda v: env.tracking.version_tags(name, v))
        ]
        report = write_audit_report(
            env.root / config.pipeline.reports_dir / f"audit-{config.base.dataset}-v{serving.version}",
            name,
            alias,
            record,
            verdict,
            metrics,
            audit.history(links),
            promoted,
            len(data.forget),
        )
        env.tracking.log_artifact(report, "report")
        for version_record in recorded.values():
            record_audit(env, name, version_record)
    message = record.detail + (
        f"; {name}@{alias} -> version {promoted} (retrained model)"
        if promoted
        else f"; {name}@{alias} stays on version {serving.version}"
    )
    logger.info(message)
    compute = stopwatch.seconds + (reference_seconds if retrained else 0.0)
    return AuditSummary("audited", name, serving.version, message, promoted, str(report), compute)
