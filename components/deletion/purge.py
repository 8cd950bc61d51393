"""Purge: delete forgotten samples from the OLDER data versions, keeping the audit trail.

A forget batch removes samples from the current ``data/``, but every earlier DVC version still holds them (that is
what lets the Retrain audit read them back). Once a version has been superseded by a forgetting batch for longer
than the retention period (``pipeline.purge_after_days``), ``mixunlearn purge`` deletes its sample files (the
``.npz`` objects no kept version references) and its ``.dir`` listing from the DVC cache and the remote (a local
directory or ``s3://bucket/prefix``, ``components/adapters/dvc_remote.py``).

What stays: the batch records (IDs, hashes, parent revisions), the request files, the MLflow tags, the git history
of ``data.dvc``, and a purge record ``data/purges/<purge_id>.json`` (which versions and objects, which batches,
when), itself versioned with ``data/``. Reading a purged version then fails with one line naming the purge
(``DataVersioning.read_at``).

The planning here is pure; the DVC work (listings, deleting objects, the snapshot) is the versioning adapter's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from components.deletion.store import ForgetBatch

PURGES_DIR = "purges"
SAMPLE_SUFFIX = ".npz"  # the files that hold samples; meta.json, requests and batch records are the audit trail


class PurgedVersion(BaseModel):
    """One data version whose forgotten samples were deleted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    git_rev: str
    data_md5: str
    batch_ids: tuple[str, ...]  # the batches that forgot samples this version still held
    superseded_at: datetime  # when the first of them ran: the retention period counts from here
    objects: tuple[str, ...]  # DVC object hashes deleted (sample files and the .dir listing)
    files: tuple[str, ...]  # the relpaths (under data/) of the deleted sample files


class PurgeRecord(BaseModel):
    """What one ``mixunlearn purge`` deleted; versioned under ``data/purges/``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    purge_id: str
    dataset: str
    purged_at: datetime
    retention_days: float
    current_data_md5: str  # the version kept whole
    versions: tuple[PurgedVersion, ...]
    deleted: tuple[str, ...]  # the cache and remote paths removed


@dataclass(frozen=True)
class Candidate:
    """An older data version that still holds samples later batches forgot."""

    git_rev: str
    data_md5: str
    batch_ids: tuple[str, ...]
    superseded_at: datetime

    def due_on(self, retention_days: float) -> datetime:
        return self.superseded_at + timedelta(days=retention_days)


def candidates(
    history: Sequence[tuple[str, str]],
    batches: Sequence[ForgetBatch],
    current_md5: str,
    already_purged: set[str],
) -> list[Candidate]:
    """Older versions (``history``: ``(git_rev, md5)`` oldest first) holding samples a later batch forgot.

    A batch forgot samples of its parent version (``parent_data_md5``, else ``parent_git_rev``) and of every version
    before it; the versions after its snapshot no longer hold them. The current version and versions already purged
    are never candidates.
    """
    positions: dict[str, int] = {}
    for index, (rev, md5) in enumerate(history):
        positions[md5] = index  # the last version with this md5
        positions[rev] = index
    parent_index: list[tuple[int, ForgetBatch]] = []
    for batch in batches:
        key = batch.parent_data_md5 if batch.parent_data_md5 in positions else batch.parent_git_rev
        if key is not None and key in positions:
            parent_index.append((positions[key], batch))
    found: list[Candidate] = []
    seen: set[str] = set()
    for index, (rev, md5) in enumerate(history):
        if md5 == current_md5 or md5 in already_purged or md5 in seen:
            continue
        forgetting = sorted((b for p, b in parent_index if p >= index), key=lambda b: b.created_at)
        if forgetting:
            seen.add(md5)
            found.append(Candidate(rev, md5, tuple(b.batch_id for b in forgetting), forgetting[0].created_at))
    return found


def split_due(
    found: Sequence[Candidate], retention_days: float, now: datetime
) -> tuple[list[Candidate], list[Candidate]]:
    """(due, waiting): a version is due once ``retention_days`` have passed since it was superseded."""
    due = [c for c in found if c.due_on(retention_days) <= now]
    return due, [c for c in found if c.due_on(retention_days) > now]


def objects_to_delete(
    version_listing: dict[str, str] | None, dataset: str, kept_md5s: set[str], dir_md5: str
) -> tuple[list[str], list[str]]:
    """(object hashes, relpaths) to delete for one version: its sample files of ``dataset`` that no kept version
    references, and its ``.dir`` listing. A listing already gone leaves nothing to delete."""
    if version_listing is None:
        return [], []
    files = sorted(
        relpath
        for relpath, md5 in version_listing.items()
        if relpath.startswith(f"{dataset}/") and relpath.endswith(SAMPLE_SUFFIX) and md5 not in kept_md5s
    )
    return [*dict.fromkeys(version_listing[f] for f in files), dir_md5], files


@dataclass(frozen=True)
class Erasure:
    """Whether one batch's forgotten samples are gone from every stored data version."""

    batch_id: str
    held_by: tuple[Candidate, ...]  # older versions that still hold them (kept until the retention has passed)
    purged_by: tuple[str, ...]  # purge records (file names under data/purges/) that deleted versions holding them

    @property
    def complete(self) -> bool:
        return not self.held_by

    def to_document(self, retention_days: float) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "complete": self.complete,
            "held_by": [candidate.git_rev for candidate in self.held_by],
            "purged_by": list(self.purged_by),
            "line": self.line(retention_days),
        }

    def line(self, retention_days: float) -> str:
        """One line for the audit: complete, or where the samples still are and when they are due."""
        records = ", ".join(f"{PURGES_DIR}/{name}" for name in self.purged_by)
        if self.complete:
            where = f"purged ({records})" if records else "no older data version held them"
            return f"batch {self.batch_id}: erasure complete: no stored data version holds its samples; {where}"
        due = min(candidate.due_on(retention_days) for candidate in self.held_by)
        revs = ", ".join(candidate.git_rev[:12] for candidate in self.held_by)
        return (
            f"batch {self.batch_id}: erasure pending: {len(self.held_by)} older data version(s) still hold its "
            f"samples (git {revs}) until `mixunlearn purge` (due {due:%Y-%m-%d})"
        )


