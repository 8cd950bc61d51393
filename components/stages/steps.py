"""The work of each pipeline stage, free of any orchestrator.

The Prefect flow (``pipelines/flows.py``) and the DVC stages (``mixunlearn stage <name>``, ``components/stages/
repro.py``) both call these functions and a ``RunContext``, so ``dvc repro`` and a flow run compute the same things
from the same ``params.yaml``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from components.adapters.expectations import ValidationReport, validate_image_set
from components.config import PipelineConfig
from components.data.datasets import load_dataset
from components.data.types import DataError, ImageSet
from components.deletion import policy, purge
from components.deletion.store import DataStore, ForgetBatch, StoredDataset, write_json
from components.stages.context import RunContext
from components.verification.gates import Verdict, evaluate_gates

if TYPE_CHECKING:
    from components.adapters.versioning import DataVersioning


@dataclass(frozen=True)
class BatchData:
    """The samples a batch splits the pre-batch pool into."""

    retain: ImageSet
    forget: ImageSet


def prepare_data(
    config: PipelineConfig, store: DataStore, versioning: DataVersioning | None = None
) -> tuple[StoredDataset, bool]:
    """The current data version (returns whether it was materialised from the source dataset now).

    With ``versioning``, a dataset missing from ``data/`` is first restored from its committed DVC version
    (``restore_data``); the source dataset is read only when no committed version holds the dataset.
    """
    name = config.base.dataset
    created = False
    if versioning is not None:
        restore_data(config, store, versioning)
    if not store.is_materialised(name):
        bundle = load_dataset(name, config.base.data_dir)
        created = store.materialise(bundle, config.data.val_fraction, config.base.seed)
    return store.load(name), created


def restore_data(config: PipelineConfig, store: DataStore, versioning: DataVersioning) -> str | None:
    """Bring back ``data/`` from DVC when a committed ``data.dvc`` exists and the dataset is not in ``data/``.

    Erasure must last: the source dataset still holds every forgotten sample, so once a data version is committed
    ``data/`` comes from DVC (the cache, else the remote), batch records included, and never from the source. The one
    exception is a committed version that the source reproduces byte for byte (the initial version, same split
    settings): it is rebuilt and accepted only when its DVC directory hash equals the committed one, so no forgotten
    sample can come back this way. Pending requests already under ``data/requests/pending`` are kept unless the
    restored version knows them already.

    Returns:
        How the data came back (``"dvc"`` or ``"source (verified md5)"``), or None when nothing was restored.

    Raises:
        DataError: one line, when the committed version is in neither the cache nor the remote (and the source
            does not reproduce it) or was purged; ``data/`` is then left as it was.
    """
    from components.adapters.versioning import DataVersionMissingError, VersioningError, directory_md5

    name = config.base.dataset
    committed = versioning.current_md5()
    if committed is None or store.is_materialised(name):
        return None
    pending = {path.name: path.read_bytes() for path in sorted(store.pending_dir.glob("*.json"))}
    try:
        versioning.checkout_committed()
        how = "dvc"
    except DataVersionMissingError as error:
        scratch = Path(tempfile.mkdtemp(prefix="mixunlearn-rebuild-"))
        try:
            rebuilt = _rebuild_from_source(config, scratch)
            if directory_md5(rebuilt) != committed:
                raise DataError(str(error)) from None
            for path in sorted(rebuilt.rglob("*")):
                if path.is_file():
                    target = store.root / path.relative_to(rebuilt)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
            how = "source (verified md5)"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except VersioningError as error:
        raise DataError(str(error)) from None
    for file_name, payload in pending.items():
        if store.known_request(Path(file_name).stem) is None:
            store.pending_dir.mkdir(parents=True, exist_ok=True)
            (store.pending_dir / file_name).write_bytes(payload)
    return how


def _rebuild_from_source(config: PipelineConfig, folder: Path) -> Path:
    """The initial data version of ``base.dataset`` from the source dataset, written under ``folder/data``."""
    rebuilt = DataStore(folder / "data")
    rebuilt.materialise(
        load_dataset(config.base.dataset, config.base.data_dir), config.data.val_fraction, config.base.seed
    )
    return rebuilt.root


def run_context(config: PipelineConfig, stored: StoredDataset) -> RunContext:
    """The run's context on the stored data (before a batch is known)."""
    return RunContext.create(config, stored.bundle())


