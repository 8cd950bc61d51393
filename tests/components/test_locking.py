"""The per-model file lock: a second process waits for it (saying for whom) or, asked not to wait, fails at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from components.cli import app, failure_line
from components.locking import LockBusyError, lock_path, model_lock, read_holder

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "mixunlearn-digits"

HOLDER = """
import sys, time
from pathlib import Path
from components.locking import model_lock
root, release = Path(sys.argv[1]), Path(sys.argv[2])
with model_lock(root, sys.argv[3]):
    (root / "held").write_text("yes")
    while not release.exists():
        time.sleep(0.02)
"""


def wait_for(path: Path, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Another process holding the lock of ``MODEL`` under ``tmp_path`` until ``release`` exists."""
    release = tmp_path / "release"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), str(release), MODEL], cwd=REPO_ROOT, env=os.environ.copy()
    )
    try:
        wait_for(tmp_path / "held")
        yield holder, release
    finally:
        release.touch()
        holder.wait(timeout=30)


def test_lock_records_the_holder_and_clears_it_on_release(tmp_path: Path) -> None:
    with model_lock(tmp_path, "mixunlearn/odd name") as path:
        assert path == tmp_path / ".mixunlearn" / "locks" / "mixunlearn_odd_name.lock"
        assert read_holder(path) == os.getpid()
    assert read_holder(path) is None


def test_no_wait_fails_at_once_naming_the_holder(tmp_path: Path, held: tuple[subprocess.Popen[bytes], Path]) -> None:
    holder, _ = held
    started = time.monotonic()
    with pytest.raises(LockBusyError) as error, model_lock(tmp_path, MODEL, wait=False):
        pass
    assert time.monotonic() - started < 5
    assert error.value.pid == holder.pid
    assert f"pid {holder.pid}" in str(error.value)


def test_second_process_waits_until_the_first_releases(
    tmp_path: Path, held: tuple[subprocess.Popen[bytes], Path]
) -> None:
    holder, release = held
    waited_for: list[int | None] = []

    def on_wait(pid: int | None) -> None:
        waited_for.append(pid)
        release.touch()  # the holder lets go only once we are waiting

    with model_lock(tmp_path, MODEL, on_wait=on_wait) as path:
        assert read_holder(path) == os.getpid()
        assert holder.wait(timeout=30) == 0
    assert waited_for == [holder.pid]


def test_crashed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), str(tmp_path / "never"), MODEL], cwd=REPO_ROOT
    )
    wait_for(tmp_path / "held")
    holder.kill()
    holder.wait(timeout=30)
    assert read_holder(lock_path(tmp_path, MODEL)) == holder.pid  # the file remains, the lock does not
    with model_lock(tmp_path, MODEL, wait=False) as path:
        assert read_holder(path) == os.getpid()


@pytest.mark.parametrize("command", ["run", "retrain-audit"])
def test_cli_no_wait_exits_3_with_one_line(
    tmp_path: Path, held: tuple[subprocess.Popen[bytes], Path], command: str
) -> None:
    holder, _ = held
    result = CliRunner().invoke(
        app, [command, "--root", str(tmp_path), "--params", str(REPO_ROOT / "params.yaml"), "--no-wait"]
    )
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: mixunlearn-digits is locked by pid ")
    assert str(holder.pid) in lines[0]


def test_failure_line_names_the_root_cause() -> None:
    try:
        try:
            raise OSError("database is locked\nsecond line")
        except OSError as cause:
            raise RuntimeError("could not register model mixunlearn-digits") from cause
    except RuntimeError as error:
        line = failure_line(error)
    assert line == ("RuntimeError: could not register model mixunlearn-digits (cause: OSError: database is locked)")
    assert failure_line(KeyError("x")) == "KeyError: 'x'"
