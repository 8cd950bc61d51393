"""Stage and epoch observers for a flow run in this process: what the CLI shows while a flow runs.

The CLI installs an observer with ``observe(...)`` around the flow call; every task carries the state hooks in
``STAGE_HOOKS`` (through ``tasks.TASK_OPTIONS``), which report each finished task with its wall seconds, and the
training and unlearning loops get ``epoch_callbacks()`` next to their MLflow callback. Nothing here prints: with no
observer installed (a served deployment, the tests) the hooks do nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.runtime import Callback

# (stage name, wall seconds, "completed" | "failed")
StageCallback = Callable[[str, float, str], None]


@dataclass
class Observer:
    """What the caller wants to hear about: finished stages and the loops' events."""

    on_stage: StageCallback | None = None
    callbacks: Sequence[Callback] = ()
    started: dict[Any, float] = field(default_factory=dict)


_lock = threading.Lock()
_observer: Observer | None = None  # process-wide: Prefect may run tasks in other threads


@contextlib.contextmanager
def observe(on_stage: StageCallback | None = None, callbacks: Sequence[Callback] = ()) -> Iterator[Observer]:
    """Report the stages and loop events of the flows run inside this block."""
    global _observer
    with _lock:
        previous, _observer = _observer, Observer(on_stage, tuple(callbacks))
        current = _observer
    try:
        yield current
    finally:
        with _lock:
            _observer = previous


def epoch_callbacks() -> list[Callback]:
    """The installed observer's loop callbacks (none without an observer)."""
    observer = _observer
    return list(observer.callbacks) if observer is not None else []


def _running(task: Any, task_run: Any, state: Any) -> None:
    observer = _observer
    if observer is not None:
        observer.started[task_run.id] = time.perf_counter()


def _finished(outcome: str) -> Callable[[Any, Any, Any], None]:
    def hook(task: Any, task_run: Any, state: Any) -> None:
        observer = _observer
        if observer is None or observer.on_stage is None:
            return
        started = observer.started.pop(task_run.id, None)
        seconds = time.perf_counter() - started if started is not None else 0.0
        observer.on_stage(task.name, seconds, outcome)

    return hook


STAGE_HOOKS: Mapping[str, list[Callable[[Any, Any, Any], None]]] = {
    "on_running": [_running],
    "on_completion": [_finished("completed")],
    "on_failure": [_finished("failed")],
}