def erasures(
    history: Sequence[tuple[str, str]],
    batches: Sequence[ForgetBatch],
    current_md5: str,
    purged: Mapping[str, Mapping[str, Any]],
) -> list[Erasure]:
    """Each batch's erasure, oldest batch first: the older versions still holding its samples (``candidates``) and
    the purge records (``purged``: md5 -> entry with ``batch_ids`` and ``record``) that deleted versions holding
    them."""
    holding = candidates(history, batches, current_md5, set(purged))
    return [
        Erasure(
            batch.batch_id,
            tuple(c for c in holding if batch.batch_id in c.batch_ids),
            tuple(sorted({str(e["record"]) for e in purged.values() if batch.batch_id in (e.get("batch_ids") or ())})),
        )
        for batch in sorted(batches, key=lambda b: b.created_at)
    ]


class PurgeVersioning(Protocol):
    """What purge needs from the versioning adapter (``components.adapters.versioning.DataVersioning``)."""

    def current_md5(self) -> str | None: ...
    def version_history(self) -> list[tuple[str, str, str]]: ...
    def listing(self, md5: str) -> dict[str, str] | None: ...
    def delete_objects(self, md5s: list[str]) -> list[str]: ...
    def purged(self) -> dict[str, dict]: ...


@dataclass(frozen=True)
class PurgeOutcome:
    record: PurgeRecord | None  # None when nothing was due
    waiting: list[Candidate]
    retention_days: float


def purge(
    versioning: PurgeVersioning,
    batches: Sequence[ForgetBatch],
    dataset: str,
    retention_days: float,
    write_record: Callable[[PurgeRecord], None],
    now: datetime | None = None,
) -> PurgeOutcome:
    """Delete the due versions' objects, then write the purge record (``write_record`` stores and versions it).

    Objects referenced by the current version or by a version that is not purged now are kept. Deleting is
    idempotent: a rerun after an interruption finds the objects gone and records the versions all the same.
    """
    now = now or datetime.now(UTC)
    current = versioning.current_md5()
    if current is None:
        raise ValueError("data.dvc not found: there is no data version to purge")
    history = [(rev, md5) for rev, md5, _ in versioning.version_history()]
    found = candidates(history, batches, current, set(versioning.purged()))
    due, waiting = split_due(found, retention_days, now)
    if not due:
        return PurgeOutcome(None, waiting, retention_days)
    due_md5s = {c.data_md5 for c in due}
    kept: set[str] = set()
    for md5 in {current, *(md5 for _, md5 in history if md5 not in due_md5s)}:
        kept.update((versioning.listing(md5) or {}).values())
    planned = []
    for candidate in due:
        hashes, files = objects_to_delete(versioning.listing(candidate.data_md5), dataset, kept, candidate.data_md5)
        planned.append((candidate, hashes, files))
    deleted = versioning.delete_objects(sorted({h for _, hashes, _ in planned for h in hashes}))
    record = PurgeRecord(
        purge_id=f"purge-{now.strftime('%Y%m%dT%H%M%S')}",
        dataset=dataset,
        purged_at=now,
        retention_days=retention_days,
        current_data_md5=current,
        versions=tuple(
            PurgedVersion(
                git_rev=c.git_rev,
                data_md5=c.data_md5,
                batch_ids=c.batch_ids,
                superseded_at=c.superseded_at,
                objects=tuple(hashes),
                files=tuple(files),
            )
            for c, hashes, files in planned
        ),
        deleted=tuple(deleted),
    )
    write_record(record)
    return PurgeOutcome(record, waiting, retention_days)
