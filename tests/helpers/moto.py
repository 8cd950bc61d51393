"""``running_moto``: a real ``moto_server`` on a free loopback port for the S3 tests, stopped by PID afterwards.

Used by the session fixtures ``moto_url`` and ``s3_bucket`` of ``tests/components/adapters/conftest.py`` and
``tests/components/stages/conftest.py``. The caller sets dummy ``AWS_*`` credentials (moto accepts any).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from components.bench.prefect_server import stop_process

DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
UNSET_AWS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _moto_executable() -> str:
    candidate = Path(sys.executable).parent / "moto_server"
    found = str(candidate) if candidate.exists() else shutil.which("moto_server")
    if found is None:
        pytest.fail("moto_server not found next to the interpreter or on PATH (install moto[server])")
    return found


@contextmanager
def running_moto(log_path: Path) -> Iterator[str]:
    """Start ``moto_server -H 127.0.0.1 -p <free port>``, wait until it answers, yield its URL, stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [_moto_executable(), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"moto_server exited with {process.returncode}: {log_path.read_text()[-500:]}")
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not answer at {url} within 30 s")
                time.sleep(0.1)
        yield url
    finally:
        stop_process(process, timeout=10)


@contextmanager
def dummy_aws_credentials() -> Iterator[None]:
    """Dummy ``AWS_*`` credentials (moto accepts any) and no profile or endpoint from the machine."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in DUMMY_AWS.items():
            patch.setenv(key, value)
        for key in UNSET_AWS:
            patch.delenv(key, raising=False)
        yield


def fresh_bucket(moto_url: str, prefix: str) -> str:
    """Create a uniquely named bucket ``<prefix>-<12 hex>`` on the moto server; return its name."""
    import uuid

    from components.adapters.storage import ObjectStore

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    ObjectStore(name, endpoint_url=moto_url).ensure_bucket()
    return name
