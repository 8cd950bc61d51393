"""Canonical content hashes: key order does not matter, values do, and unserialisable values are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.hashing import canonical_sha256


def test_key_order_does_not_change_the_digest_and_values_do() -> None:
    config = {"a": 1, "b": {"c": (1, 2), "d": Path("x/y"), "e": np.float32(0.5)}}
    reordered = {"b": {"e": np.float32(0.5), "d": Path("x/y"), "c": [1, 2]}, "a": 1}
    assert canonical_sha256(reordered) == canonical_sha256(config)
    assert canonical_sha256({**config, "a": 2}) != canonical_sha256(config)
    assert len(canonical_sha256(config)) == 64


def test_an_unserialisable_value_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        canonical_sha256({"bad": object()})
