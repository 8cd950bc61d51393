"""Content hashes of configuration values: the same mapping, whatever its key order, gives the same digest.

Kept free of any SDK so that cache keys (the bench's model cache, the registry's reference key) cost no import of
the tracking stack.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def canonical_sha256(value: Mapping[str, Any]) -> str:
    """sha256 hex digest of ``value``'s canonical JSON (sorted keys, no whitespace).

    Raises:
        ValueError: if a value is not JSON-serialisable (after tuples, paths and numpy scalars are converted).
    """
    canonical = json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _jsonable(value: Any) -> Any:
    """Convert tuples, paths and numpy scalars to JSON types, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"config value of type {type(value).__name__} is not JSON-serialisable: {value!r}")


def file_md5(path: Path) -> str:
    """md5 hex digest of a file's bytes, read in 1 MiB blocks: DVC 3's per-file hash, for comparing with its records."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
