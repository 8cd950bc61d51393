"""An S3 request queue: forget requests dropped as objects under ``s3://<bucket>/<prefix>/incoming/`` are claimed,
admitted into the local queue (``data/requests/pending``) through the same admission as ``mixunlearn request
submit``, and filed under ``processed/`` or ``rejected/``.

Layout under the prefix (``triggers.s3_queue`` in params.yaml; endpoint and credentials from the environment)::

    incoming/<name>           written by data owners: one request JSON per object
    claims/<name>             claim marker, created with ``If-None-Match: *``: exactly one claimer gets it
    processed/<name>          the request, admitted (queued, or already known with the same content)
    rejected/<name>           the request as it came, refused
    rejected/<name>.reason    why, one line (the same line ``request submit`` prints)

Claiming. S3 accepts exactly one of several conditional writes of a missing key and answers the others 412, so of
two queues (two ``serve`` processes, two machines) draining the same prefix, one claims each object and the other
skips it. The holder then, in this order: reads the object, admits it locally, copies it to ``processed/`` (or
writes the reason and copies it to ``rejected/``), deletes ``incoming/<name>``, and deletes its claim. A claimer
that finds the object gone (the previous holder finished between its listing and its claim) drops its claim.

Crashes. Every step is safe to repeat: admission of a request already queued answers "already known", a copy
overwrites the same bytes. A claimer that dies keeps its claim; once the claim is older than ``claim_ttl_seconds``
another claimer deletes it with ``If-Match: <its ETag>`` (a conditional delete, so of two claimers breaking the same
stale claim only one succeeds and neither deletes the other's fresh claim) and claims the object again.

This module never imports boto3 (``components/adapters/storage.py`` does) and never imports Prefect.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from components.adapters.storage import (
    ObjectInfo,
    ObjectMissingError,
    ObjectStore,
    ObjectTooLargeError,
    StorageError,
)
from components.data.types import DataError
from components.deletion.admission import AdmissionLimits, show
from components.deletion.store import DataStore, ForgetRequest
from components.triggers.settings import S3QueueConfig

INCOMING, CLAIMS, PROCESSED, REJECTED = "incoming/", "claims/", "processed/", "rejected/"
REASON_SUFFIX = ".reason"


State = Literal["queued", "already-known", "rejected", "taken"]


@dataclass(frozen=True)
class QueueOutcome:
    """What became of one incoming object.

    ``taken``: another claimer holds it or finished it first; ``already-known``: admitted before (same content).
    """

    name: str
    state: State
    request_id: str | None = None
    dataset: str | None = None
    reason: str | None = None


Admission = Callable[[ForgetRequest, str], bool]
"""Admit a parsed request read from the given source; True when newly queued, False when already known; raises a
one-line ``DataError`` when refused."""


def local_admission(store: DataStore, limits: AdmissionLimits) -> Admission:
    """The local queue's admission (``DataStore.submit_request``): the checks ``request submit`` makes."""
    return lambda request, source: store.submit_request(request, source, limits)


