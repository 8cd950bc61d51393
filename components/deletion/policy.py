"""Deletion policy as plain functions: which requests make the next batch, when a registered model can be reused,
what keys the retrain reference, and which model a verdict promotes.

The Prefect tasks only wrap these (retries, tags, logging, tracking), so every decision is unit-tested without an
orchestrator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from components.data.types import ids_sha256
from components.deletion.store import DataStore, ForgetBatch, ForgetRequest, StoredDataset
from components.verification.certification import Certification
from components.verification.gates import Verdict

if TYPE_CHECKING:
    from components.adapters.expectations import ValidationReport


@dataclass(frozen=True)
class Rejection:
    """A request that can never succeed, with one line per failed expectation."""

    request: ForgetRequest
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class BatchPlan:
    """The next batch (``None`` when no request is ready), the requests rejected, and valid requests left for a
    later batch because the batch limit is reached (first come, first served)."""

    batch: ForgetBatch | None
    rejected: tuple[Rejection, ...] = ()
    deferred: tuple[ForgetRequest, ...] = field(default=())


def batch_limit(max_fraction: float, pool_size: int) -> int:
    """The most samples one batch may remove: ``floor(max_fraction * pool_size)``."""
    return math.floor(max_fraction * pool_size)


def check_requests(
    store: DataStore,
    stored: StoredDataset,
    requests: Sequence[ForgetRequest],
    max_fraction: float,
    gx_outputs: Path | None = None,
) -> list[tuple[ForgetRequest, ValidationReport]]:
    """The forget-request contract (GX checkpoint ``request_contract``) on each request: IDs exist, unique, not
    already forgotten, within the limit. Each result is kept under ``gx_outputs`` with the request ID as run name."""
    # Great Expectations costs seconds to import; `run` with nothing pending never plans, so it never pays that
    from components.adapters.expectations import validate_forget_request

    known = np.concatenate([stored.pool.ids, stored.val.ids, stored.test.ids])
    forgotten = sorted(store.forgotten_ids(stored.name))
    return [
        (
            request,
            validate_forget_request(
                list(request.ids),
                known,
                forgotten,
                max_fraction,
                len(stored.pool),
                outputs=gx_outputs,
                run_name=request.request_id,
            ),
        )
        for request in requests
    ]


def plan_batch(
    store: DataStore,
    stored: StoredDataset,
    pending: Sequence[ForgetRequest],
    max_fraction: float,
    parent_data_md5: str | None = None,
    parent_git_rev: str | None = None,
    now: datetime | None = None,
    gx_outputs: Path | None = None,
) -> BatchPlan:
    """Plan the next batch from ``pending`` (oldest first).

    A request that breaks its contract is rejected (each request's validation result and Data Docs page are kept
    under ``gx_outputs``). Valid requests join the batch in order while the union of their IDs stays within
    ``batch_limit``; the rest wait for the next batch, so two requests that are each valid never block the queue
    together.
    """
    limit = batch_limit(max_fraction, len(stored.pool))
    accepted: list[ForgetRequest] = []
    rejected: list[Rejection] = []
    deferred: list[ForgetRequest] = []
    chosen: set[str] = set()
    for request, report in check_requests(store, stored, pending, max_fraction, gx_outputs):
        if not report.success:
            rejected.append(Rejection(request, tuple(report.failures)))
        elif len(chosen | set(request.ids)) <= limit:
            accepted.append(request)
            chosen.update(request.ids)
        else:
            deferred.append(request)
    batch = (
        store.plan_batch(stored, accepted, now=now, parent_data_md5=parent_data_md5, parent_git_rev=parent_git_rev)
        if accepted
        else None
    )
    return BatchPlan(batch=batch, rejected=tuple(rejected), deferred=tuple(deferred))


def tuned_scenario(forgotten_classes: Sequence[int], forget_labels: np.ndarray) -> str | None:
    """The benchmark scenario a batch is an instance of, so that its validation-tuned settings apply.

    A batch that removes exactly one whole class and nothing else is the scenario ``class:<c>``; any other batch
    has no scenario, and the tuned entry of its forget kind (if any) applies.
    """
    if len(forgotten_classes) == 1 and set(np.unique(forget_labels).tolist()) == {int(forgotten_classes[0])}:
        return f"class:{int(forgotten_classes[0])}"
    return None


def pool_fingerprint(stored: StoredDataset) -> str:
    """sha256 of the training pool's sample IDs: the samples a model was trained on or honours.

    The DVC md5 of ``data/`` also changes when requests are queued or batch records are written, so model reuse
    and the reference cache key on this instead.
    """
    return ids_sha256(stored.pool.ids.tolist())


def serves_pool(version_tags: Mapping[str, str], pool_sha256: str) -> bool:
    """Whether a registered version was trained on (or honours every deletion of) exactly this pool."""
    return version_tags.get("pool_sha256") == pool_sha256


# What changes a trained model, besides its data: each must be part of the reference's key.
REFERENCE_TAGS = ("recipe_sha256", "model_arch", "seed", "training_code_sha256", "preprocessing_sha256")


def reference_key(pool_sha256: str, recipe_tags: Mapping[str, str]) -> dict[str, str]:
    """The tags that identify a retrain-from-scratch reference: same retained pool (sample IDs), and every recipe
    tag (``RunContext.recipe_tags``: recipe, architecture, seed, training and model code, preprocessing).

    Raises:
        ValueError: when a recipe tag is missing, so a reference can never be reused on a partial key.
    """
    missing = [tag for tag in REFERENCE_TAGS if tag not in recipe_tags]
    if missing:
        raise ValueError(f"a reference key needs every recipe tag; missing {', '.join(missing)}")
    return {"pool_sha256": pool_sha256, **recipe_tags}


PromotedSource = Literal["unlearned", "retrain"]
VerifyMode = Literal["certify", "reference", "both"]


REFERENCE_ROWS = frozenset({"original", "retrain"})


def candidate_row(method: str) -> str:
    """The candidate's row name in a batch's metric and time tables: the serving method's name, or, for a method
    named like a reference row (``original`` as a no-op control, ``retrain`` as exact deletion), that name marked as
    the candidate, so the candidate's figures never overwrite the reference's or get compared with themselves."""
    return f"{method} (candidate)" if method in REFERENCE_ROWS else method


@dataclass(frozen=True)
class Promotion:
    """Which model a verification promotes: the unlearned one when it passes, else a retrain-from-scratch model
    (it honours the deletion exactly, so every accepted request is still served), and why."""

    source: PromotedSource
    verdict: Literal["pass", "fail"]
    reason: str = ""


def decide_promotion(verdict: Verdict) -> Promotion:
    """The reference mode's decision: every gate against the retrained reference must hold."""
    if verdict.passed:
        return Promotion("unlearned", "pass", "every gate against the retrain reference holds")
    return Promotion("retrain", "fail", "reference gates failed: " + "; ".join(verdict.failures))


