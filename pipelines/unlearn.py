"""The GPU step of a deletion batch as its own flow, so that it can run on a worker of the GPU work pool.

``unlearn_batch`` takes only plain values: the config, the batch record (the sample IDs and the data version it was
planned on) and the registry version of the model to unlearn. It reads that model from the MLflow registry and the
pre-batch data by content (its DVC md5) from the cache or the DVC remote, unlearns, and registers the result as a
version of ``<model>-unlearned`` tagged with its own Prefect flow-run ID. Nothing crosses the worker boundary in
memory: the deletion flow (``unlearn_step``) starts it through ``run_deployment`` when ``MIXUNLEARN_GPU_DEPLOYMENT``
names a deployment, then loads the registered version; without it the batch unlearns in-process as before.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from components.adapters.services import Endpoints, PipelineEnvironment, open_environment
from components.adapters.tracking import ModelVersionRef
from components.config import PipelineConfig
from components.data.types import DataError, ImageSet, ids_sha256
from components.deletion.store import SPLITS, ForgetBatch, StoredDataset, image_set_from_bytes
from components.models.backbones import Backbone
from components.stages import steps
from components.stages.context import RunContext
from components.unlearning.base import UnlearningResult
from pipelines import tasks

CANDIDATE_SUFFIX = "-unlearned"
FLOW_RUN_TAG = "prefect_flow_run_id"
HISTORY_TAG = "unlearn_history"  # the loop's own report (steps, monitor, guard) for the deletion report
POLL_SECONDS = 2.0  # how often the waiting deletion flow asks the server for the GPU run's state


def candidate_name(env: PipelineEnvironment, config: PipelineConfig) -> str:
    """The registered model that holds unlearned models handed from the GPU pool to the deletion flow."""
    return env.model_name(config) + CANDIDATE_SUFFIX


@task(name="read-data-version", **tasks.TASK_OPTIONS)
def read_data_version(env: PipelineEnvironment, batch: ForgetBatch) -> StoredDataset:
    """The dataset as it was when ``batch`` was planned, read by its DVC md5 (no git history or ``data/`` needed),
    checked against the pool fingerprint the batch recorded."""
    if batch.parent_data_md5 is None:
        raise DataError(f"batch {batch.batch_id} recorded no parent data version; it cannot be unlearned elsewhere")

    def read(name: str) -> bytes:
        return env.versioning.read_version(batch.parent_data_md5 or "", f"{batch.dataset}/{name}")

    splits = {split: image_set_from_bytes(read(f"{split}.npz")) for split in SPLITS}
    stored = StoredDataset(batch.dataset, meta=json.loads(read("meta.json")), **splits)
    if ids_sha256(stored.pool.ids.tolist()) != batch.parent_pool_sha256:
        raise DataError(f"data version {batch.parent_data_md5} is not the pool batch {batch.batch_id} was planned on")
    return stored


@task(name="register-unlearned", **tasks.TASK_OPTIONS)
def register_unlearned(
    config: PipelineConfig,
    env: PipelineEnvironment,
    result: UnlearningResult,
    batch: ForgetBatch,
    parent_version: str,
    stored: StoredDataset,
) -> ModelVersionRef:
    """Register the unlearned model as the hand-over version (not served: the deletion flow certifies and
    promotes it under the serving model's name)."""
    with env.tracking.child_run("register-unlearned", {"stage": "unlearn", "forget_batch_id": batch.batch_id}):
        return env.tracking.log_model(
            result.model.cpu(),
            tasks.input_example(stored),
            candidate_name(env, config),
            {
                "source": "unlearned-candidate",
                "forget_batch_id": batch.batch_id,
                "parent_model_version": parent_version,
                "data_md5": batch.parent_data_md5,
                "rte_seconds": f"{result.seconds:.6f}",
                HISTORY_TAG: json.dumps(dict(result.history)),
                FLOW_RUN_TAG: str(flow_run.id),
            },
        )


@flow(name="unlearn-batch", log_prints=False)
def unlearn_batch(
    config: PipelineConfig,
    batch: ForgetBatch,
    parent_version: str,
    root: str = ".",
    parent_run_id: str | None = None,
) -> str:
    """Unlearn ``batch`` from version ``parent_version`` of the serving model; returns the registered version of
    ``<model>-unlearned`` that holds the result. ``parent_run_id`` nests its MLflow run under the deletion run."""
    env = open_environment(config, Path(root))
    stored = read_data_version(env, batch)
    batch_data = steps.split_for_batch(stored.pool, batch)
    context = steps.batch_context(steps.run_context(config, stored), batch, batch_data)
    name = env.model_name(config)
    record = env.tracking.version_record(name, parent_version)
    if record is None:
        raise RuntimeError(f"{name} version {parent_version}, the model batch {batch.batch_id} unlearns, is gone")
    original = env.tracking.load_model(record.ref, into=context.build_model())
    run_tags = {"dataset": config.base.dataset, "stage": "unlearn", "forget_batch_id": batch.batch_id}
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    with env.tracking.parent_run(f"unlearn-batch-{config.base.dataset}", run_tags):
        result = tasks.unlearn(context, env, original, batch, batch_data, stored.val)
        ref = register_unlearned(config, env, result, batch, parent_version, stored)
    get_run_logger().info("unlearned batch %s: %s version %s", batch.batch_id, ref.name, ref.version)
    return ref.version


# Not tagged `gpu`: it only waits for the GPU run, whose own unlearn task takes the gpu slot; holding the slot here
# as well would deadlock a limit of one.
@task(name="unlearn-on-gpu-pool", **tasks.TASK_OPTIONS)
def unlearn_on_deployment(
    deployment: str,
    context: RunContext,
    env: PipelineEnvironment,
    parent: ModelVersionRef,
    batch: ForgetBatch,
) -> UnlearningResult:
    """Run ``unlearn_batch`` through ``deployment`` (``<flow>/<deployment>``), wait for it, and load the model it
    registered (found by its flow-run ID, so a concurrent or earlier hand-over is never taken for this one)."""
    config = context.config
    run = run_deployment(
        deployment,
        parameters={
            "config": config.model_dump(mode="json"),
            "batch": batch.model_dump(mode="json"),
            "parent_version": parent.version,
            "parent_run_id": env.tracking.parent_run_id,
        },
        poll_interval=POLL_SECONDS,
    )
    state = run.state
    if state is None or not state.is_completed():
        detail = f"{state.name}: {state.message}" if state is not None else "no state"
        raise RuntimeError(f"unlearning run {run.name} on deployment {deployment} did not complete ({detail})")
    name = candidate_name(env, config)
    found = env.tracking.find_versions(name, {FLOW_RUN_TAG: str(run.id)})
    if len(found) != 1:
        raise RuntimeError(f"unlearning run {run.name} registered {len(found)} versions of {name}, expected one")
    model = env.tracking.load_model(found[0], into=context.build_model())
    tags = env.tracking.version_tags(name, found[0].version)
    seconds = float(tags.get("rte_seconds", "nan"))
    history = json.loads(tags.get(HISTORY_TAG, "{}"))
    get_run_logger().info("unlearned on %s (run %s): %s version %s", deployment, run.name, name, found[0].version)
    return UnlearningResult(model=model, seconds=seconds, history=history)


def unlearn_step(
    context: RunContext,
    env: PipelineEnvironment,
    original: Backbone,
    parent: ModelVersionRef,
    batch: ForgetBatch,
    batch_data: steps.BatchData,
    val: ImageSet | None = None,
) -> UnlearningResult:
    """The deletion flow's unlearning: on the GPU pool's deployment when ``MIXUNLEARN_GPU_DEPLOYMENT`` names one
    (the model and data cross by registry version and DVC md5; the worker reads the validation split from the same
    version), else in-process on the model in memory. ``val``: as ``tasks.unlearn``."""
    deployment = Endpoints().gpu_deployment
    if deployment is None:
        return tasks.unlearn(context, env, original, batch, batch_data, val)
    return unlearn_on_deployment(deployment, context, env, parent, batch)
