"""The pipeline's data directory: the current data version, forget requests and forget batches.

Layout under ``data/`` (the directory ``data.dvc`` tracks)::

    <dataset>/pool.npz, val.npz, test.npz   current samples (ids, images, labels); forgotten ones are gone
    <dataset>/meta.json                     classes, normalisation, default model, split seed
    requests/pending/<request_id>.json       deletion requests waiting for the next batch
    requests/processed/<request_id>.json     requests honoured by a batch
    requests/rejected/<request_id>.json      requests refused at batch time, with the reasons
    batches/<batch_id>.json                  what each batch removed: the IDs are the record

Every write goes to a temporary file first and is renamed into place, so an interrupted run never leaves a
half-written file behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from components.data.splits import make_split
from components.data.types import DataError, DatasetBundle, ImageSet, ids_sha256
from components.deletion.admission import AdmissionLimits, admit, read_request_text
from components.files import write_atomically

SPLITS = ("pool", "val", "test")


def write_json(path: Path, document: Any) -> None:
    write_atomically(path, (json.dumps(document, indent=2, sort_keys=True, default=str) + "\n").encode())


def image_set_bytes(images: ImageSet) -> bytes:
    """An .npz archive (ids, images, labels) with fixed zip timestamps, so equal data gives equal bytes.

    ``np.savez`` stamps entries with the current time, which would give every materialisation a new DVC md5.
    """
    buffer = io.BytesIO()
    arrays = {"ids": images.ids.astype(str), "images": images.images, "labels": images.labels.astype(np.int64)}
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(entry, payload.getvalue())
    return buffer.getvalue()


def read_image_set(path: Path) -> ImageSet:
    if not path.exists():
        raise DataError(f"{path} is missing; run the pipeline once to materialise the dataset")
    return image_set_from_bytes(path.read_bytes())


def image_set_from_bytes(payload: bytes) -> ImageSet:
    """The inverse of ``image_set_bytes`` (also for an old version read back from DVC)."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return ImageSet(ids=archive["ids"], images=archive["images"], labels=archive["labels"].astype(np.int64))


class ForgetRequest(BaseModel):
    """A data owner's deletion request: which samples, who asked, why and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    dataset: str
    requester: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    requested_at: datetime
    ids: tuple[str, ...] = Field(min_length=1)

    @field_validator("ids")
    @classmethod
    def _no_duplicates(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        duplicates = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        if duplicates:
            raise ValueError(f"duplicate IDs in the request: {', '.join(duplicates[:3])}")
        return ids

    @classmethod
    def load(cls, path: Path, max_bytes: int = AdmissionLimits().max_file_bytes) -> ForgetRequest:
        """Read and validate a request file; every problem (missing, a directory, unreadable, over ``max_bytes``,
        not UTF-8, not JSON, a schema error) is one ``DataError`` line naming the file."""
        return cls.parse(read_request_text(path, max_bytes), path)

    @classmethod
    def parse(cls, text: str, source: Path | str) -> ForgetRequest:
        """Validate a request document; a schema error is one ``DataError`` line naming ``source``."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "document"
            raise DataError(f"forget request {source}: {where}: {first['msg']}") from None


def _utc(moment: datetime) -> datetime:
    """An aware time; a naive one (only in a file placed in ``requests/pending`` by hand) is read as UTC."""
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


