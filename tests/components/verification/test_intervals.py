"""Tests for ``components.verification.intervals`` against published values and by-construction properties."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from components.verification.intervals import newcombe_interval, paired_difference_interval, wilson_interval


def test_wilson_matches_textbook_value() -> None:
    # textbook example (Newcombe 1998, Altman et al. "Statistics with Confidence"): 81/263 -> 0.2553 to 0.3662 at 95 %
    estimate, lower, upper = wilson_interval(81, 263, 0.95)
    assert estimate == pytest.approx(81 / 263)
    assert lower == pytest.approx(0.2553, abs=1e-4)
    assert upper == pytest.approx(0.3662, abs=1e-4)


def test_newcombe_matches_published_example() -> None:
    # Newcombe (1998), method 10: 56/70 - 48/80 -> 0.0524 to 0.3339 at 95 %
    estimate, lower, upper = newcombe_interval(56, 70, 48, 80, 0.95)
    assert estimate == pytest.approx(0.2)
    assert lower == pytest.approx(0.0524, abs=1e-4)
    assert upper == pytest.approx(0.3339, abs=1e-4)


def test_paired_matches_published_example() -> None:
    # Fagerland, Lydersen & Laake (2017), Cavo et al. (2012) table: -0.0621 (-0.1186 to -0.0046)
    estimate, lower, upper = paired_difference_interval(59, 6, 16, 80, 0.95)
    assert estimate == pytest.approx(-10 / 161)
    assert lower == pytest.approx(-0.1186, abs=1e-4)
    assert upper == pytest.approx(-0.0046, abs=1e-4)


@pytest.mark.parametrize(("successes", "n"), [(0, 1), (0, 50), (1, 50), (25, 50), (49, 50), (50, 50), (3, 7)])
def test_wilson_contains_estimate_and_stays_in_unit_interval(successes: int, n: int) -> None:
    estimate, lower, upper = wilson_interval(successes, n, 0.95)
    assert 0.0 <= lower <= estimate <= upper <= 1.0
    assert upper > lower  # never zero width, even at 0 % or 100 %


@pytest.mark.parametrize(
    ("a", "n_a", "b", "n_b"), [(0, 10, 10, 10), (10, 10, 0, 10), (5, 10, 5, 10), (1, 3, 200, 400), (0, 1, 0, 1)]
)
def test_newcombe_contains_estimate_and_stays_in_bounds(a: int, n_a: int, b: int, n_b: int) -> None:
    estimate, lower, upper = newcombe_interval(a, n_a, b, n_b, 0.95)
    assert -1.0 <= lower <= estimate <= upper <= 1.0
    assert estimate == pytest.approx(a / n_a - b / n_b)


@pytest.mark.parametrize(
    "table", [(0, 0, 0, 10), (10, 0, 0, 0), (0, 10, 0, 0), (0, 0, 10, 0), (5, 0, 0, 5), (3, 4, 1, 2), (40, 1, 9, 0)]
)
def test_paired_contains_estimate_and_stays_in_bounds(table: tuple[int, int, int, int]) -> None:
    estimate, lower, upper = paired_difference_interval(*table, confidence=0.95)
    assert -1.0 <= lower <= estimate <= upper <= 1.0
    assert estimate == pytest.approx((table[1] - table[2]) / sum(table))


def test_intervals_narrow_as_n_grows() -> None:
    small, large = wilson_interval(30, 100), wilson_interval(3000, 10000)
    assert large[2] - large[1] < (small[2] - small[1]) / 5
    small, large = newcombe_interval(30, 100, 20, 100), newcombe_interval(3000, 10000, 2000, 10000)
    assert large[2] - large[1] < (small[2] - small[1]) / 5
    small, large = paired_difference_interval(20, 10, 5, 65), paired_difference_interval(2000, 1000, 500, 6500)
    assert large[2] - large[1] < (small[2] - small[1]) / 5


def test_higher_confidence_gives_wider_interval() -> None:
    _, lower_90, upper_90 = newcombe_interval(30, 60, 20, 60, 0.90)
    _, lower_99, upper_99 = newcombe_interval(30, 60, 20, 60, 0.99)
    assert lower_99 < lower_90
    assert upper_90 < upper_99


def test_empty_samples_give_vacuous_intervals() -> None:
    assert wilson_interval(0, 0) == (0.0, 0.0, 1.0)
    assert newcombe_interval(0, 0, 3, 5) == (0.0, -1.0, 1.0)
    assert newcombe_interval(3, 5, 0, 0) == (0.0, -1.0, 1.0)
    assert paired_difference_interval(0, 0, 0, 0) == (0.0, -1.0, 1.0)


def test_identical_paired_outcomes_center_on_zero() -> None:
    # no discordant pairs: the estimate is exactly 0 and the interval brackets it
    estimate, lower, upper = paired_difference_interval(80, 0, 0, 20)
    assert estimate == 0.0
    assert lower < 0.0 < upper


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: wilson_interval(-1, 5), "successes must be >= 0"),
        (lambda: wilson_interval(6, 5), "exceed"),
        (lambda: wilson_interval(1, -5), "n must be >= 0"),
        (lambda: wilson_interval(1, 5, 1.0), "confidence"),
        (lambda: wilson_interval(1, 5, 0.0), "confidence"),
        (lambda: newcombe_interval(1, 5, 7, 6), "second sample's successes"),
        (lambda: newcombe_interval(1, 5, 1, 6, 1.5), "confidence"),
        (lambda: paired_difference_interval(1, -1, 0, 0), "first_only must be >= 0"),
        (lambda: paired_difference_interval(1, 1, 0, 0, -0.5), "confidence"),
    ],
)
def test_invalid_inputs_raise(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
