"""The services one pipeline run talks to, built from the config and the environment.

Endpoints and credentials come from the environment only: ``MLFLOW_TRACKING_URI`` (default: SQLite under
``mlflow/``), ``MIXUNLEARN_DVC_REMOTE`` (default: the local directory ``.dvc-remote``; ``s3://bucket/prefix`` for
S3), ``S3_ENDPOINT_URL`` (e.g. a MinIO or moto endpoint), ``MIXUNLEARN_GPU_DEPLOYMENT`` (the Prefect deployment that
unlearns on the GPU work pool; default: unlearn in-process) and the standard ``AWS_*`` credential variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from components.adapters.tracking import (
    TrackingError,
    TrackingStore,
    default_artifact_location,
    default_tracking_uri,
    sqlite_path,
)
from components.adapters.versioning import DataVersioning
from components.config import PipelineConfig
from components.deletion.store import DataStore


class Endpoints(BaseSettings):
    """Endpoints read from the environment (never from params.yaml): unset means the local defaults.

    Credentials are not fields: boto3, DVC and MLflow read the ``AWS_*`` variables themselves, so they never pass
    through this process's configuration objects or logs.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")
    dvc_remote: str | None = Field(None, validation_alias="MIXUNLEARN_DVC_REMOTE")
    s3_endpoint_url: str | None = Field(None, validation_alias="S3_ENDPOINT_URL")
    # `<flow>/<deployment>` on the GPU work pool that unlearns a batch (pipelines/unlearn.py); unset: in-process
    gpu_deployment: str | None = Field(None, validation_alias="MIXUNLEARN_GPU_DEPLOYMENT")


@dataclass(frozen=True)
class PipelineEnvironment:
    root: Path
    store: DataStore
    tracking: TrackingStore
    versioning: DataVersioning

    def model_name(self, config: PipelineConfig) -> str:
        return config.pipeline.registered_model.format(dataset=config.base.dataset)

    def reference_name(self, config: PipelineConfig) -> str:
        return config.pipeline.reference_model.format(dataset=config.base.dataset)


def open_tracking(config: PipelineConfig, root: Path, create: bool = True) -> TrackingStore | None:
    """The MLflow store of the project at ``root`` (``MLFLOW_TRACKING_URI``, else SQLite under ``mlflow/``).

    With ``create=False`` a local store whose database file does not exist is not created: None is returned.
    """
    root = root.resolve()
    endpoints = Endpoints()
    tracking_uri = endpoints.tracking_uri or default_tracking_uri(root)
    database = sqlite_path(tracking_uri)
    if not create and database is not None and not database.exists():
        return None
    artifact_location = None if endpoints.tracking_uri else default_artifact_location(root)
    return TrackingStore(tracking_uri, config.pipeline.experiment, artifact_location)


def open_versioning(root: Path) -> DataVersioning:
    """The DVC versioning of ``<root>/data`` with the remote from the environment (``MIXUNLEARN_DVC_REMOTE``)."""
    endpoints = Endpoints()
    remote_url = endpoints.dvc_remote
    remote_name = "s3" if remote_url and remote_url.startswith("s3://") else "local"
    return DataVersioning(
        root.resolve(),
        data_dir="data",
        remote_name=remote_name,
        remote_url=remote_url,
        endpoint_url=endpoints.s3_endpoint_url if remote_name == "s3" else None,
    )


class TrackingStoreMissingError(RuntimeError):
    """The project has deletion batches but its tracking store is missing or unreadable; the message is one line."""


BATCH_COMMIT_PREFIX = "data: forget batch "
"""Subject prefix of the ``data.dvc`` commits a deletion batch makes (``pipelines/flows.py``)."""


def batch_evidence(root: Path, versioning: DataVersioning) -> list[str]:
    """What shows that deletion batches ran here: batch records under ``data/batches`` or batch commits in the git
    history of ``data.dvc`` (``data/`` may not be restored yet)."""
    records = sorted(path.stem for path in (root / "data" / "batches").glob("*.json"))
    if records:
        return records
    return [
        subject.removeprefix(BATCH_COMMIT_PREFIX).split(" ")[0]
        for _, _, subject in versioning.version_history()
        if subject.startswith(BATCH_COMMIT_PREFIX)
    ]


def require_tracking(config: PipelineConfig, root: Path, versioning: DataVersioning) -> TrackingStore:
    """The tracking store; never a silent fresh one once the data has batches.

    A fresh registry would forget the champion, its lineage and every verdict, and the next run would train and
    serve a new "original" as if no deletion had happened. So when ``batch_evidence`` finds batches and the local
    store is missing (or empty), or it cannot be opened, this fails with one line naming the store.

    Raises:
        TrackingStoreMissingError: as above.
    """
    root = root.resolve()
    evidence = check_tracking(root, versioning)
    try:
        return open_tracking(config, root)
    except TrackingError as error:
        if evidence:
            raise TrackingStoreMissingError(_missing_line(root, evidence, f"unreadable ({error})")) from error
        raise


def check_tracking(root: Path, versioning: DataVersioning) -> list[str]:
    """``require_tracking``'s check without opening MLflow (the CLI runs it before any service starts).

    Returns:
        The batch evidence (``batch_evidence``).

    Raises:
        TrackingStoreMissingError: If batches ran here and the local store is missing or empty.
    """
    root = root.resolve()
    database = sqlite_path(Endpoints().tracking_uri or default_tracking_uri(root))
    fresh = database is not None and (not database.exists() or database.stat().st_size == 0)
    evidence = batch_evidence(root, versioning)
    if fresh and evidence:
        state = "missing" if database is not None and not database.exists() else "empty"
        raise TrackingStoreMissingError(_missing_line(root, evidence, state))
    return evidence


def _missing_line(root: Path, evidence: list[str], state: str) -> str:
    uri = Endpoints().tracking_uri or default_tracking_uri(root)
    database = sqlite_path(uri)
    where = str(database.relative_to(root) if database.is_relative_to(root) else database) if database else uri
    return (
        f"the data has {len(evidence)} deletion batch(es) ({', '.join(evidence[:3])}) but the tracking store {where} "
        f"is {state}: restore it from its backup (or point MLFLOW_TRACKING_URI at the tracking server that holds the "
        "registry) before running; a fresh store would lose the champion and its lineage"
    )


def open_environment(config: PipelineConfig, root: Path) -> PipelineEnvironment:
    """Open the data store, MLflow store and DVC repository of the project at ``root``.

    Raises:
        TrackingStoreMissingError: If deletion batches ran here but the tracking store is missing or unreadable
            (``require_tracking``).
    """
    root = root.resolve()
    versioning = open_versioning(root)
    return PipelineEnvironment(
        root=root,
        store=DataStore(root / "data"),
        tracking=require_tracking(config, root, versioning),
        versioning=versioning,
    )
