"""Score confidence intervals for proportions and their differences, in proportion units (0-1).

Certification decides on batches of a few dozen to a few thousand samples, where a Wald interval (``p ± z·se``)
collapses to zero width at 0 % or 100 % and undercovers near the bounds. Every interval here is built from Wilson
score intervals instead, which stay inside ``[0, 1]``, never have zero width and keep close to nominal coverage
at small ``n``:

- ``wilson_interval``: one proportion (Wilson 1927).
- ``newcombe_interval``: difference of two *independent* proportions, Newcombe's hybrid score interval
  (method 10 of Newcombe 1998, "Interval estimation for the difference between independent proportions").
- ``paired_difference_interval``: difference of two proportions measured on the *same* samples, Newcombe's
  square-and-add interval for paired data (method 10 of Newcombe 1998, "Improved confidence intervals for the
  difference between binomial proportions based on paired data"), with the correlation estimate as implemented in
  Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), chapter 8.

Every function returns ``(estimate, lower, upper)`` as plain floats. An empty sample carries no information, so it
gets the vacuous interval (``[0, 1]`` for a proportion, ``[-1, 1]`` for a difference) rather than ``nan``, which
would silently pass or fail whatever compares with it.
"""

from __future__ import annotations

import math
from statistics import NormalDist

Interval = tuple[float, float, float]