def batch_context(context: RunContext, batch: ForgetBatch, data: BatchData) -> RunContext:
    """``context`` for this batch: its forget kind, and the tuned scenario it is an instance of (if any)."""
    return context.for_batch(
        batch.forgotten_classes, policy.tuned_scenario(batch.forgotten_classes, data.forget.labels)
    )


def gx_outputs(config: PipelineConfig, root: Path) -> Path:
    """Where the GX checkpoints keep validation results and Data Docs: ``<root>/<pipeline.artifacts_dir>/gx``."""
    return root / config.pipeline.artifacts_dir / "gx"


def validate_data(stored: StoredDataset, outputs: Path | None = None) -> list[ValidationReport]:
    """The data contract (GX checkpoint ``data_contract``) on every split: unique IDs, labels, pixel range, shapes.

    Each split's result is kept under ``outputs`` (run name ``<dataset>-<split>``) with its Data Docs page."""
    bundle = stored.bundle()
    return [
        validate_image_set(
            images.ids,
            images.labels,
            images.images,
            bundle.num_classes,
            bundle.image_shape,
            outputs=outputs,
            run_name=f"{stored.name}-{split}",
        )
        for split, images in (("pool", stored.pool), ("val", stored.val), ("test", stored.test))
    ]


def split_for_batch(pool: ImageSet, batch: ForgetBatch) -> BatchData:
    """(retain, forget) of the pre-batch ``pool``; the forget samples are the ones the batch names, by ID."""
    forget_mask = np.isin(pool.ids, np.asarray(batch.forget_ids))
    if int(forget_mask.sum()) != len(batch.forget_ids):
        raise DataError(f"batch {batch.batch_id} names IDs that are not in this data version")
    return BatchData(
        retain=pool.subset(np.flatnonzero(~forget_mask)),
        forget=pool.subset(np.flatnonzero(forget_mask)),
    )


def forgotten_since(earlier_pool: ImageSet, current_pool: ImageSet) -> BatchData:
    """(retain, forget) for the Retrain audit: the current pool, and every sample of ``earlier_pool`` (a data version
    a from-scratch model was trained on) that is no longer in it."""
    forget_mask = ~np.isin(earlier_pool.ids, current_pool.ids)
    return BatchData(retain=current_pool, forget=earlier_pool.subset(np.flatnonzero(forget_mask)))


def fully_forgotten_classes(data: BatchData) -> tuple[int, ...]:
    """Classes with forgotten samples and none left in the retained data: the audit's class-level semantics."""
    forgotten = set(np.unique(data.forget.labels).tolist())
    return tuple(sorted(forgotten - set(np.unique(data.retain.labels).tolist())))


def verify(config: PipelineConfig, unlearned: dict[str, float | None], reference: dict[str, float | None]) -> Verdict:
    return evaluate_gates(unlearned, reference, config.verify)


def load_state(path: Path, model: torch.nn.Module) -> torch.nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def purge_data(
    config: PipelineConfig,
    store: DataStore,
    versioning: DataVersioning,
    retention_days: float | None = None,
    now: datetime | None = None,
) -> purge.PurgeOutcome:
    """``mixunlearn purge``: delete forgotten samples of ``base.dataset`` from older data versions once the
    retention (``retention_days``, default ``pipeline.purge_after_days``) has passed, then record and version it
    (``data/purges/<purge_id>.json``, committed with ``data.dvc``)."""
    dataset = config.base.dataset
    restore_data(config, store, versioning)
    retention = config.pipeline.purge_after_days if retention_days is None else retention_days

    def record(outcome: purge.PurgeRecord) -> None:
        write_json(store.root / purge.PURGES_DIR / f"{outcome.purge_id}.json", outcome.model_dump(mode="json"))
        batches = sorted({b for version in outcome.versions for b in version.batch_ids})
        versioning.snapshot(
            f"data: {outcome.purge_id} deleted forgotten samples of {len(outcome.versions)} older version(s) "
            f"(batches {', '.join(batches)})"
        )

    outcome = purge.purge(versioning, store.batches(dataset), dataset, retention, record, now)
    if outcome.record is None:
        # a purge whose commit failed (objects deleted, record written): commit its record now
        committed = versioning.listing(versioning.current_md5() or "") or {}
        records = {f"{purge.PURGES_DIR}/{path.name}" for path in (store.root / purge.PURGES_DIR).glob("*.json")}
        if records - set(committed):
            versioning.snapshot(f"data: purge records {', '.join(sorted(records - set(committed)))}")
    return outcome
