"""The services one pipeline run talks to, built from the config and the environment.

Endpoints and credentials come from the environment only: ``MLFLOW_TRACKING_URI`` (default: SQLite under
``mlflow/``), ``MIXUNLEARN_DVC_REMOTE`` (default: the local directory ``.dvc-remote``; ``s3://bucket/prefix`` for
S3), ``S3_ENDPOINT_URL`` (e.g. a MinIO or moto endpoint) and the standard ``AWS_*`` credential variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from components.adapters.tracking import TrackingStore, default_artifact_location, default_tracking_uri, sqlite_path
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


def open_environment(config: PipelineConfig, root: Path) -> PipelineEnvironment:
    """Open the data store, MLflow store and DVC repository of the project at ``root``."""
    root = root.resolve()
    endpoints = Endpoints()
    remote_url = endpoints.dvc_remote
    remote_name = "s3" if remote_url and remote_url.startswith("s3://") else "local"
    return PipelineEnvironment(
        root=root,
        store=DataStore(root / "data"),
        tracking=open_tracking(config, root),
        versioning=DataVersioning(
            root,
            data_dir="data",
            remote_name=remote_name,
            remote_url=remote_url,
            endpoint_url=endpoints.s3_endpoint_url if remote_name == "s3" else None,
        ),
    )
