"""Admission control: a forget request is checked completely when it is submitted, before anything is queued.

A request that passes admission can only fail later for reasons that did not exist at submit time (another batch
removed its samples first, the pool shrank below its batch limit); ``policy.plan_batch`` re-checks every pending
request at batch time as the second line of defence, also for files placed in ``requests/pending`` by hand.

The checks are pure functions that return a list of reasons (each starting with the field it concerns, never
containing a newline); ``admit`` gathers the facts from the store, runs them all and raises one ``DataError``
whose one-line message names the file and every reason.

Sample IDs are checked against the current data version (pool, validation and test splits, as the batch-time
contract does: a data owner may ask for a held-out sample to be deleted too) when the dataset is materialised
under ``data/<dataset>/``. Before the first run materialises it, only the form of each ID is checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from components.data.datasets import dataset_names
from components.data.types import DataError

if TYPE_CHECKING:
    from components.deletion.store import DataStore, ForgetRequest

# The form make_ids writes: <dataset>/<train|test>/<index of at least 5 digits>.
ID_PATTERN = re.compile(r"(?P<dataset>[A-Za-z0-9_]+)/(?P<split>train|test)/(?P<index>[0-9]{5,12})")
REQUESTER_PUNCTUATION = frozenset(" ._@+-")
EXAMPLES_SHOWN = 3


class AdmissionLimits(BaseModel):
    """The limits a request must respect to be queued.

    Attributes:
        max_file_bytes: Largest request file read (16 MiB), checked before the file is read.
        max_ids: Most sample IDs one request may name (1,000,000) when the pool size is unknown.
        max_batch_fraction: When set and the dataset is materialised, a request may also name at most
            ``floor(max_batch_fraction * pool size)`` IDs, the largest batch the pipeline runs
            (``pipeline.max_batch_fraction``); a larger request could never be honoured.
        max_clock_skew_s: How far ``requested_at`` may lie in the future (300 s), for clocks slightly ahead.
        max_requester_chars: Longest ``requester`` (200 characters).
        max_reason_chars: Longest ``reason`` (2000 characters).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_file_bytes: int = Field(16 * 2**20, ge=1)
    max_ids: int = Field(1_000_000, ge=1)
    max_batch_fraction: float | None = Field(None, gt=0, le=1)
    max_clock_skew_s: float = Field(300.0, ge=0)
    max_requester_chars: int = Field(200, ge=1)
    max_reason_chars: int = Field(2000, ge=1)


