"""The Retrain audit's policy, free of any orchestrator or SDK: the serving model's chain, what was forgotten since
the last model trained from scratch, whether a data version was already audited, and the tags an audit leaves on
the audited model version.

The chain of a registered version runs through its ``parent_model_version`` tags back to the original model:
``original -> batch 1 -> batch 2 -> ...``. A model trained from scratch (the original, or a retrained fallback)
is its own retrain reference, so the audit compares only unlearned models, and the samples it checks for
forgetting are every sample removed since the chain's last from-scratch model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from components.verification.gates import Verdict

FROM_SCRATCH_SOURCES = frozenset({"original", "retrain"})
AUDIT_TAGS = (
    "audit_pool_sha256",
    "audit_verdict",
    "audit_detail",
    "audit_gap_laf",
    "audit_reference",
    "audit_run_id",
    "audit_at",
    "audit_batches_since_scratch",
)

AuditOutcome = Literal["exact", "pass", "fail"]


@dataclass(frozen=True)
class ChainLink:
    """One registered version of the serving model and its tags."""

    version: str
    tags: Mapping[str, str]

    @property
    def source(self) -> str:
        return self.tags.get("source", "unknown")

    @property
    def from_scratch(self) -> bool:
        return self.source in FROM_SCRATCH_SOURCES


def chain(version: str, tags_of: Callable[[str], Mapping[str, str]], limit: int = 10_000) -> list[ChainLink]:
    """The versions from the chain's start (the original model) to ``version``, oldest first.

    Raises:
        ValueError: when a parent link loops back (a corrupt registry) or the chain exceeds ``limit`` links.
    """
    links: list[ChainLink] = []
    seen: set[str] = set()
    current: str | None = version
    while current is not None:
        if current in seen or len(links) >= limit:
            raise ValueError(f"the parent_model_version tags of version {version} loop back to version {current}")
        seen.add(current)
        link = ChainLink(current, dict(tags_of(current)))
        links.append(link)
        current = link.tags.get("parent_model_version") or None
    return links[::-1]


def last_from_scratch(links: Sequence[ChainLink]) -> ChainLink:
    """The chain's latest model trained from scratch: the data version the audit's forget set is measured from.

    Raises:
        ValueError: when no version of the chain was trained from scratch (its start is not an original model).
    """
    for link in reversed(links):
        if link.from_scratch:
            return link
    raise ValueError(f"version {links[-1].version}'s chain has no model trained from scratch (original or retrain)")


def purged_line(audited: ChainLink, scratch: ChainLink, purge_entry: Mapping[str, Any]) -> str:
    """Why ``audited`` cannot be compared with Retrain any more: the data version of ``scratch`` (the chain's last
    from-scratch model), which holds the samples forgotten since, was purged (``purge_entry``: its purge record)."""
    rev = scratch.tags.get("git_rev", "")
    date = str(purge_entry.get("purged_at") or "?")[:10]
    return (
        f"not audited: version {audited.version} cannot be compared with Retrain: the samples forgotten since version "
        f"{scratch.version} ({scratch.source}) were in data version {rev[:12]}, purged on {date} "
        f"(purges/{purge_entry.get('record', '?')}), so forgetting cannot be measured on them; the erasure is "
        "complete, and the batch records, manifests and promotion verdicts stay as the evidence (`mixunlearn audit`)"
    )


def batches_since_scratch(links: Sequence[ChainLink]) -> int:
    """Unlearned batches applied after the chain's last from-scratch model: the drift the audit measures."""
    count = 0
    for link in reversed(links):
        if link.from_scratch:
            return count
        count += 1
    return count


def already_audited(tags: Mapping[str, str], pool_sha256: str) -> bool:
    """Whether this version was audited on this very retained pool (the audit is idempotent per data version)."""
    return tags.get("audit_pool_sha256") == pool_sha256 and bool(tags.get("audit_verdict"))


def needs_audit(links: Sequence[ChainLink], every_batches: int) -> bool:
    """Whether the serving version has gone ``every_batches`` unlearned batches without a Retrain audit
    (0 disables the count: the audit then runs on its schedule only)."""
    if every_batches <= 0:
        return False
    unaudited = 0
    for link in reversed(links):
        if link.from_scratch or link.tags.get("audit_verdict"):
            break
        unaudited += 1
    return unaudited >= every_batches


@dataclass(frozen=True)
class AuditRecord:
    """One Retrain audit of one serving version."""

    version: str
    pool_sha256: str
    outcome: AuditOutcome
    detail: str  # the gates' one-line summary, or why the version is exact
    batches_since_scratch: int
    audited_at: str  # ISO 8601, UTC
    gap_laf: float | None = None
    reference: str | None = None  # "<registered name>/<version>" of the retrained reference
    run_id: str | None = None

    def tags(self) -> dict[str, str]:
        """The ``audit_*`` tags put on the audited model version (what the MLflow UI shows)."""
        values: dict[str, Any] = {
            "audit_pool_sha256": self.pool_sha256,
            "audit_verdict": self.outcome,
            "audit_detail": self.detail[:5000],
            "audit_gap_laf": "" if self.gap_laf is None else f"{self.gap_laf:.4f}",
            "audit_reference": self.reference or "",
            "audit_run_id": self.run_id or "",
            "audit_at": self.audited_at,
            "audit_batches_since_scratch": str(self.batches_since_scratch),
        }
        return {key: str(value) for key, value in values.items()}


def exact_record(link: ChainLink, pool_sha256: str, audited_at: str) -> AuditRecord:
    """A from-scratch model is its own Retrain: nothing to retrain, gap zero by construction."""
    return AuditRecord(
        version=link.version,
        pool_sha256=pool_sha256,
        outcome="exact",
        detail=f"PASS: version {link.version} was trained from scratch ({link.source}) on this data",
        batches_since_scratch=0,
        audited_at=audited_at,
        gap_laf=0.0,
    )


def compared_record(
    link: ChainLink,
    pool_sha256: str,
    verdict: Verdict,
    gap_laf: float | None,
    batches: int,
    audited_at: str,
    reference: str,
    run_id: str | None,
) -> AuditRecord:
    return AuditRecord(
        version=link.version,
        pool_sha256=pool_sha256,
        outcome="pass" if verdict.passed else "fail",
        detail=verdict.summary(),
        batches_since_scratch=batches,
        audited_at=audited_at,
        gap_laf=gap_laf,
        reference=reference,
        run_id=run_id,
    )


def history(links: Sequence[ChainLink]) -> list[dict[str, str]]:
    """The chain as report rows: each version's source, batch, verdict at promotion and Retrain-audit result."""
    rows = []
    for link in links:
        tags = link.tags
        rows.append(
            {
                "version": link.version,
                "source": link.source,
                "batch": tags.get("forget_batch_id", "–"),
                "promotion": tags.get("verdict", "–"),
                "audit": tags.get("audit_verdict", "not audited"),
                "audit_gap_laf": tags.get("audit_gap_laf") or "–",
                "audit_at": tags.get("audit_at", "–"),
            }
        )
    return rows
