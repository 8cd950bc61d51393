"""The ephemeral Prefect API server, booted while the CLI is still importing the pipeline.

Without ``PREFECT_API_URL`` every flow run starts its own temporary API server in a subprocess (uvicorn and the
Prefect server imports: 10-15 s on a busy 2-core machine). The CLI meanwhile imports the pipeline (torch, MLflow,
Great Expectations: another 5-10 s). Started from a thread as soon as a run is known to have work, the two overlap
instead of adding up. Prefect's ``SubprocessASGIServer`` is a per-port singleton whose ``start()`` is a no-op once it
runs, so the flow's own client then finds it ready.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pipelines.concurrency import uses_ephemeral_server


def boot_ephemeral_server() -> Callable[[], None]:
    """Start the ephemeral API server in the background when one is needed; return the wait for it to be healthy.

    The wait must come before any Prefect client call: ``start()`` marks the server running before it answers. A
    failed start is left to the flow's own client, which retries it and reports the error as it always has.
    """
    if not uses_ephemeral_server():
        return lambda: None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()

    def start() -> None:
        try:
            server.start()
        except Exception:  # the flow's client starts it again and reports what went wrong
            server.running = False

    thread = threading.Thread(target=start, name="prefect-ephemeral-server", daemon=True)
    thread.start()
    return thread.join
