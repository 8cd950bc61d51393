"""``one_line``: what every adapter puts after the colon of its error messages."""

from __future__ import annotations

import pytest

from components.adapters.errors import one_line


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("disk full"), "disk full"),
        (ValueError("  first line\nTraceback (most recent call last):\n  more"), "first line"),
        (KeyError("missing"), "'missing'"),
        (OSError(), "OSError"),
        (RuntimeError("   \n  "), "RuntimeError"),
    ],
    ids=["plain", "multi-line", "key-error-repr", "no-message", "blank-message"],
)
def test_one_line_is_the_first_line_or_the_type_name(error: BaseException, expected: str) -> None:
    assert one_line(error) == expected
