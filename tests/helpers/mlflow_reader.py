"""Read what the pipeline wrote to MLflow back out of the store, for assertions.

The pipeline only writes through ``components.adapters.tracking.TrackingStore``; reading runs back is something only
tests do, so it lives here and talks to ``mlflow.tracking.MlflowClient`` directly. Each function takes the store
(``TrackingStore``) or its tracking URI.
"""

from __future__ import annotations

from dataclasses import dataclass

# `import mlflow.tracking` binds `mlflow` without ruff sorting it as first-party (the repository has an mlflow/ folder)
import mlflow.tracking
from mlflow.tracking import MlflowClient

from components.adapters.tracking import TrackingStore

PARENT_RUN_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class RunRecord:
    """What a run holds, read back from the store.

    Attributes:
        run_id: The run's ID.
        name: The run name.
        status: ``RUNNING``, ``FINISHED``, ``FAILED`` or ``KILLED``.
        parent_run_id: The parent run's ID for a child run, else ``None``.
        params: Logged parameters.
        metrics: Latest value of each logged metric.
        tags: User tags (MLflow's ``mlflow.*`` system tags left out).
        dataset_digests: ``{dataset name: digest}`` of the logged inputs.
    """

    run_id: str
    name: str
    status: str
    parent_run_id: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    dataset_digests: dict[str, str]


def client(store: TrackingStore | str) -> MlflowClient:
    """Return a client for the store's tracking URI (also its registry URI, as ``TrackingStore`` uses it)."""
    uri = store.tracking_uri if isinstance(store, TrackingStore) else store
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def get_run(store: TrackingStore | str, run_id: str) -> RunRecord:
    """Read a run's parameters, metrics, tags and inputs back from the store."""
    run = client(store).get_run(run_id)
    tags = dict(run.data.tags)
    inputs = run.inputs.dataset_inputs if run.inputs is not None else []
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name,
        status=run.info.status,
        parent_run_id=tags.get(PARENT_RUN_TAG),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags={k: v for k, v in tags.items() if not k.startswith("mlflow.")},
        dataset_digests={item.dataset.name: item.dataset.digest for item in inputs},
    )


def child_runs(store: TrackingStore | str, parent_run_id: str) -> list[RunRecord]:
    """Return the child runs of a parent run (searched in the parent's experiment), oldest first."""
    mlflow_client = client(store)
    experiment_id = mlflow_client.get_run(parent_run_id).info.experiment_id
    runs = mlflow_client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return [get_run(store, run.info.run_id) for run in runs]


def metric_history(store: TrackingStore | str, run_id: str, key: str) -> list[tuple[int, float]]:
    """Return ``(step, value)`` pairs of one metric, in step order."""
    return sorted((int(m.step), float(m.value)) for m in client(store).get_metric_history(run_id, key))


def artifact_paths(store: TrackingStore | str, run_id: str, path: str | None = None) -> list[str]:
    """Return the paths of all artifact files of a run (recursively), sorted."""
    found: list[str] = []
    for info in client(store).list_artifacts(run_id, path):
        found.extend(artifact_paths(store, run_id, info.path) if info.is_dir else [info.path])
    return sorted(found)


def active_run_id() -> str | None:
    """ID of the run active in this thread (MLflow's fluent API), if any."""
    run = mlflow.active_run()
    return run.info.run_id if run is not None else None
