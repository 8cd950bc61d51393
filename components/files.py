"""Atomic file writes: every stored artifact is either the old version or the new one, never half-written."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import torch


def write_atomically(path: Path, payload: str | bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, then rename it over ``path``.

    The same folder keeps the rename on one filesystem, where it is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload.encode() if isinstance(payload, str) else payload)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files ``write_atomically`` leaves in ``folder`` when its process is killed mid-write
    (``.<name>.<random>.tmp``); the files they were meant to replace are untouched. Returns what was removed."""
    removed = [path for path in Path(folder).glob(".*.tmp") if path.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def write_torch(payload: object, path: Path) -> None:
    """``torch.save`` through ``write_atomically``: an interrupted run never leaves a half-written model file."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomically(path, buffer.getvalue())
