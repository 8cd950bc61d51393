"""The trigger watcher ``mixunlearn serve`` runs beside its deployments: the S3 request queue and data changes.

Every ``triggers.poll_seconds`` it drains the S3 request queue into the local queue (``components/triggers/
s3_queue.py``: claim, the same admission as ``request submit``, processed/ or rejected/) and reads the committed
data version (``components/triggers/data_change.py``). Arrivals are coalesced (``components/triggers/coalesce.py``):
once a burst is quiet for ``coalesce_seconds`` (or ``max_wait_seconds`` after it opened) the watcher emits ONE
``BATCH_DUE_EVENT`` per dataset, which the ``<dataset>-on-change`` deployment's trigger turns into one batch run.
The batch takes every pending request, so a burst of any size costs one batch.

A failing S3 endpoint is logged once per change of state (one line), and the watcher keeps polling; ``serve``
checks the bucket before it starts, so a missing bucket stops it with one line instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prefect.events import emit_event

from components.adapters.services import Endpoints, open_versioning
from components.adapters.storage import StorageError
from components.adapters.versioning import VersioningError
from components.cli import admission_limits
from components.config import PipelineConfig
from components.deletion.store import DataStore
from components.triggers.coalesce import Burst, Coalescer
from components.triggers.data_change import DataChangeWatch
from components.triggers.s3_queue import QueueOutcome, S3RequestQueue, local_admission

BATCH_DUE_EVENT = "mixunlearn.batch.due"
logger = logging.getLogger("mixunlearn.triggers")

Emit = Callable[[str, Burst], None]


def emit_batch_due(dataset: str, burst: Burst) -> None:
    """Announce that a batch is due for ``dataset``: what arrived and in which window."""
    emit_event(
        event=BATCH_DUE_EVENT,
        resource={"prefect.resource.id": f"mixunlearn.dataset.{dataset}"},
        payload={
            "request_ids": list(burst.requests.get(dataset, ())),
            "data_md5": burst.data_md5,
            "arrivals": burst.arrivals,
            "window_seconds": round(burst.closed_at - burst.opened_at, 3),
        },
    )


def open_queue(config: PipelineConfig) -> S3RequestQueue | None:
    """The configured S3 request queue (endpoint from ``S3_ENDPOINT_URL``), or None when it is off."""
    if config.triggers.s3_queue is None:
        return None
    limits = admission_limits(config)
    return S3RequestQueue(config.triggers.s3_queue, Endpoints().s3_endpoint_url, limits.max_file_bytes)


@dataclass
class TriggerWatcher:
    """One poll at a time (``poll``), or a loop in a thread (``start``). ``clock`` is monotonic seconds."""

    config: PipelineConfig
    root: Path
    emit: Emit = emit_batch_due
    clock: Callable[[], float] = time.monotonic
    queue: S3RequestQueue | None = None
    coalescer: Coalescer = field(init=False)
    data_watch: DataChangeWatch | None = field(init=False)
    failing: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        triggers = self.config.triggers
        self.coalescer = Coalescer(triggers.coalesce_seconds, triggers.max_wait_seconds)
        self.data_watch = DataChangeWatch(self.root, open_versioning(self.root)) if triggers.data_change else None
        self.store = DataStore(self.root / "data")
        self.admission = local_admission(self.store, admission_limits(self.config))

    def check(self) -> None:
        """Fail with one line (``StorageError``) when the configured queue's bucket or endpoint is unusable."""
        if self.queue is not None:
            self.queue.check()

    def poll(self) -> list[Burst]:
        """Drain the queue, look at the data version, and emit the bursts that are due; returns them."""
        now = self.clock()
        for outcome in self._drain():
            if outcome.state == "queued" and outcome.dataset and outcome.request_id:
                logger.info("queued request %s from the S3 queue (%s)", outcome.request_id, outcome.name)
                self.coalescer.request(now, outcome.dataset, outcome.request_id)
            elif outcome.state == "rejected":
                logger.warning("rejected S3 request object %s: %s", outcome.name, outcome.reason)
        if self.data_watch is not None:
            try:
                changed = self.data_watch.poll()
            except VersioningError as error:
                self._failed(f"cannot read the committed data version: {error}")
                changed = None
            if changed is not None:
                logger.info("data version %s committed (%s)", changed.md5, changed.subject)
                self.coalescer.data_changed(now, changed.md5)
        burst = self.coalescer.take(self.clock())
        if burst is None:
            return []
        for dataset in burst.datasets(self.config.base.dataset):
            self.emit(dataset, burst)
        return [burst]

    def _drain(self) -> list[QueueOutcome]:
        if self.queue is None:
            return []
        try:
            outcomes = self.queue.drain(self.admission)
        except StorageError as error:
            self._failed(f"S3 request queue: {error}")
            return []
        if self.failing is not None:
            logger.warning("S3 request queue answers again")
            self.failing = None
        return outcomes

    def _failed(self, line: str) -> None:
        if line != self.failing:  # one line per change of state, not one per poll
            logger.error(line)
            self.failing = line

    def start(self, stop: threading.Event) -> threading.Thread:
        """Poll every ``triggers.poll_seconds`` in a daemon thread until ``stop`` is set."""

        def loop() -> None:
            while not stop.is_set():
                try:
                    self.poll()
                except Exception as error:  # the watcher must outlive one bad poll; the next poll tries again
                    self._failed(f"trigger watcher: {error.__class__.__name__}: {error}")
                stop.wait(self.config.triggers.poll_seconds)

        thread = threading.Thread(target=loop, name="mixunlearn-trigger-watcher", daemon=True)
        thread.start()
        return thread


def show_watcher_lines() -> None:
    """The watcher's lines (requests queued or rejected, failures) on stderr, as Prefect shows its own."""
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # Prefect's root handler would print each line a second time


def build_watcher(config: PipelineConfig, root: Path, emit: Emit = emit_batch_due) -> TriggerWatcher:
    """The watcher for the project at ``root``, its queue checked (one ``StorageError`` line when unusable)."""
    show_watcher_lines()
    watcher = TriggerWatcher(config, root.resolve(), emit=emit, queue=open_queue(config))
    watcher.check()
    return watcher
