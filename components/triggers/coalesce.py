"""Coalescing: many arrivals within a window give one batch.

A burst opens with its first arrival and is due once ``window_s`` passed without a new arrival (the burst has
ended), or ``max_wait_s`` after it opened (a steady trickle still gets a batch). Pure state, no clock of its own:
the caller passes ``now`` (seconds on a monotonic clock), so tests step time by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Burst:
    """What arrived in one coalesced window: request IDs by dataset, and the data version that changed, if any."""

    requests: dict[str, tuple[str, ...]]
    data_md5: str | None
    opened_at: float
    closed_at: float
    arrivals: int

    def datasets(self, served: str) -> list[str]:
        """The datasets a batch is due for: those with requests, plus ``served`` when the data changed."""
        due = set(self.requests) | ({served} if self.data_md5 else set())
        return sorted(due)


@dataclass
class Coalescer:
    """Collects arrivals until the burst is due (see the module docstring)."""

    window_s: float
    max_wait_s: float
    _requests: dict[str, list[str]] = field(default_factory=dict)
    _data_md5: str | None = None
    _first: float | None = None
    _last: float | None = None
    _count: int = 0

    def _arrive(self, now: float) -> None:
        self._first = now if self._first is None else self._first
        self._last = now
        self._count += 1

    def request(self, now: float, dataset: str, request_id: str) -> None:
        """A request was queued for ``dataset``."""
        self._requests.setdefault(dataset, []).append(request_id)
        self._arrive(now)

    def data_changed(self, now: float, md5: str) -> None:
        """The committed data version became ``md5``."""
        self._data_md5 = md5
        self._arrive(now)

    @property
    def open(self) -> bool:
        return self._first is not None

    def due(self, now: float) -> bool:
        """Whether the open burst has ended (quiet for ``window_s``) or waited ``max_wait_s``."""
        if self._first is None or self._last is None:
            return False
        return now - self._last >= self.window_s or now - self._first >= self.max_wait_s

    def take(self, now: float) -> Burst | None:
        """The burst when it is due (and a fresh, empty one started), else None."""
        if not self.due(now) or self._first is None:
            return None
        burst = Burst(
            requests={dataset: tuple(ids) for dataset, ids in sorted(self._requests.items())},
            data_md5=self._data_md5,
            opened_at=self._first,
            closed_at=now,
            arrivals=self._count,
        )
        self._requests, self._data_md5, self._first, self._last, self._count = {}, None, None, None, 0
        return burst
