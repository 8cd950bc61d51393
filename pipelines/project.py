"""The flows ``prefect.yaml`` deploys on the work pools: they read the project's ``params.yaml`` when they run.

A deployment's parameters are then three plain values (project root, parameter file, ``--set``-style overrides)
instead of a dumped ``PipelineConfig``, so a changed ``params.yaml`` in the worker's checkout takes effect without
redeploying. Each one runs the flow it wraps as a subflow.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from components.config import PipelineConfig, load_config
from pipelines.audit import retrain_audit
from pipelines.flows import deletion_batch


def project_config(root: str, params: str, overrides: list[str] | None) -> PipelineConfig:
    """``params`` (relative to ``root`` unless absolute) with ``overrides`` applied, validated."""
    path = Path(params) if Path(params).is_absolute() else Path(root) / params
    return load_config(path, tuple(overrides or ()))


@flow(name="deletion-batch-project", log_prints=False)
def deletion_batch_from_params(root: str = ".", params: str = "params.yaml", overrides: list[str] | None = None) -> str:
    """The deletion batch of the project at ``root``; returns the run's message (its first line is the verdict)."""
    return deletion_batch(project_config(root, params, overrides), root).message


@flow(name="retrain-audit-project", log_prints=False)
def retrain_audit_from_params(root: str = ".", params: str = "params.yaml", overrides: list[str] | None = None) -> str:
    """The Retrain audit of the project at ``root``; returns its one-line message."""
    return retrain_audit(project_config(root, params, overrides), root).message
