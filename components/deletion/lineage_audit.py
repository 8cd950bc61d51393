"""The lineage audit: a served version's whole chain back to the original training data, with every recorded fact
re-checked against its source, and the answer to "since which version is request R (or sample S) honoured?".

Pure functions over tag dicts and batch-record text. The few look-ups they need (a registry version, a batch
record file, ``data.dvc`` at a git revision, a pool fingerprint at a revision, a run's metrics) are passed in as
callables, so this module never imports an SDK and the tests hand-build every fact.

What is re-checked, per version of the chain:

* the parent named by ``parent_model_version`` exists in the registry;
* the batch record ``data/batches/<forget_batch_id>.json`` exists, its IDs hash to its ``sha256`` (as the store
  computes it: ``ids_sha256`` of the forget IDs) and that hash, its requests and requesters equal the tags;
* the batch was planned on the pool the parent version serves (``parent_pool_sha256`` = parent's ``pool_sha256``);
* ``data.dvc`` at ``git_rev`` (and at ``parent_git_rev``) records ``data_md5`` (and ``parent_data_md5``);
* optionally (``deep``: it reads the pool file of every data version) the pool IDs at ``git_rev`` hash to
  ``pool_sha256``. A data version that ``mixunlearn purge`` deleted cannot be re-read: that is a note (the erasure
  the purge record documents), not a problem.

``components.deletion.lineage_report`` turns the result into the text list and the JSON document the CLI prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from components.data.types import ids_sha256
from components.deletion.audit import ChainLink
from components.deletion.store import ForgetBatch


@dataclass(frozen=True)
class VersionFacts(ChainLink):
    """One registered version as the registry records it: a chain link and when it was registered."""

    created_at: datetime | None = None

    def listed(self, key: str) -> list[str]:
        """A comma-joined tag (``forget_request_ids``, ``forget_requesters``) as a list."""
        return [item for item in self.tags.get(key, "").split(",") if item]


@dataclass(frozen=True)
class Problem:
    """One recorded fact that is missing or does not match its source."""

    version: str
    check: str  # parent | batch-record | manifest | requests | parent-pool | data-version | pool
    message: str


@dataclass(frozen=True)
class Sources:
    """The look-ups the audit re-checks facts against (adapters in the CLI, plain functions in the tests).

    Attributes:
        version: A registry version's facts, or ``None`` when the registry has no such version.
        batch_record: The text of ``data/batches/<batch_id>.json``, or ``None`` when the file is missing.
        md5_at: The md5 ``data.dvc`` records at a git revision, or ``None`` when it has none there.
        run_metrics: A pipeline run's metrics (its stages' merged in), or ``None`` when the run is gone.
        pool_sha256_at: The sha256 of the pool IDs at a git revision (only with ``deep``).
        purged_at: One line naming the purge when the data version at a git revision was purged, else ``None``.
    """

    version: Callable[[str], VersionFacts | None]
    batch_record: Callable[[str], str | None]
    md5_at: Callable[[str], str | None]
    run_metrics: Callable[[str], Mapping[str, float] | None] = lambda run_id: None
    pool_sha256_at: Callable[[str], str] | None = None
    purged_at: Callable[[str], str | None] = lambda rev: None


@dataclass(frozen=True)
class ChainAudit:
    """The chain of one served version, oldest first, its problems and what was checked."""

    target: str  # what was asked: "<model>@<alias>" or "<model>/<version>"
    links: tuple[VersionFacts, ...]
    batches: Mapping[str, ForgetBatch]  # batch id -> its record, for the batches whose record could be read
    metrics: Mapping[str, Mapping[str, float]]  # version -> its pipeline run's metrics
    problems: tuple[Problem, ...]
    checks: int
    deep: bool
    notes: tuple[Problem, ...] = ()  # facts that cannot be re-checked by design (a purged data version's pool)
    erasure: tuple[Mapping[str, Any], ...] = ()  # per batch: whether any stored data version still holds its samples

    @property
    def ok(self) -> bool:
        return not self.problems


# -- the chain --------------------------------------------------------------------------------------------------


def walk(
    version: str, lookup: Callable[[str], VersionFacts | None], limit: int = 10_000
) -> tuple[list[VersionFacts], list[Problem]]:
    """The versions from the chain's start to ``version``, oldest first, stopping at a missing parent or a loop
    (each reported as a problem, never raised: the audit shows what it could still read)."""
    links: list[VersionFacts] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    current, child = version, None
    while current:
        if current in seen or len(links) >= limit:
            problems.append(
                Problem(child or version, "parent", f"the parent_model_version tags loop back to version {current}")
            )
            break
        seen.add(current)
        facts = lookup(current)
        if facts is None:
            where = child or current
            message = (
                f"names parent version {current}, which is not in the registry"
                if child
                else f"version {current} is not in the registry"
            )
            problems.append(Problem(where, "parent", message))
            break
        links.append(facts)
        child, current = current, facts.tags.get("parent_model_version") or ""
    return links[::-1], problems


def parse_batch(batch_id: str, text: str | None) -> tuple[ForgetBatch | None, str | None]:
    """A batch record, or why it cannot be used."""
    if text is None:
        return None, f"batch record data/batches/{batch_id}.json is missing"
    try:
        return ForgetBatch.model_validate_json(text), None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        return None, f"batch record data/batches/{batch_id}.json is unreadable: {where}: {first['msg']}"


def check_batch(facts: VersionFacts, batch: ForgetBatch) -> list[str]:
    """How the batch record disagrees with itself or with the version's tags (empty when it agrees)."""
    tags, found = facts.tags, []
    recomputed = ids_sha256(batch.forget_ids)
    if recomputed != batch.sha256:
        found.append(
            f"batch {batch.batch_id}: its forget IDs hash to {recomputed[:12]}…, "
            f"but the record says {batch.sha256[:12]}… (the record was altered)"
        )
    if tags.get("forget_manifest_sha256") != recomputed:
        found.append(
            f"batch {batch.batch_id}: manifest sha256 tag {tags.get('forget_manifest_sha256', '(none)')[:12]}… "
            f"does not match the record's forget IDs ({recomputed[:12]}…)"
        )
    if batch.batch_id != tags.get("forget_batch_id"):
        found.append(f"batch record names batch {batch.batch_id}, not {tags.get('forget_batch_id')}")
    if list(batch.request_ids) != facts.listed("forget_request_ids"):
        found.append(
            f"batch {batch.batch_id}: the record honours requests {','.join(batch.request_ids)}, "
            f"the version's tag says {tags.get('forget_request_ids', '(none)')}"
        )
    if list(batch.requesters) != facts.listed("forget_requesters"):
        found.append(
            f"batch {batch.batch_id}: the record names requesters {','.join(batch.requesters)}, "
            f"the version's tag says {tags.get('forget_requesters', '(none)')}"
        )
    return found