def show(value: object, width: int = 60) -> str:
    """``value`` as an ASCII literal, shortened: safe in a one-line message whatever it contains."""
    text = ascii(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _examples(values: Iterable[str]) -> str:
    listed = list(values)
    shown = ", ".join(show(value) for value in listed[:EXAMPLES_SHOWN])
    return shown + (", ..." if len(listed) > EXAMPLES_SHOWN else "")


def read_request_text(path: Path, max_bytes: int) -> str:
    """The text of a request file, refusing (one ``DataError`` line naming the file) a missing path, a directory or
    other non-regular file, an unreadable file, one over ``max_bytes`` (checked before reading it all) and bytes
    that are not UTF-8."""
    prefix = f"forget request {path}"
    try:
        if not path.exists():
            raise DataError(f"{prefix} not found")
        if path.is_dir():
            raise DataError(f"{prefix} is a directory, not a request file")
        if not path.is_file():
            raise DataError(f"{prefix} is not a regular file")
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(f"{prefix}: file of {size} bytes, more than the limit of {max_bytes}")
        with path.open("rb") as stream:
            payload = stream.read(max_bytes + 1)
    except OSError as error:
        raise DataError(f"{prefix} cannot be read: {error.strerror or error.__class__.__name__}") from None
    if len(payload) > max_bytes:
        raise DataError(f"{prefix}: file grew over the limit of {max_bytes} bytes while read")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{prefix}: not UTF-8 text (byte {error.object[error.start]:#04x} at {error.start})") from None


def dataset_problems(dataset: str, known: Collection[str]) -> list[str]:
    """The dataset must be registered, else the request would stay pending forever."""
    if dataset in known:
        return []
    return [f"dataset: unknown dataset {show(dataset)}; known datasets: {', '.join(sorted(known))}"]


def time_problems(requested_at: datetime, now: datetime, max_clock_skew_s: float) -> list[str]:
    """``requested_at`` must carry a time zone and must not lie in the future beyond the clock skew."""
    if requested_at.tzinfo is None or requested_at.utcoffset() is None:
        return [
            f"requested_at: {requested_at.isoformat()} has no time zone; "
            "write it with one, e.g. 2026-11-27T08:00:00Z or 2026-11-27T09:00:00+01:00"
        ]
    if requested_at > now + timedelta(seconds=max_clock_skew_s):
        return [
            f"requested_at: {requested_at.isoformat()} is in the future "
            f"(now {now.astimezone(UTC).isoformat(timespec='seconds')}, {max_clock_skew_s:g} s clock skew allowed)"
        ]
    return []


def _printable_problems(field: str, text: str, max_chars: int) -> list[str]:
    if not text.strip():
        return [f"{field}: empty"]
    if len(text) > max_chars:
        return [f"{field}: {len(text)} characters, more than the limit of {max_chars}"]
    odd = [character for character in text if not character.isprintable()]
    if odd:
        return [f"{field}: control characters or line breaks are not allowed (found {_examples(odd)})"]
    return []


def text_problems(requester: str, reason: str, limits: AdmissionLimits) -> list[str]:
    """``requester`` and ``reason``: printable text of bounded length; ``requester`` also only letters, digits,
    space and ``._@+-`` (no shell metacharacters)."""
    problems = _printable_problems("requester", requester, limits.max_requester_chars)
    if not problems:
        odd = sorted({c for c in requester if not (c.isalnum() or c in REQUESTER_PUNCTUATION)})
        if odd:
            problems.append(
                f"requester: character(s) {_examples(odd)} not allowed (letters, digits, space and ._@+- only)"
            )
    return problems + _printable_problems("reason", reason, limits.max_reason_chars)


def id_problems(
    dataset: str,
    ids: Collection[str],
    max_ids: int,
    current_ids: Collection[str] | None = None,
    forgotten_by: Mapping[str, str] | None = None,
) -> list[str]:
    """Each ID has the form ``<dataset>/<train|test>/<digits>`` of the request's dataset, was not forgotten by an
    earlier batch (``forgotten_by``: ID to batch ID) and, when ``current_ids`` is known, exists in the current
    data; at most ``max_ids`` IDs."""
    problems: list[str] = []
    if len(ids) > max_ids:
        problems.append(f"ids: {len(ids)} IDs, more than the limit of {max_ids} for one request")
    matches = {sample_id: ID_PATTERN.fullmatch(sample_id) for sample_id in ids}
    malformed = [sample_id for sample_id, match in matches.items() if match is None]
    if malformed:
        problems.append(
            f"ids: {len(malformed)} not of the form <dataset>/<train|test>/<digits>: {_examples(malformed)}"
        )
    foreign = [i for i, match in matches.items() if match is not None and match["dataset"] != dataset]
    if foreign:
        problems.append(f"ids: {len(foreign)} of another dataset than {show(dataset)}: {_examples(foreign)}")
    well_formed = [i for i, match in matches.items() if match is not None and match["dataset"] == dataset]
    forgotten_by = forgotten_by or {}
    by_batch: dict[str, list[str]] = {}
    for sample_id in well_formed:
        if sample_id in forgotten_by:
            by_batch.setdefault(forgotten_by[sample_id], []).append(sample_id)
    for batch_id, forgotten in sorted(by_batch.items()):
        problems.append(f"ids: {len(forgotten)} already forgotten by batch {batch_id}: {_examples(forgotten)}")
    if current_ids is not None:
        unknown = [i for i in well_formed if i not in forgotten_by and i not in current_ids]
        if unknown:
            problems.append(f"ids: {len(unknown)} not in the current {dataset} data: {_examples(unknown)}")
    return problems


def id_cap(limits: AdmissionLimits, pool_size: int | None) -> int:
    """The most IDs one request may name: ``max_ids``, and the pipeline's batch limit when the pool is known."""
    if limits.max_batch_fraction is None or pool_size is None:
        return limits.max_ids
    return min(limits.max_ids, math.floor(limits.max_batch_fraction * pool_size))


def request_problems(
    store: DataStore,
    request: ForgetRequest,
    limits: AdmissionLimits,
    now: datetime | None = None,
    datasets: Collection[str] | None = None,
) -> list[str]:
    """Every reason ``request`` cannot be queued in ``store`` (empty when it can).

    ``datasets`` defaults to the dataset registry. The store is read only for a registered dataset, so a dataset
    name never becomes a path outside ``data/``.
    """
    known = dataset_names() if datasets is None else datasets
    problems = dataset_problems(request.dataset, known)
    problems += time_problems(request.requested_at, now or datetime.now(UTC), limits.max_clock_skew_s)
    problems += text_problems(request.requester, request.reason, limits)
    current: dict[str, list[str]] | None = None
    forgotten_by: dict[str, str] = {}
    if request.dataset in known:
        current = store.current_ids(request.dataset)
        for batch in store.batches(request.dataset):
            for sample_id in batch.forget_ids + batch.removed_elsewhere:
                forgotten_by.setdefault(sample_id, batch.batch_id)
    present = None if current is None else {i for split in current.values() for i in split}
    pool_size = None if current is None else len(current["pool"])
    problems += id_problems(request.dataset, request.ids, id_cap(limits, pool_size), present, forgotten_by)
    return problems


def admit(
    store: DataStore,
    request: ForgetRequest,
    limits: AdmissionLimits,
    source: Path | str,
    now: datetime | None = None,
    datasets: Collection[str] | None = None,
) -> None:
    """Raise one ``DataError`` line naming ``source`` and every reason when ``request`` may not be queued.

    Raises:
        DataError: ``forget request <source> refused: <field>: <reason>; <field>: <reason> ...``.
    """
    problems = request_problems(store, request, limits, now=now, datasets=datasets)
    if problems:
        raise DataError(f"forget request {source} refused: {'; '.join(problems)}")
