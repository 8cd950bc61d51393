"""Bounded retries with backoff for the faults a second try can cure: a SQLite store locked by another process for a
moment, an S3 endpoint that drops a connection. Everything else (a full disk, a file where a directory belongs, a
wrong credential) fails on the first try: retrying would only delay the same error.

The adapters retry idempotent writes only (setting an alias or a tag, pushing content-addressed objects); a write
that creates something new (registering a model version) is never retried blindly.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

ATTEMPTS = 3
"""How many times a transient fault is tried in all."""

BACKOFF_SECONDS = (0.5, 1.0, 2.0)
"""The wait before the 2nd, 3rd (and 4th) attempt."""


def retrying(
    operation: Callable[[], T],
    transient: Callable[[BaseException], bool],
    attempts: int = ATTEMPTS,
    backoff: tuple[float, ...] = BACKOFF_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``operation`` until it returns, at most ``attempts`` times, while its error is ``transient``.

    Raises:
        Exception: The last error, unchanged: a transient one after ``attempts`` tries, any other one at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except Exception as error:
            if attempt >= attempts or not transient(error):
                raise
            sleep(backoff[min(attempt - 1, len(backoff) - 1)])
    raise AssertionError("unreachable")  # pragma: no cover


def chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and its causes (``__cause__``, else ``__context__``), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def sqlite_locked(error: BaseException) -> bool:
    """Whether SQLite said another connection holds the database ("database is locked", "database table is
    locked"); MLflow wraps it in an ``MlflowException`` or lets SQLAlchemy's ``OperationalError`` through."""
    return any("database is locked" in str(e) or "database table is locked" in str(e) for e in chain(error))


_CONNECTION_ERRORS = {
    "EndpointConnectionError",  # botocore
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ClientConnectorError",  # aiohttp (s3fs)
    "ServerDisconnectedError",
}


def connection_failed(error: BaseException) -> bool:
    """Whether the error is a refused, reset or timed-out network connection (an endpoint down or flaky)."""
    for e in chain(error):
        if isinstance(e, ConnectionError | TimeoutError) or type(e).__name__ in _CONNECTION_ERRORS:
            return True
    return False


def root_cause(error: BaseException) -> BaseException:
    """The innermost error of ``error``'s chain."""
    *_, last = chain(error)
    return last


def os_error(error: BaseException) -> OSError | None:
    """The first ``OSError`` in ``error``'s chain that is not a network error (a disk or file-system fault)."""
    for e in chain(error):
        if isinstance(e, OSError) and not isinstance(e, ConnectionError | TimeoutError):
            return e
    return None


def storage_state(error: OSError) -> str:
    """``full`` for a full disk or quota, else ``not writable``."""
    return "full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "not writable"