def check_data_versions(facts: VersionFacts, md5_at: Callable[[str], str | None]) -> tuple[int, list[str]]:
    """(checks made, mismatches) for ``data.dvc`` at ``git_rev`` / ``parent_git_rev`` against the recorded md5s."""
    checks, found = 0, []
    for md5_key, rev_key in (("data_md5", "git_rev"), ("parent_data_md5", "parent_git_rev")):
        md5, rev = facts.tags.get(md5_key), facts.tags.get(rev_key)
        if not md5 and not rev:
            continue
        checks += 1
        if not md5 or not rev:
            found.append(f"{md5_key} and {rev_key} must be recorded together; only one of them is")
            continue
        recorded = md5_at(rev)
        if recorded is None:
            found.append(f"git revision {rev[:12]} ({rev_key}) has no data.dvc: that data version is not retrievable")
        elif recorded != md5:
            found.append(f"data.dvc at {rev[:12]} ({rev_key}) records md5 {recorded}, the tag {md5_key} says {md5}")
    return checks, found


def check_pool(facts: VersionFacts, pool_sha256_at: Callable[[str], str]) -> str | None:
    """Why the pool at ``git_rev`` does not hash to ``pool_sha256`` (unreadable, or another pool), else ``None``."""
    rev, recorded = facts.tags["git_rev"], facts.tags["pool_sha256"]
    try:
        actual = pool_sha256_at(rev)
    except (RuntimeError, OSError, ValueError) as error:  # the adapters' errors: that version is not retrievable
        return f"the pool at {rev[:12]} cannot be read: {error}"
    if actual != recorded:
        return f"the pool at {rev[:12]} hashes to {actual[:12]}…, the tag pool_sha256 says {recorded[:12]}…"
    return None


def audit_chain(target: str, version: str, sources: Sources, deep: bool = False) -> ChainAudit:
    """Walk ``version``'s chain and re-check every recorded fact (module docstring)."""
    links, problems = walk(version, sources.version)
    notes: list[Problem] = []
    checks = len(links)  # one parent link per version
    batches: dict[str, ForgetBatch] = {}
    metrics: dict[str, Mapping[str, float]] = {}
    by_version = {link.version: link for link in links}
    for link in links:
        tags = link.tags
        batch_id = tags.get("forget_batch_id")
        if batch_id:
            checks += 1
            batch, why = parse_batch(batch_id, sources.batch_record(batch_id))
            if batch is None:
                problems.append(Problem(link.version, "batch-record", f"batch {batch_id}: {why}"))
            else:
                batches[batch_id] = batch
                problems += [Problem(link.version, "manifest", message) for message in check_batch(link, batch)]
                parent = by_version.get(tags.get("parent_model_version", ""))
                if parent is not None and parent.tags.get("pool_sha256"):
                    checks += 1
                    if parent.tags["pool_sha256"] != batch.parent_pool_sha256:
                        problems.append(
                            Problem(
                                link.version,
                                "parent-pool",
                                f"batch {batch_id} was planned on pool {batch.parent_pool_sha256[:12]}…, but parent "
                                f"version {parent.version} serves pool {parent.tags['pool_sha256'][:12]}…",
                            )
                        )
        made, found = check_data_versions(link, sources.md5_at)
        checks += made
        problems += [Problem(link.version, "data-version", message) for message in found]
        if deep and sources.pool_sha256_at is not None and tags.get("pool_sha256") and tags.get("git_rev"):
            purged = sources.purged_at(tags["git_rev"])
            if purged is not None:
                notes.append(Problem(link.version, "pool", f"pool not re-read: {purged}"))
            else:
                checks += 1
                mismatch = check_pool(link, sources.pool_sha256_at)
                if mismatch:
                    problems.append(Problem(link.version, "pool", mismatch))
        run_id = tags.get("pipeline_run_id")
        if run_id:
            found_metrics = sources.run_metrics(run_id)
            if found_metrics is not None:
                metrics[link.version] = dict(found_metrics)
    return ChainAudit(target, tuple(links), batches, metrics, tuple(problems), checks, deep, tuple(notes))