def claimer_id() -> str:
    """Who claims: host, process and a random part (two queues in one process stay distinct)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class S3RequestQueue:
    """The queue under ``config.prefix`` of ``config.bucket``.

    Args:
        config: Bucket, prefix and claim TTL.
        endpoint_url: S3-compatible endpoint (``S3_ENDPOINT_URL``); None for AWS.
        max_bytes: Largest request object read (admission's ``max_file_bytes``).
        claimer: This claimer's identity, written into its claims.
    """

    def __init__(
        self, config: S3QueueConfig, endpoint_url: str | None, max_bytes: int, claimer: str | None = None
    ) -> None:
        self.config = config
        self.store = ObjectStore(config.bucket, endpoint_url=endpoint_url, prefix=config.prefix)
        self.max_bytes = max_bytes
        self.claimer = claimer or claimer_id()

    def check(self) -> None:
        """One ``StorageError`` line when the bucket is missing or the endpoint does not answer."""
        self.store.check_bucket()

    def incoming(self) -> list[ObjectInfo]:
        """The objects waiting under ``incoming/`` (folder markers left out), oldest name first."""
        return [info for info in self.store.objects(INCOMING) if not info.key.endswith("/")]

    def claim(self, name: str, now: datetime | None = None) -> str | None:
        """Claim ``incoming/<name>``: the claim's ETag when this claimer got it, None when another holds it (a claim
        older than ``claim_ttl_seconds`` is broken first, with a conditional delete)."""
        body = json.dumps({"claimer": self.claimer, "claimed_at": (now or datetime.now(UTC)).isoformat()}).encode()
        etag = self.store.write(CLAIMS + name, body, only_if_absent=True)
        if etag is not None:
            return etag
        existing = {info.key: info for info in self.store.objects(CLAIMS + name)}.get(CLAIMS + name)
        if existing is None:  # released between our write and our look: try once more
            return self.store.write(CLAIMS + name, body, only_if_absent=True)
        age = ((now or datetime.now(UTC)) - existing.last_modified).total_seconds()
        if age < self.config.claim_ttl_seconds or not self.store.delete(CLAIMS + name, if_match=existing.etag):
            return None
        return self.store.write(CLAIMS + name, body, only_if_absent=True)

    def release(self, name: str, etag: str) -> None:
        """Drop this claimer's claim (only if it is still ours: a conditional delete)."""
        self.store.delete(CLAIMS + name, if_match=etag)

    def drain(self, admission: Admission, now: datetime | None = None) -> list[QueueOutcome]:
        """Claim, admit and file every incoming object; one outcome per object listed.

        Raises:
            StorageError: The endpoint or bucket failed (one line); claims held are released when the endpoint still
                answers, and everything already filed stays filed.
        """
        return [self.process(info.key.removeprefix(INCOMING), admission, now) for info in self.incoming()]

    def process(self, name: str, admission: Admission, now: datetime | None = None) -> QueueOutcome:
        """Claim and file one incoming object (see the module docstring for the order of the steps)."""
        etag = self.claim(name, now)
        if etag is None:
            return QueueOutcome(name, "taken")
        try:
            try:
                payload = self.store.read(INCOMING + name, self.max_bytes)
            except ObjectMissingError:  # the previous holder finished it after our listing
                return QueueOutcome(name, "taken")
            except ObjectTooLargeError as error:
                return self._reject(name, str(error))
            source = self.store.uri(INCOMING + name)
            try:
                request = parse_request(name, payload, source)
                added = admission(request, source)
            except DataError as error:
                return self._reject(name, str(error).splitlines()[0])
            self.store.copy(INCOMING + name, PROCESSED + name)
            self.store.delete(INCOMING + name)
            state: State = "queued" if added else "already-known"
            return QueueOutcome(name, state, request.request_id, request.dataset)
        finally:
            # a claim left behind (endpoint gone) is broken after claim_ttl_seconds; the original error wins
            with contextlib.suppress(StorageError):
                self.release(name, etag)

    def _reject(self, name: str, reason: str) -> QueueOutcome:
        self.store.write(REJECTED + name + REASON_SUFFIX, (reason + "\n").encode())
        self.store.copy(INCOMING + name, REJECTED + name)
        self.store.delete(INCOMING + name)
        return QueueOutcome(name, "rejected", reason=reason)

    def reason(self, name: str) -> str | None:
        """The reason ``rejected/<name>`` was refused, or None when it was not."""
        try:
            return self.store.read(REJECTED + name + REASON_SUFFIX, 64 * 1024).decode().strip()
        except ObjectMissingError:
            return None


def parse_request(name: str, payload: bytes, source: str) -> ForgetRequest:
    """The request an object holds; one ``DataError`` line naming ``source`` when it is not a request."""
    if not name.endswith(".json"):
        raise DataError(f"forget request {source}: object name {show(name)} does not end in .json")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"forget request {source}: not UTF-8 text (byte {error.object[error.start]:#04x} at {error.start})"
        ) from None
    return ForgetRequest.parse(text, source)
