"""Deployments: deletion batches on a schedule, on request events and on the trigger watcher's batch-due events
(S3 queue, data changes: ``pipelines/triggers.py``), and the Retrain audit on its own schedule.

Schedules and triggers live here, never in flow code. GPU work is serialised by a concurrency limit on the
``gpu`` tag that the unlearning task carries.
"""

from __future__ import annotations

import threading
from pathlib import Path

from prefect import serve
from prefect.client.orchestration import get_client
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger, emit_event

from components.config import PipelineConfig
from pipelines.audit import retrain_audit
from pipelines.flows import deletion_batch
from pipelines.tasks import AUDIT_DUE_EVENT
from pipelines.triggers import BATCH_DUE_EVENT, build_watcher

REQUEST_EVENT = "mixunlearn.forget-request.submitted"
GPU_TAG = "gpu"


def emit_request_event(dataset: str, request_id: str) -> None:
    """Announce a queued request; the served deployment for that dataset starts a batch."""
    emit_event(
        event=REQUEST_EVENT,
        resource={"prefect.resource.id": f"mixunlearn.dataset.{dataset}", "mixunlearn.request-id": request_id},
        payload={"request_id": request_id},
    )


def ensure_gpu_limit(limit: int = 1) -> None:
    """One GPU task at a time across every run that talks to this Prefect server."""
    with get_client(sync_client=True) as client:
        existing = {item.tag for item in client.read_concurrency_limits(limit=200, offset=0)}
        if GPU_TAG not in existing:
            client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=limit)


def build_deployments(
    config: PipelineConfig, root: Path, cron: str, audit_cron: str | None = None
) -> list[RunnerDeployment]:
    """The deletion flow on ``cron``, on request events and on the trigger watcher's batch-due events, and the
    Retrain audit on ``audit_cron`` (default ``audit.cron``) and on the audit-due event a deletion batch emits after
    ``audit.every_batches`` unaudited batches. The audit is its own deployment, so it never blocks a batch."""
    parameters = {"config": config.model_dump(), "root": str(root)}
    dataset_resource = {"prefect.resource.id": f"mixunlearn.dataset.{config.base.dataset}"}
    return [
        deletion_batch.to_deployment(
            name=f"{config.base.dataset}-scheduled",
            cron=cron,
            parameters=parameters,
            description="Recurring deletion batch over the pending forget requests",
        ),
        deletion_batch.to_deployment(
            name=f"{config.base.dataset}-on-request",
            parameters=parameters,
            triggers=[DeploymentEventTrigger(expect={REQUEST_EVENT}, match=dataset_resource)],
            description="Deletion batch started by a submitted forget request",
        ),
        retrain_audit.to_deployment(
            name=f"{config.base.dataset}-retrain-audit",
            cron=audit_cron or config.audit.cron,
            parameters=parameters,
            triggers=[DeploymentEventTrigger(expect={AUDIT_DUE_EVENT}, match=dataset_resource)],
            description="Retrain audit of the serving model, off the deletion path",
        ),
        deletion_batch.to_deployment(
            name=f"{config.base.dataset}-on-change",
            parameters=parameters,
            triggers=[DeploymentEventTrigger(expect={BATCH_DUE_EVENT}, match=dataset_resource)],
            description="Deletion batch started by the trigger watcher: S3-queued requests or a data change, "
            "coalesced (pipelines/triggers.py)",
        ),
    ]


def serve_deployments(config: PipelineConfig, root: Path, cron: str, audit_cron: str | None = None) -> None:
    """Serve ``build_deployments`` with the trigger watcher (S3 queue, data changes) beside them; blocks until
    stopped. An unusable S3 queue (missing bucket, endpoint down) stops it first, with one line."""
    watcher = build_watcher(config, root)
    ensure_gpu_limit()
    stop = threading.Event()
    watcher.start(stop)
    try:
        serve(*build_deployments(config, root, cron, audit_cron))
    finally:
        stop.set()
