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
from typing import Literal

import numpy as np

from components.adapters.expectations import ValidationReport, validate_forget_request
from components.data.types import ids_sha256
from components.deletion.store import DataStore, ForgetBatch, ForgetRequest, StoredDataset
from components.verification.gates import Verdict


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
    store: DataStore, stored: StoredDataset, requests: Sequence[ForgetRequest], max_fraction: float
) -> list[tuple[ForgetRequest, ValidationReport]]:
    """The forget-request contract on each request: IDs exist, unique, not already forgotten, within the limit."""
    known = np.concatenate([stored.pool.ids, stored.val.ids, stored.test.ids])
    forgotten = sorted(store.forgotten_ids(stored.name))
    return [
        (request, validate_forget_request(list(request.ids), known, forgotten, max_fraction, len(stored.pool)))
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
) -> BatchPlan:
    """Plan the next batch from ``pending`` (oldest first).

    A request that breaks its contract is rejected. Valid requests join the batch in order while the union of
    their IDs stays within ``batch_limit``; the rest wait for the next batch, so two requests that are each
    valid never block the queue together.
    """
    limit = batch_limit(max_fraction, len(stored.pool))
    accepted: list[ForgetRequest] = []
    rejected: list[Rejection] = []
    deferred: list[ForgetRequest] = []
    chosen: set[str] = set()
    for request, report in check_requests(store, stored, pending, max_fraction):
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


def reference_key(pool_sha256: str, recipe_tags: Mapping[str, str]) -> dict[str, str]:
    """The tags that identify a retrain-from-scratch reference: same retained pool, same recipe, seed and code."""
    return {"pool_sha256": pool_sha256, **recipe_tags}


PromotedSource = Literal["unlearned", "retrain"]


@dataclass(frozen=True)
class Promotion:
    """Which model a verdict promotes: the unlearned one when every gate holds, else the retrained reference
    (it honours the deletion exactly, so every accepted request is still served)."""

    source: PromotedSource
    verdict: Literal["pass", "fail"]


def decide_promotion(verdict: Verdict) -> Promotion:
    return Promotion("unlearned", "pass") if verdict.passed else Promotion("retrain", "fail")
