"""A real Prefect API server on loopback for a benchmark, as a team runs one (``prefect server start``).

Without ``PREFECT_API_URL`` every ``mixunlearn run`` boots its own temporary server (10-15 s on 2 cores, overlapped
with the imports). A deployment that serves deletions (``mixunlearn serve``, process workers) talks to a server that
is already up, so a benchmark of that path must not charge each batch for a boot. The server gets its own home and
SQLite database under ``work``; this module never imports Prefect (it runs the CLI and polls ``/api/health``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Terminate ``process``; kill it if it has not exited after ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def server_environment(work: Path, api_url: str) -> dict[str, str]:
    """What a client (and the server) needs: the API URL, a private home and database, no telemetry."""
    return {
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(work / "prefect-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{work / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
    }


@contextmanager
def running_prefect_server(work: Path, start_timeout: float = 180.0) -> Iterator[dict[str, str]]:
    """Start ``prefect server start`` on a free loopback port; yield the environment its clients need; stop it."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    environment = server_environment(work, api_url)
    prefect = Path(sys.executable).parent / "prefect"
    with (work / "prefect-server.log").open("wb") as log:
        process = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=work,
            env={**os.environ, **environment},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + start_timeout
            while not answers(f"{api_url}/health"):
                if process.poll() is not None:
                    raise SystemExit(f"the Prefect server exited with {process.returncode}; see {log.name}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"the Prefect server did not answer within {start_timeout:.0f} s; see {log.name}")
                time.sleep(0.5)
            yield environment
        finally:
            stop_process(process)