class ForgetBatch(BaseModel):
    """One deletion batch: the requests it honours and the exact sample IDs it removed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: str
    dataset: str
    created_at: datetime
    request_ids: tuple[str, ...]
    requesters: tuple[str, ...]
    forget_ids: tuple[str, ...]  # pool samples whose influence must be unlearned
    removed_elsewhere: tuple[str, ...] = ()  # val/test samples deleted too (never trained on)
    forgotten_classes: tuple[int, ...] = ()
    sha256: str
    parent_pool_sha256: str
    parent_data_md5: str | None = None  # DVC md5 of data/ before the batch
    parent_git_rev: str | None = None  # git commit holding that data.dvc: the forget samples stay retrievable


@dataclass(frozen=True)
class StoredDataset:
    """The current version of one dataset, as the pipeline trains and evaluates on it."""

    name: str
    pool: ImageSet
    val: ImageSet
    test: ImageSet
    meta: dict[str, Any]

    def bundle(self) -> DatasetBundle:
        """A DatasetBundle view (train = pool) for normalisation and model building."""
        return DatasetBundle(
            name=self.name,
            train=self.pool,
            test=self.test,
            num_classes=int(self.meta["num_classes"]),
            mean=tuple(self.meta["mean"]),
            std=tuple(self.meta["std"]),
            default_model=str(self.meta["default_model"]),
        )


class DataStore:
    """Reads and writes the layout described in the module docstring under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / dataset

    @property
    def pending_dir(self) -> Path:
        return self.root / "requests" / "pending"

    @property
    def processed_dir(self) -> Path:
        return self.root / "requests" / "processed"

    @property
    def batches_dir(self) -> Path:
        return self.root / "batches"

    def is_materialised(self, dataset: str) -> bool:
        directory = self.dataset_dir(dataset)
        return all((directory / f"{split}.npz").exists() for split in SPLITS) and (directory / "meta.json").exists()

    def materialise(self, bundle: DatasetBundle, val_fraction: float, seed: int) -> bool:
        """Write the initial version (pool/val/test) once; return False when it already exists."""
        if self.is_materialised(bundle.name):
            return False
        split = make_split(bundle, val_fraction, seed)
        directory = self.dataset_dir(bundle.name)
        for name, images in (("pool", split.pool), ("val", split.val), ("test", split.test)):
            write_atomically(directory / f"{name}.npz", image_set_bytes(images))
        meta = {
            "dataset": bundle.name,
            "num_classes": bundle.num_classes,
            "mean": list(bundle.mean),
            "std": list(bundle.std),
            "default_model": bundle.default_model,
            "split_seed": seed,
            "val_fraction": val_fraction,
        }
        write_json(directory / "meta.json", meta)
        return True

    def load(self, dataset: str) -> StoredDataset:
        directory = self.dataset_dir(dataset)
        meta_path = directory / "meta.json"
        if not meta_path.exists():
            raise DataError(f"{meta_path} is missing; run the pipeline once to materialise {dataset}")
        return StoredDataset(
            name=dataset,
            pool=read_image_set(directory / "pool.npz"),
            val=read_image_set(directory / "val.npz"),
            test=read_image_set(directory / "test.npz"),
            meta=json.loads(meta_path.read_text()),
        )

    # -- requests -------------------------------------------------------------------------------------------
    def current_ids(self, dataset: str) -> dict[str, list[str]] | None:
        """The sample IDs of each split of the current version (only the ``ids`` arrays are read), or ``None`` when
        ``dataset`` is not materialised."""
        if not self.is_materialised(dataset):
            return None
        ids: dict[str, list[str]] = {}
        for split in SPLITS:
            with np.load(self.dataset_dir(dataset) / f"{split}.npz", allow_pickle=False) as archive:
                ids[split] = archive["ids"].astype(str).tolist()
        return ids

    def known_request(self, request_id: str) -> tuple[str, ForgetRequest | None] | None:
        """Where a request ID is already recorded (``pending``, ``processed`` or ``rejected``) and the request
        stored there (``None`` when that file no longer parses), or ``None`` when the ID is new."""
        for state, folder in (("pending", self.pending_dir), ("processed", self.processed_dir)):
            path = folder / f"{request_id}.json"
            if path.exists():
                try:
                    return state, ForgetRequest.load(path)
                except DataError:
                    return state, None
        path = self.rejected_dir / f"{request_id}.json"
        if path.exists():
            try:
                return "rejected", ForgetRequest.model_validate(json.loads(path.read_text())["request"])
            except (ValueError, KeyError, TypeError):
                return "rejected", None
        return None

    def check_submission(
        self, request_file: Path, limits: AdmissionLimits | None = None, now: datetime | None = None
    ) -> tuple[ForgetRequest, bool]:
        """Everything ``submit`` checks, without writing: returns (request, True) when it would be queued and
        (request, False) when the same request is already known.

        Raises:
            DataError: one line naming the file: it cannot be read or parsed, its request ID is already known
                with different content, or it fails admission (``components.deletion.admission``).
        """
        limits = limits or AdmissionLimits()
        request = ForgetRequest.load(request_file, limits.max_file_bytes)
        return request, self.check_request(request, request_file, limits, now)

    def check_request(
        self, request: ForgetRequest, source: Path | str, limits: AdmissionLimits, now: datetime | None = None
    ) -> bool:
        """``check_submission`` for a parsed request from ``source`` (a file or, e.g., an S3 object's URI): False
        when the same request is already known, True when it would be queued; else one ``DataError`` line."""
        known = self.known_request(request.request_id)
        if known is not None:
            state, stored = known
            if stored == request:
                return False
            raise DataError(
                f"forget request {source}: request_id: {request.request_id} is already {state} with "
                "different content; submit the change under a new request_id"
            )
        admit(self, request, limits, source, now=now)
        return True

    def submit_request(
        self, request: ForgetRequest, source: Path | str, limits: AdmissionLimits, now: datetime | None = None
    ) -> bool:
        """``submit`` for a parsed request (read from ``source`` elsewhere, e.g. an S3 queue): the same checks and
        the same write; returns False when that request was already known."""
        new = self.check_request(request, source, limits, now)
        if new:
            write_json(self.pending_dir / f"{request.request_id}.json", request.model_dump(mode="json"))
        return new

    def submit(
        self, request_file: Path, limits: AdmissionLimits | None = None, now: datetime | None = None
    ) -> tuple[ForgetRequest, bool]:
        """Queue a request file after admission control; returns (request, False) when that same request was
        already queued, honoured or rejected. Nothing is written when it raises (see ``check_submission``)."""
        limits = limits or AdmissionLimits()
        request = ForgetRequest.load(request_file, limits.max_file_bytes)
        return request, self.submit_request(request, request_file, limits, now)

    @property
    def rejected_dir(self) -> Path:
        return self.root / "requests" / "rejected"

    def reject(self, request: ForgetRequest, reasons: list[str]) -> None:
        """Move a pending request to ``requests/rejected`` with the failed expectations beside it."""
        write_json(
            self.rejected_dir / f"{request.request_id}.json",
            {"request": request.model_dump(mode="json"), "reasons": reasons},
        )
        (self.pending_dir / f"{request.request_id}.json").unlink(missing_ok=True)

    def pending(self, dataset: str) -> list[ForgetRequest]:
        """Pending requests for ``dataset``, oldest first."""
        requests = [ForgetRequest.load(path) for path in sorted(self.pending_dir.glob("*.json"))]
        return sorted((r for r in requests if r.dataset == dataset), key=lambda r: (_utc(r.requested_at), r.request_id))

    def batches(self, dataset: str) -> list[ForgetBatch]:
        batches = [ForgetBatch.model_validate_json(p.read_text()) for p in sorted(self.batches_dir.glob("*.json"))]
        return sorted((b for b in batches if b.dataset == dataset), key=lambda b: b.created_at)

    def forgotten_ids(self, dataset: str) -> set[str]:
        """Every ID removed by an earlier batch (derived from the batch records, never stored twice)."""
        forgotten: set[str] = set()
        for batch in self.batches(dataset):
            forgotten.update(batch.forget_ids)
            forgotten.update(batch.removed_elsewhere)
        return forgotten

    # -- batches --------------------------------------------------------------------------------------------
    def plan_batch(
        self,
        current: StoredDataset,
        requests: list[ForgetRequest],
        now: datetime | None = None,
        parent_data_md5: str | None = None,
        parent_git_rev: str | None = None,
    ) -> ForgetBatch:
        """The batch that honours ``requests`` (validated beforehand): pool IDs to unlearn, others to delete."""
        if not requests:
            raise DataError("no pending forget requests to batch")
        requested = sorted({sample_id for request in requests for sample_id in request.ids})
        pool_ids = set(current.pool.ids.tolist())
        forget_ids = tuple(i for i in requested if i in pool_ids)
        elsewhere = tuple(i for i in requested if i not in pool_ids)
        if not forget_ids:
            raise DataError("the batch names no sample of the training pool; nothing to unlearn")
        remaining = current.pool.labels[~np.isin(current.pool.ids, forget_ids)]
        forgotten_classes = tuple(
            int(c)
            for c in np.unique(current.pool.labels[np.isin(current.pool.ids, forget_ids)])
            if c not in set(remaining.tolist())
        )
        created = now or datetime.now(UTC)
        digest = ids_sha256(forget_ids)
        return ForgetBatch(
            batch_id=f"batch-{created.strftime('%Y%m%dT%H%M%S')}-{digest[:8]}",
            dataset=current.name,
            created_at=created,
            request_ids=tuple(r.request_id for r in requests),
            requesters=tuple(sorted({r.requester for r in requests})),
            forget_ids=forget_ids,
            removed_elsewhere=elsewhere,
            forgotten_classes=forgotten_classes,
            sha256=digest,
            parent_pool_sha256=ids_sha256(current.pool.ids.tolist()),
            parent_data_md5=parent_data_md5,
            parent_git_rev=parent_git_rev,
        )

    def apply_batch(self, current: StoredDataset, batch: ForgetBatch) -> StoredDataset:
        """Delete the batch's samples from every split, record the batch, and mark its requests processed.

        New split files are fully written (as temporary files) before any is renamed into place; the batch record
        is written after the data and the requests move last, so a crash leaves either the old data with pending
        requests or the new data with its batch record.

        Applying a batch again to the data it already left (a resumed batch, ``components/deletion/ledger.py``)
        deletes nothing and completes the record and the requests.
        """
        if ids_sha256(current.pool.ids.tolist()) != batch.parent_pool_sha256:
            if not self.batch_applied(current, batch):
                raise DataError(f"batch {batch.batch_id} was planned on another data version; plan it again")
            self._record(batch)
            return current
        removed = np.asarray(batch.forget_ids + batch.removed_elsewhere)
        kept = {name: getattr(current, name) for name in SPLITS}
        kept = {name: images.subset(np.flatnonzero(~np.isin(images.ids, removed))) for name, images in kept.items()}
        directory = self.dataset_dir(current.name)
        staged: list[tuple[str, Path]] = []
        try:
            for name, images in kept.items():
                handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
                with os.fdopen(handle, "wb") as stream:
                    stream.write(image_set_bytes(images))
                staged.append((temporary, directory / f"{name}.npz"))
        except BaseException:
            for temporary, _ in staged:
                Path(temporary).unlink(missing_ok=True)
            raise
        for temporary, target in staged:
            Path(temporary).replace(target)
        self._record(batch)
        return StoredDataset(name=current.name, meta=current.meta, **kept)

    @staticmethod
    def batch_applied(current: StoredDataset, batch: ForgetBatch) -> bool:
        """Whether ``current`` is data ``batch`` already deleted from: none of its samples is left."""
        removed = np.asarray(batch.forget_ids + batch.removed_elsewhere)
        return not any(np.isin(getattr(current, name).ids, removed).any() for name in SPLITS)

    def _record(self, batch: ForgetBatch) -> None:
        """Write the batch record, then file its requests under ``requests/processed``."""
        write_json(self.batches_dir / f"{batch.batch_id}.json", batch.model_dump(mode="json"))
        for request_id in batch.request_ids:
            source = self.pending_dir / f"{request_id}.json"
            if source.exists():
                self.processed_dir.mkdir(parents=True, exist_ok=True)
                source.replace(self.processed_dir / source.name)