def _z(confidence: float) -> float:
    """Two-sided standard normal quantile for ``confidence`` (1.96 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _check_count(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _check_binomial(successes: int, n: int, what: str = "") -> None:
    _check_count(f"{what}successes", successes)
    _check_count(f"{what}n", n)
    if successes > n:
        raise ValueError(f"{what}successes ({successes}) exceed the number of trials ({n})")


def _wilson_bounds(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson bounds for validated counts with ``n > 0``."""
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # Clamped: at p = 0 or 1 the bound equals 0 or 1 exactly in real arithmetic but may miss it by one ulp.
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for one binomial proportion.

    Args:
        successes: Number of successes, ``0 <= successes <= n``.
        n: Number of trials, ``>= 0``.
        confidence: Two-sided confidence level, strictly between 0 and 1.

    Returns:
        ``(estimate, lower, upper)`` with ``estimate = successes / n`` and ``0 <= lower <= estimate <= upper <= 1``.
        For ``n == 0`` the vacuous interval ``(0.0, 0.0, 1.0)``: nothing was observed, so every proportion is
        possible (the estimate 0 is a convention, not a measurement).

    Raises:
        ValueError: on negative counts, ``successes > n`` or a confidence level outside ``(0, 1)``.
    """
    z = _z(confidence)
    _check_binomial(successes, n)
    if n == 0:
        return 0.0, 0.0, 1.0
    lower, upper = _wilson_bounds(successes, n, z)
    return successes / n, lower, upper


def newcombe_interval(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    confidence: float = 0.95,
) -> Interval:
    """Newcombe's hybrid score interval for ``p_a - p_b``, two independent proportions.

    Method 10 of Newcombe (1998): with Wilson bounds ``(l_a, u_a)`` and ``(l_b, u_b)`` at the same level,
    ``lower = d - sqrt((p_a - l_a)^2 + (u_b - p_b)^2)`` and ``upper = d + sqrt((u_a - p_a)^2 + (p_b - l_b)^2)``.

    Args:
        successes_a: Successes in the first sample.
        n_a: Size of the first sample.
        successes_b: Successes in the second sample.
        n_b: Size of the second sample.
        confidence: Two-sided confidence level, strictly between 0 and 1.

    Returns:
        ``(estimate, lower, upper)`` with ``estimate = p_a - p_b`` and ``-1 <= lower <= estimate <= upper <= 1``.
        If either sample is empty the difference is unconstrained: the vacuous interval ``(0.0, -1.0, 1.0)``.

    Raises:
        ValueError: on negative counts, successes above their sample size or a confidence level outside ``(0, 1)``.
    """
    z = _z(confidence)
    _check_binomial(successes_a, n_a, "first sample's ")
    _check_binomial(successes_b, n_b, "second sample's ")
    if n_a == 0 or n_b == 0:
        return 0.0, -1.0, 1.0
    p_a, p_b = successes_a / n_a, successes_b / n_b
    l_a, u_a = _wilson_bounds(successes_a, n_a, z)
    l_b, u_b = _wilson_bounds(successes_b, n_b, z)
    estimate = p_a - p_b
    lower = estimate - math.hypot(p_a - l_a, u_b - p_b)
    upper = estimate + math.hypot(u_a - p_a, p_b - l_b)
    return estimate, max(-1.0, lower), min(1.0, upper)


def paired_difference_interval(
    both: int,
    first_only: int,
    second_only: int,
    neither: int,
    confidence: float = 0.95,
) -> Interval:
    """Newcombe's square-and-add interval for ``p_1 - p_2`` measured on the same ``n`` samples.

    The counts are the paired 2x2 table: ``both`` samples succeed under both conditions, ``first_only`` only
    under the first, ``second_only`` only under the second, ``neither`` under none. The estimate is
    ``(first_only - second_only) / n``. Pairing matters: two models that agree on most samples have a much
    narrower interval for their accuracy difference than two independent samples would give.

    Method 10 of Newcombe (1998, paired data): Wilson bounds of both margins combined by square-and-add with a
    correction for their correlation ``phi``. As in Fagerland et al. (2017), with
    ``A = both * neither - first_only * second_only``: ``phi = (A - n/2) / sqrt(margins)`` when ``A > n/2``, ``0``
    when ``0 <= A <= n/2`` and ``A / sqrt(margins)`` when ``A < 0``; ``phi = 0`` when any margin is empty. For
    the Cavo et al. (2012) table ``(59, 6, 16, 80)`` it gives their published ``-0.0621 [-0.1186, -0.0046]`` at
    95 %.

    Args:
        both: Samples that succeed under both conditions.
        first_only: Samples that succeed under the first condition only.
        second_only: Samples that succeed under the second condition only.
        neither: Samples that succeed under neither.
        confidence: Two-sided confidence level, strictly between 0 and 1.

    Returns:
        ``(estimate, lower, upper)`` with ``-1 <= lower <= estimate <= upper <= 1``. For ``n == 0`` the vacuous
        interval ``(0.0, -1.0, 1.0)``.

    Raises:
        ValueError: on a negative count or a confidence level outside ``(0, 1)``.
    """
    z = _z(confidence)
    for name, value in (("both", both), ("first_only", first_only), ("second_only", second_only), ("neither", neither)):
        _check_count(name, value)
    n = both + first_only + second_only + neither
    if n == 0:
        return 0.0, -1.0, 1.0
    first, second = both + first_only, both + second_only
    p_1, p_2 = first / n, second / n
    l_1, u_1 = _wilson_bounds(first, n, z)
    l_2, u_2 = _wilson_bounds(second, n, z)

    margins = first * (n - first) * second * (n - second)
    a = both * neither - first_only * second_only
    if margins == 0 or 0 <= a <= n / 2:
        phi = 0.0
    elif a > n / 2:
        phi = (a - n / 2) / math.sqrt(margins)
    else:
        phi = a / math.sqrt(margins)

    estimate = p_1 - p_2
    # max(0, ...): the radicand is a sum of squares minus a correlation term and cannot be negative for
    # |phi| <= 1, but rounding could take it a hair below zero when the two terms nearly cancel.
    lower = estimate - math.sqrt(max(0.0, (p_1 - l_1) ** 2 + (u_2 - p_2) ** 2 - 2 * phi * (p_1 - l_1) * (u_2 - p_2)))
    upper = estimate + math.sqrt(max(0.0, (p_2 - l_2) ** 2 + (u_1 - p_1) ** 2 - 2 * phi * (p_2 - l_2) * (u_1 - p_1)))
    return estimate, max(-1.0, lower), min(1.0, upper)
