"""MLflow adapter: runs, parameters, metrics, datasets, and the model registry with aliases.

This is the only module that imports ``mlflow``. The rest of the code base logs through a ``TrackingStore``
or through the plain callback returned by ``metrics_callback``, so training loops never see MLflow.

Conventions:
    * One parent run per pipeline run (``parent_run``) and one child run per stage (``child_run``).
    * Models are registered under a name and addressed by aliases (``champion``, ``candidate``...); registry
      stages are deprecated and never used.
    * Each model version carries lineage tags (data md5, git revision, forget batch, manifest sha256...).
    * Local runs and tests use a SQLite store, ``sqlite:///<root>/mlflow/mlflow.db``, with artifacts in
      ``<root>/mlflow/artifacts``.

MLflow's fluent API keeps its tracking URI in a process-wide setting and the active run in a thread-local
stack, so every run and model operation re-activates this store's URI first. A child run started in a thread
without an active run (a Prefect task in a worker thread) attaches to this store's current parent run.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

# `import mlflow.data` also binds `mlflow`; a bare `import mlflow` would be sorted as first-party by ruff because
# of the repository's `mlflow/` folder (configuration, not a package).
import mlflow.data
import mlflow.pytorch
import numpy as np
import pandas as pd
import torch
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from components.adapters.errors import one_line
from components.adapters.retry import ATTEMPTS, os_error, retrying, sqlite_locked, storage_state
from components.hashing import canonical_sha256

MODEL_ARTIFACT_NAME = "model"
"""Name under which ``log_model`` stores the model in its run (MLflow 3 ``name=``)."""


class TrackingError(RuntimeError):
    """A tracking or registry operation that cannot be done; the message is one line for the user."""


@dataclass(frozen=True)
class ModelVersionRef:
    """One registered model version.

    Attributes:
        name: Registered model name.
        version: Version number as a string (MLflow's own type for versions).
        run_id: The run that logged the model, if any.
        uri: ``models:/<name>/<version>``, loadable with ``TrackingStore.load_model``.
    """

    name: str
    version: str
    run_id: str | None
    uri: str


@dataclass(frozen=True)
class VersionRecord:
    """One registered version with its tags and creation time (UTC; ``None`` when the registry has none)."""

    ref: ModelVersionRef
    tags: dict[str, str]
    created_at: datetime | None


def default_tracking_uri(root: Path) -> str:
    """Return the default SQLite tracking URI, ``sqlite:///<root>/mlflow/mlflow.db`` (absolute path)."""
    return f"sqlite:///{(Path(root).resolve() / 'mlflow' / 'mlflow.db').as_posix()}"


def default_artifact_location(root: Path) -> str:
    """Return the default artifact location, ``file://<root>/mlflow/artifacts`` (absolute path)."""
    return (Path(root).resolve() / "mlflow" / "artifacts").as_uri()


def config_sha256(config: Mapping[str, Any]) -> str:
    """Return the sha256 hex digest of the config's canonical JSON (sorted keys, no whitespace)."""
    try:
        return canonical_sha256(config)
    except ValueError as error:
        raise TrackingError(str(error)) from None


class TrackingStore:
    """An MLflow experiment plus the model registry at one tracking URI.

    Args:
        tracking_uri: MLflow tracking URI (also used as registry URI). For a ``sqlite:///`` URI the database
            folder is created.
        experiment: Experiment name; created on first use.
        artifact_location: Artifact root for a new experiment. For a ``sqlite:///.../mlflow.db`` URI it
            defaults to the ``artifacts`` folder next to the database (MLflow's own default would be relative
            to the working directory). Ignored if the experiment already exists.
    """

    def __init__(self, tracking_uri: str, experiment: str, artifact_location: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        db_path = sqlite_path(tracking_uri)
        if db_path is not None:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            if artifact_location is None:
                artifact_location = (db_path.parent / "artifacts").as_uri()
        self.artifact_location = artifact_location
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._parent_run_id: str | None = None
        self._lock = threading.Lock()

        def open_experiment() -> str:
            found = self._client.get_experiment_by_name(experiment)
            if found is not None:
                return str(found.experiment_id)
            return str(self._client.create_experiment(experiment, artifact_location=artifact_location))

        try:
            self.experiment_id: str = self._retried(f"open experiment {experiment!r}", open_experiment)
        except MlflowException as error:
            raise TrackingError(
                f"cannot open experiment {experiment!r} at {tracking_uri}: {one_line(error)}"
            ) from error

    # ---------------------------------------------------------------- faults

    def locked_line(self, what: str, attempts: int = ATTEMPTS) -> str:
        """The one line for a SQLite store that stayed locked (MLflow already waits 20 s per attempt)."""
        tries = f"after {attempts} attempts" if attempts > 1 else "(a write that is not retried)"
        return (
            f"MLflow tracking store {self.tracking_uri} is locked by another process {tries} ({what}): stop the other "
            "process (another run, `mlflow ui` on the same file) or set MLFLOW_TRACKING_URI to a tracking server"
        )

    def _retried(self, what: str, operation: Callable[[], Any]) -> Any:
        """``operation`` (an idempotent read or write) retried while the SQLite store is locked; a lock that outlasts
        the attempts becomes ``TrackingError(locked_line)``, other errors pass through."""
        try:
            return retrying(operation, sqlite_locked)
        except Exception as error:
            if sqlite_locked(error):
                raise TrackingError(self.locked_line(what)) from error
            raise

    def artifact_root(self) -> str:
        """Where this experiment's artifacts go (for messages)."""
        if self.artifact_location is not None:
            return self.artifact_location
        try:
            return str(self._client.get_experiment(self.experiment_id).artifact_location)
        except MlflowException:
            return "(the experiment's artifact location)"

    def _fault_line(self, what: str, error: BaseException) -> str | None:
        """One line naming the component for an infrastructure fault behind ``error``, or None."""
        if sqlite_locked(error):
            return self.locked_line(what, attempts=1)
        disk = os_error(error)
        if disk is not None:
            return (
                f"MLflow artifact store {self.artifact_root()} is {storage_state(disk)} ({what}: {one_line(disk)}): "
                "free space or make it writable (or set MLFLOW_TRACKING_URI to a server with its own store)"
            )
        return None

    # ------------------------------------------------------------------ runs

    def _activate(self) -> None:
        """Point MLflow's process-wide fluent API at this store.

        ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``; the user's own
        values are put back so that a later store opened in this process does not mistake ours for theirs.
        """
        saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    @contextmanager
    def parent_run(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        """Start the parent run of one pipeline run and yield its ID.

        The run ends ``FINISHED`` on a normal exit and ``FAILED`` if the block raises.

        Raises:
            TrackingError: If a run is already active in this thread.
        """
        active = mlflow.active_run()
        if active is not None:
            raise TrackingError(f"cannot start parent run {name!r}: run {active.info.run_id} is still active")
        self._activate()
        with mlflow.start_run(experiment_id=self.experiment_id, run_name=name, tags=_str_dict(tags)) as run:
            with self._lock:
                self._parent_run_id = run.info.run_id
            try:
                yield run.info.run_id
            finally:
                with self._lock:
                    self._parent_run_id = None

    @contextmanager
    def child_run(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        """Start a child run (one pipeline stage) and yield its ID.

        The child nests under the run active in this thread; in a thread without one (a worker thread) it
        nests under this store's current parent run.

        Raises:
            TrackingError: If there is neither an active run nor a parent run.
        """
        self._activate()
        parent_id = None if mlflow.active_run() is not None else self._parent_run_id
        if mlflow.active_run() is None and parent_id is None:
            raise TrackingError(f"cannot start child run {name!r}: no parent run is active")
        with mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=name,
            nested=True,
            parent_run_id=parent_id,
            tags=_str_dict(tags),
        ) as run:
            yield run.info.run_id

    def close_interrupted_runs(self, tags: Mapping[str, str]) -> list[str]:
        """End as ``KILLED`` every ``RUNNING`` run of the experiment whose tags include ``tags``, and every
        ``RUNNING`` child of such a run; returns their IDs.

        Only for a caller that knows none of them is alive (a deletion batch holding its model's slot: the runs
        of a process killed mid-batch stay ``RUNNING`` forever otherwise). Runs of other datasets, which share the
        experiment, are left alone. The store's own open parent run, if any, is never closed.
        """
        try:
            running = self._client.search_runs([self.experiment_id], filter_string="attributes.status = 'RUNNING'")
        except MlflowException as error:
            raise TrackingError(f"cannot list the running runs of {self.experiment!r}: {one_line(error)}") from error
        wanted = _str_dict(tags)

        def matches(run_tags: Mapping[str, str]) -> bool:
            return all(run_tags.get(key) == value for key, value in wanted.items())

        parents: dict[str, bool] = {}

        def parent_matches(parent_id: str) -> bool:
            if parent_id not in parents:
                try:
                    parents[parent_id] = matches(self._client.get_run(parent_id).data.tags)
                except MlflowException:
                    parents[parent_id] = False
            return parents[parent_id]

        closed = []
        for run in running:
            run_id, run_tags = run.info.run_id, run.data.tags
            if run_id == self._parent_run_id:
                continue
            parent_id = run_tags.get("mlflow.parentRunId")
            if parent_id == self._parent_run_id and parent_id is not None:
                continue
            if matches(run_tags) or (parent_id is not None and parent_matches(parent_id)):
                try:
                    self._retried(
                        f"closing run {run_id}",
                        lambda run_id=run_id: self._client.set_terminated(run_id, status="KILLED"),
                    )
                except MlflowException as error:
                    raise TrackingError(f"cannot close run {run_id}: {one_line(error)}") from error
                closed.append(run_id)
        return closed

    def run_status(self, run_id: str) -> str:
        """A run's status (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``...)."""
        try:
            return str(self._client.get_run(run_id).info.status)
        except MlflowException as error:
            raise TrackingError(f"cannot read run {run_id}: {one_line(error)}") from error

    def _require_run(self, what: str) -> str:
        run = mlflow.active_run()
        if run is None:
            raise TrackingError(f"cannot {what}: no run is active (use parent_run or child_run)")
        return run.info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log flat parameters to the active run (values are converted with ``str``)."""
        self._require_run("log params")
        try:
            mlflow.log_params({str(k): str(v) for k, v in params.items()})
        except MlflowException as error:
            raise TrackingError(f"cannot log params: {one_line(error)}") from error

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics to the active run, optionally at a step."""
        self._require_run("log metrics")
        try:
            mlflow.log_metrics({str(k): float(v) for k, v in metrics.items()}, step=step)
        except MlflowException as error:
            raise TrackingError(f"cannot log metrics: {one_line(error)}") from error

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags on the active run (values are converted with ``str``)."""
        self._require_run("set tags")
        mlflow.set_tags(_str_dict(tags))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy a local file or folder into the active run's artifacts."""
        self._require_run("log artifact")
        path = Path(path)
        if not path.exists():
            raise TrackingError(f"cannot log artifact: {path} does not exist")
        try:
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=artifact_path)
            else:
                mlflow.log_artifact(str(path), artifact_path=artifact_path)
        except Exception as error:
            line = self._fault_line(f"logging {path.name}", error)
            if line is None:
                raise
            raise TrackingError(line) from error

    def log_input(
        self,
        name: str,
        digest: str,
        source: str,
        context: str,
        frame: pd.DataFrame | None = None,
    ) -> None:
        """Record a dataset as an input of the active run (``mlflow.data``).

        Args:
            name: Dataset name, e.g. ``digits``.
            digest: Content digest, e.g. the DVC md5 of ``data/``; MLflow keeps at most 36 characters.
            source: Where the data came from, e.g. ``data/raw`` or ``s3://bucket/key``.
            context: Role in the run: ``train``, ``retain``, ``forget``, ``test``...
            frame: Optional small frame describing the data (schema and profile); a one-row summary if omitted.
        """
        self._require_run("log input")
        if frame is None:
            frame = pd.DataFrame({"name": [name], "digest": [digest], "source": [source]})
        try:
            with warnings.catch_warnings():  # a relative path "can be interpreted in multiple ways"
                warnings.simplefilter("ignore", UserWarning)
                dataset = mlflow.data.from_pandas(frame, source=source, name=name, digest=digest)
            mlflow.log_input(dataset, context=context)
        except MlflowException as error:
            raise TrackingError(f"cannot log input {name!r}: {one_line(error)}") from error

    # ------------------------------------------------------------- registry

    def log_model(
        self,
        model: torch.nn.Module,
        input_example: np.ndarray,
        registered_name: str,
        tags: Mapping[str, Any] | None = None,
        pip_requirements: Sequence[str] | None = None,
    ) -> ModelVersionRef:
        """Log ``model`` to the active run, register it as a new version of ``registered_name`` and tag it.

        The model is saved in MLflow's default ``pt2`` format (``torch.export``, no pickle), so
        ``input_example`` is required; its first dimension is exported as dynamic (any batch size).
        ``load_model`` returns an exported ``torch.nn.Module`` whose ``state_dict`` keys match the original
        model's, so the weights can be loaded into a fresh instance of the architecture for further training.

        Args:
            model: The model; put in ``eval`` mode for export and restored afterwards.
            input_example: A small float32 batch, shape ``(n, C, H, W)``.
            registered_name: Registered model name (created on first use).
            tags: Lineage tags for the version (values converted with ``str``).
            pip_requirements: Requirements recorded with the model; defaults to pinned ``torch`` and ``numpy``
                (given explicitly because MLflow's inference takes 3-22 s per call).

        Returns:
            A reference to the new version.

        Raises:
            TrackingError: If no run is active or MLflow cannot export, log or register the model.
        """
        run_id = self._require_run("log model")
        self._activate()
        requirements = list(pip_requirements) if pip_requirements is not None else _default_requirements()
        was_training = model.training
        model.eval()
        try:
            info = mlflow.pytorch.log_model(
                model,
                name=MODEL_ARTIFACT_NAME,
                input_example=np.ascontiguousarray(input_example, dtype=np.float32),
                pip_requirements=requirements,
                registered_model_name=registered_name,
            )
        except Exception as error:  # torch.export raises its own error types
            line = self._fault_line(f"logging model {registered_name!r}", error)
            raise TrackingError(line or f"cannot log model {registered_name!r}: {one_line(error)}") from error
        finally:
            model.train(was_training)
        version = str(info.registered_model_version)
        self.set_version_tags(registered_name, version, tags or {})
        return ModelVersionRef(registered_name, version, run_id, _version_uri(registered_name, version))

    def get_alias(self, name: str, alias: str) -> ModelVersionRef | None:
        """Return the version that ``alias`` points to, or ``None`` if the model or alias does not exist."""
        try:
            found = self._client.get_model_version_by_alias(name, alias)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise TrackingError(f"cannot read alias {name}@{alias}: {one_line(error)}") from error
        return _ref(found)

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point ``alias`` at ``version`` of model ``name`` (moving it if it pointed elsewhere)."""
        try:
            self._retried(
                f"setting {name}@{alias}", lambda: self._client.set_registered_model_alias(name, alias, str(version))
            )
        except MlflowException as error:
            raise TrackingError(f"cannot set alias {name}@{alias} -> {version}: {one_line(error)}") from error

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from model ``name``; does nothing if the alias is not set."""
        if self.get_alias(name, alias) is None:
            return
        try:
            self._retried(f"deleting {name}@{alias}", lambda: self._client.delete_registered_model_alias(name, alias))
        except MlflowException as error:
            raise TrackingError(f"cannot delete alias {name}@{alias}: {one_line(error)}") from error

    def load_model(self, uri_or_ref: str | ModelVersionRef, into: torch.nn.Module | None = None) -> torch.nn.Module:
        """Load a model by reference or URI (``models:/name/3``, ``models:/name@champion``, ``runs:/...``).

        Without ``into`` this returns the exported module (``torch.export``): it computes the same outputs for
        any batch size but is fixed in eval mode (its ``eval()``/``train()`` raise an error).
        With ``into`` (a fresh instance of the same architecture) the weights and buffers are copied into it
        strictly, and ``into`` is returned in eval mode, ready for inference or further training.

        Raises:
            TrackingError: If the model cannot be found or loaded, or its state does not fit ``into``.
        """
        uri = uri_or_ref.uri if isinstance(uri_or_ref, ModelVersionRef) else uri_or_ref
        self._activate()
        try:
            loaded = mlflow.pytorch.load_model(uri)
        except Exception as error:  # MlflowException or a torch load error
            raise TrackingError(f"cannot load model {uri}: {one_line(error)}") from error
        if into is None:
            return loaded
        try:
            into.load_state_dict(loaded.state_dict(), strict=True)
        except RuntimeError as error:
            raise TrackingError(f"model {uri} does not fit {type(into).__name__}: {one_line(error)}") from error
        return into.eval()

    def is_registered(self, name: str) -> bool:
        """Whether a registered model called ``name`` exists."""
        try:
            self._client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise TrackingError(f"cannot read registered model {name!r}: {error}") from error
        return True

    def find_versions(self, name: str, tags: Mapping[str, Any] | None = None) -> list[ModelVersionRef]:
        """Return the versions of ``name`` whose tags equal all of ``tags``, lowest version first."""
        clauses = [f"name = '{_quoted(name)}'"]
        for key, value in _str_dict(tags).items():
            if "`" in key:
                raise TrackingError(f"tag key {key!r} cannot contain a backtick")
            clauses.append(f"tags.`{key}` = '{_quoted(value)}'")
        try:
            found = self._client.search_model_versions(" AND ".join(clauses))
        except MlflowException as error:
            raise TrackingError(f"cannot search versions of {name!r}: {one_line(error)}") from error
        return sorted((_ref(v) for v in found), key=lambda ref: int(ref.version))

    @property
    def parent_run_id(self) -> str | None:
        """The open ``parent_run``'s ID, if one is open."""
        return self._parent_run_id

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of every metric of one run."""
        try:
            return dict(self._client.get_run(run_id).data.metrics)
        except MlflowException as error:
            raise TrackingError(f"cannot read run {run_id}: {one_line(error)}") from error

    def version_record(self, name: str, version: str | int) -> VersionRecord | None:
        """One version's tags and creation time, or ``None`` when the registry has no such version (deleted or
        never registered): the lineage audit reports a missing version instead of stopping at it."""
        try:
            found = self._client.get_model_version(name, str(version))
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise TrackingError(f"cannot read version {name}/{version}: {one_line(error)}") from error
        created = datetime.fromtimestamp(found.creation_timestamp / 1000, tz=UTC) if found.creation_timestamp else None
        return VersionRecord(_ref(found), dict(found.tags), created)

    def child_run_metrics(self, run_id: str) -> dict[str, dict[str, float]]:
        """The latest metrics of each child run of ``run_id`` (one per pipeline stage), keyed by run name."""
        try:
            parent = self._client.get_run(run_id)
            children = self._client.search_runs(
                [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{_quoted(run_id)}'"
            )
        except MlflowException as error:
            raise TrackingError(f"cannot read the stages of run {run_id}: {one_line(error)}") from error
        return {str(child.info.run_name): dict(child.data.metrics) for child in children}

    def set_version_tags(self, name: str, version: str | int, tags: Mapping[str, Any]) -> None:
        """Set (or overwrite) tags of one registered model version."""
        try:
            for key, value in _str_dict(tags).items():
                self._retried(
                    f"tagging {name}/{version}",
                    lambda key=key, value=value: self._client.set_model_version_tag(name, str(version), key, value),
                )
        except MlflowException as error:
            raise TrackingError(f"cannot tag version {name}/{version}: {one_line(error)}") from error

    def version_tags(self, name: str, version: str | int) -> dict[str, str]:
        """Return the tags of one model version."""
        try:
            return dict(self._client.get_model_version(name, str(version)).tags)
        except MlflowException as error:
            raise TrackingError(f"cannot read version {name}/{version}: {one_line(error)}") from error


def metrics_callback(store: TrackingStore, prefix_event: bool = True) -> Callable[[str, dict[str, float], int], None]:
    """Return a ``(event, metrics, step)`` callback that logs to the store's active run.

    Training loops take this plain callable, so they never import MLflow. With ``prefix_event`` each metric is
    logged as ``<event>/<name>`` (``train/loss``), which MLflow's UI groups by event.
    """

    def log(event: str, metrics: dict[str, float], step: int) -> None:
        named = {f"{event}/{key}" if prefix_event else key: value for key, value in metrics.items()}
        store.log_metrics(named, step=step)

    return log


def quiet_mlflow() -> None:
    """Silence MLflow's routine prints ('Successfully registered model', 'Created version ...'). They bypass its
    loggers (``eprint`` writes to MLflow's own stream, which some calls re-enable), so the registry's are turned
    into INFO records of its logger and the stream is disabled; warnings still reach the ``mlflow`` logger."""
    import logging

    from mlflow.tracking._model_registry import fluent
    from mlflow.utils.logging_utils import disable_logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    disable_logging()
    if hasattr(fluent, "eprint"):
        fluent.eprint = logging.getLogger(fluent.__name__).info


def _default_requirements() -> list[str]:
    """Pinned requirements of a logged model, without the local version label (``+cpu``)."""
    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]


def _version_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def _ref(version: ModelVersion) -> ModelVersionRef:
    return ModelVersionRef(
        version.name, str(version.version), version.run_id, _version_uri(version.name, version.version)
    )


def _str_dict(values: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (values or {}).items()}


def _quoted(value: str) -> str:
    if "'" in value:
        raise TrackingError(f"search value {value!r} cannot contain a single quote")
    return value


def sqlite_path(uri: str) -> Path | None:
    """Return the database path of a ``sqlite:///`` URI, else ``None``."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = unquote(uri[len(prefix) :].split("?", 1)[0])
    return Path(path) if path and path != ":memory:" else None
