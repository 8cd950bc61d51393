"""One subprocess timed from outside: its wall seconds and peak resident memory (``/usr/bin/time -v``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Timed:
    wall_seconds: float
    peak_rss_mb: float | None
    stdout: str
    stderr: str = ""


def timed(command: Sequence[str], cwd: Path) -> Timed:
    """Run ``command`` under ``/usr/bin/time -v``; raise with its output tail when it fails."""
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    wrapped = [timer, "-v", *command] if timer else list(command)
    started = time.perf_counter()
    completed = subprocess.run(wrapped, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-4000:])
        raise SystemExit(f"{' '.join(command[1:])} failed with status {completed.returncode}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr)
    return Timed(wall, int(peak.group(1)) / 1024 if peak else None, completed.stdout, completed.stderr)
