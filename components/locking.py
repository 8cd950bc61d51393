"""One deletion batch per registered model at a time on this machine: an OS file lock per model.

``mixunlearn run`` and ``mixunlearn retrain-audit`` hold ``<root>/.mixunlearn/locks/<model>.lock`` (``fcntl.flock``)
from before the flow starts until it ends. The kernel releases the lock when its holder exits, crashed or not, so a
stale lock file never blocks anyone. The holder writes its pid into the file so that a waiter can say whom it waits
for. Across machines and Prefect workers the flows also hold a Prefect global concurrency limit of the same name
(``pipelines/concurrency.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_DIR = Path(".mixunlearn") / "locks"


class LockBusyError(Exception):
    """The model's lock is held by another process and the caller asked not to wait."""

    def __init__(self, model: str, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"{model} is locked by {holder}: a deletion batch or audit is running (retry later)")
        self.model = model
        self.pid = pid


def lock_path(root: Path, model: str) -> Path:
    """``<root>/.mixunlearn/locks/<model>.lock``; characters outside ``[A-Za-z0-9._-]`` become ``_``."""
    return root / LOCK_DIR / f"{re.sub(r'[^A-Za-z0-9._-]', '_', model)}.lock"


@contextlib.contextmanager
def model_lock(
    root: Path, model: str, wait: bool = True, on_wait: Callable[[int | None], None] | None = None
) -> Iterator[Path]:
    """Hold the exclusive lock of ``model`` under ``root``.

    Args:
        root: Project root.
        model: Registered model name.
        wait: Block until the holder releases the lock; when False, raise ``LockBusyError`` instead.
        on_wait: Called once with the holder's pid (None when unknown) before blocking.

    Yields:
        The lock file's path.
    """
    path = lock_path(root, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = read_holder(path)
            if not wait:
                raise LockBusyError(model, pid) from None
            if on_wait is not None:
                on_wait(pid)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield path
        finally:
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
                handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_holder(path: Path) -> int | None:
    """The pid written by the lock's current holder, or None."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