def needs_reference(mode: VerifyMode, certification: Certification | None) -> bool:
    """Whether a retrain-from-scratch model is needed: always to compare with (``reference``, ``both``), and in
    ``certify`` mode only as the fallback when certification fails."""
    if mode == "certify":
        if certification is None:
            raise ValueError("certify mode decides from a certification")
        return not certification.certified
    return True


def decide(mode: VerifyMode, certification: Certification | None, verdict: Verdict | None) -> Promotion:
    """The model to promote for ``mode``.

    - ``certify``: the unlearned model when ``certification.certified``, else the retrained fallback;
    - ``reference``: the unlearned model when every gate of ``verdict`` holds, else the retrained reference;
    - ``both``: the unlearned model only when both pass, else the retrained reference.

    Raises:
        ValueError: when the mode's evidence is missing (a certification for certify/both, a verdict for
            reference/both), or the mode is unknown.
    """
    if mode not in ("certify", "reference", "both"):
        raise ValueError(f"unknown verify mode {mode!r}")
    if mode in ("certify", "both") and certification is None:
        raise ValueError(f"verify mode {mode} needs a certification")
    if mode in ("reference", "both") and verdict is None:
        raise ValueError(f"verify mode {mode} needs a reference verdict")
    if mode == "reference":
        assert verdict is not None
        return decide_promotion(verdict)
    assert certification is not None
    reasons = []
    if not certification.certified:
        reasons.append("certification failed: " + certification.verdict_line())
    if mode == "both":
        assert verdict is not None
        if not verdict.passed:
            reasons.append("reference gates failed: " + "; ".join(verdict.failures))
    if reasons:
        return Promotion("retrain", "fail", "; ".join(reasons))
    reason = "certified" if mode == "certify" else "certified and every gate against the retrain reference holds"
    return Promotion("unlearned", "pass", reason)


def verdict_line(mode: VerifyMode, certification: Certification | None, verdict: Verdict | None) -> str:
    """One line starting with ``PASS`` or ``FAIL``: the mode's verdict (both: the two, and PASS only if both pass)."""
    if mode == "reference":
        assert verdict is not None
        return verdict.summary()
    assert certification is not None
    if mode == "certify":
        return certification.verdict_line()
    assert verdict is not None
    passed = certification.certified and verdict.passed
    return (
        f"{'PASS' if passed else 'FAIL'}: certification {certification.verdict_line()}; "
        f"reference gates {verdict.summary()}"
    )