# -- when a request or a sample is honoured ---------------------------------------------------------------------


@dataclass(frozen=True)
class Honoured:
    """The answer to "since when does the served model honour this request (or forget this sample)?"."""

    subject: str  # "request <id>" | "sample <id>"
    status: str  # honoured | not-served | pending | rejected | unknown | in-pool | not-in-pool
    batch: str | None = None
    version: str | None = None
    detail: str = ""
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """False only for a deletion recorded as done that the served model does not honour."""
        return self.status != "not-served"

    def to_document(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "status": self.status,
            "batch": self.batch,
            "version": self.version,
            "detail": self.detail,
            "reasons": list(self.reasons),
        }


def first_honouring(links: Sequence[VersionFacts], batch: ForgetBatch) -> VersionFacts | None:
    """The first version of the chain that honours ``batch``: the one its lineage names (unlearned, or the retrain
    fallback of that batch), or a model trained from scratch after the batch removed the samples."""
    for link in links:
        if link.tags.get("forget_batch_id") == batch.batch_id:
            return link
        if link.from_scratch and link.created_at is not None and link.created_at >= batch.created_at:
            return link
    return None


def _served(subject: str, batch: ForgetBatch, links: Sequence[VersionFacts], target: str, what: str) -> Honoured:
    link = first_honouring(links, batch)
    if link is None:
        return Honoured(
            subject,
            "not-served",
            batch.batch_id,
            detail=f"{what} by batch {batch.batch_id}, but no version of {target}'s chain honours that batch",
        )
    how = (
        "its lineage names the batch"
        if link.tags.get("forget_batch_id") == batch.batch_id
        else "trained from scratch after it"
    )
    return Honoured(
        subject,
        "honoured",
        batch.batch_id,
        link.version,
        f"{what} by batch {batch.batch_id}; {target} honours it since version {link.version} ({link.source}: {how})",
    )


def request_honoured(
    request_id: str,
    state: str,  # pending | processed | rejected | unknown: where data/requests/ holds it
    batches: Sequence[ForgetBatch],
    links: Sequence[VersionFacts],
    target: str,
    reasons: Sequence[str] = (),
) -> Honoured:
    subject = f"request {request_id}"
    batch = next((b for b in batches if request_id in b.request_ids), None)
    if batch is not None:
        return _served(subject, batch, links, target, f"{subject} was honoured")
    if state == "pending":
        return Honoured(subject, "pending", detail=f"{subject} is pending: the next deletion batch will honour it")
    if state == "rejected":
        return Honoured(subject, "rejected", detail=f"{subject} was rejected", reasons=tuple(reasons))
    if state == "processed":
        return Honoured(subject, "not-served", detail=f"{subject} is marked processed, but no batch record names it")
    return Honoured(
        subject, "unknown", detail=f"{subject} is unknown: no pending, processed or rejected request has that ID"
    )


def sample_honoured(
    sample_id: str,
    batches: Sequence[ForgetBatch],
    links: Sequence[VersionFacts],
    target: str,
    in_pool: bool,
) -> Honoured:
    subject = f"sample {sample_id}"
    batch = next((b for b in batches if sample_id in b.forget_ids or sample_id in b.removed_elsewhere), None)
    if batch is not None:
        if sample_id in batch.removed_elsewhere:
            return Honoured(
                subject,
                "honoured",
                batch.batch_id,
                detail=f"{subject} was deleted by batch {batch.batch_id}; it was never a training sample (val/test)",
            )
        return _served(subject, batch, links, target, f"{subject} was forgotten")
    if in_pool:
        return Honoured(
            subject, "in-pool", detail=f"{subject} is still in the training pool: no batch has forgotten it"
        )
    return Honoured(
        subject, "not-in-pool", detail=f"{subject} is not in the training pool and no batch record names it"
    )
