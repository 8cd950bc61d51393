"""Tests for ``components.verification.mia`` on constructed outputs whose answer is known."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from components.verification.mia import laf_asr, laf_asr_balanced, salun_mia_efficacy
from components.verification.predictions import Predictions

K = 10

Attack = Callable[..., float]


def _from_confidence(p_y: np.ndarray, rng: np.random.Generator) -> Predictions:
    """Softmax rows whose true-label probability is ``p_y``, the rest spread evenly over the other classes."""
    labels = rng.integers(0, K, size=len(p_y))
    probs = np.repeat(((1.0 - p_y) / (K - 1))[:, None], K, axis=1)
    probs[np.arange(len(p_y)), labels] = p_y
    return Predictions(probs=probs, labels=labels)


def _dirichlet(n: int, concentration: float, rng: np.random.Generator) -> Predictions:
    """Random softmax rows; small concentration gives peaked (confident) rows, large gives flat rows."""
    probs = rng.dirichlet(np.full(K, concentration), size=n)
    return Predictions(probs=probs, labels=rng.integers(0, K, size=n))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_mia_efficacy_high_when_forget_looks_like_test(rng: np.random.Generator) -> None:
    # given: members are confident, non-members are not, and the forget set behaves like non-members
    retain = _from_confidence(rng.uniform(0.9, 1.0, 1500), rng)
    test = _from_confidence(rng.uniform(0.1, 0.7, 1000), rng)
    forget = _from_confidence(rng.uniform(0.1, 0.7, 300), rng)
    # when
    efficacy = salun_mia_efficacy(retain, forget, test)
    # then
    assert efficacy > 95.0


def test_mia_efficacy_low_when_forget_looks_like_retain(rng: np.random.Generator) -> None:
    retain = _from_confidence(rng.uniform(0.9, 1.0, 1500), rng)
    test = _from_confidence(rng.uniform(0.1, 0.7, 1000), rng)
    forget = _from_confidence(rng.uniform(0.9, 1.0, 300), rng)
    assert salun_mia_efficacy(retain, forget, test) < 5.0


def test_mia_efficacy_uses_first_len_test_retain_samples(rng: np.random.Generator) -> None:
    # given: only the first len(test) retain rows are confident; the tail sits at p_y < 0.1 in large numbers,
    # so an attack that saw the tail would call low-confidence forget samples members
    test = _from_confidence(rng.uniform(0.3, 0.7, 500), rng)
    head = _from_confidence(rng.uniform(0.9, 1.0, 500), rng)
    tail = _from_confidence(rng.uniform(0.0, 0.1, 2000), rng)
    retain = Predictions(np.concatenate([head.probs, tail.probs]), np.concatenate([head.labels, tail.labels]))
    forget = _from_confidence(rng.uniform(0.02, 0.08, 200), rng)
    # when
    efficacy = salun_mia_efficacy(retain, forget, test)
    # then
    assert efficacy > 95.0


def test_mia_efficacy_with_retain_shorter_than_test(rng: np.random.Generator) -> None:
    retain = _from_confidence(rng.uniform(0.9, 1.0, 100), rng)
    test = _from_confidence(rng.uniform(0.1, 0.7, 400), rng)
    forget = _from_confidence(rng.uniform(0.9, 1.0, 50), rng)
    assert salun_mia_efficacy(retain, forget, test) < 5.0


def test_mia_efficacy_rejects_empty_sets(rng: np.random.Generator) -> None:
    some = _from_confidence(rng.uniform(0.0, 1.0, 10), rng)
    with pytest.raises(ValueError, match="non-empty"):
        salun_mia_efficacy(some, some.subset(np.zeros(10, dtype=bool)), some)


BOTH_SCORINGS = pytest.mark.parametrize("attack", [laf_asr, laf_asr_balanced], ids=["laf_code", "balanced"])


@BOTH_SCORINGS
def test_asr_near_100_when_forget_is_confident_and_test_is_flat(rng: np.random.Generator, attack: Attack) -> None:
    # given
    retain = _dirichlet(2000, 0.05, rng)
    forget = _dirichlet(400, 0.05, rng)
    test = _dirichlet(2000, 50.0, rng)
    # when
    asr = attack(retain, forget, test, seed=0, n_trees=30)
    # then
    assert asr > 97.0


@BOTH_SCORINGS
def test_asr_near_50_when_all_sets_share_one_distribution(rng: np.random.Generator, attack: Attack) -> None:
    retain, forget, test = (_dirichlet(n, 0.5, rng) for n in (3000, 1000, 3000))
    asr = attack(retain, forget, test, seed=0, n_trees=30)
    assert 42.0 < asr < 58.0


def test_laf_code_asr_scores_every_forget_sample_against_the_unused_test_half(rng: np.random.Generator) -> None:
    # given: a perfectly separable attack (confident members, flat non-members) and a forget set of 1,000 samples,
    # half member-like and half non-member-like, against a test set of 400 (200 shadow, 200 left to score)
    retain = _dirichlet(2000, 0.05, rng)
    test = _dirichlet(400, 50.0, rng)
    halves = (_dirichlet(500, 0.05, rng), _dirichlet(500, 50.0, rng))
    forget = Predictions(np.concatenate([h.probs for h in halves]), np.concatenate([h.labels for h in halves]))
    # when
    imbalanced = laf_asr(retain, forget, test, seed=0, n_trees=30)
    balanced = laf_asr_balanced(retain, forget, test, seed=0, n_trees=30)
    # then: LAF's code weighs the forget side by its share, 1,000 of 1,200 -> (500 + 200) / 1,200 = 58.3%;
    # the balanced scoring draws 200 forget samples against 200 test samples -> about (100 + 200) / 400 = 75%
    assert imbalanced == pytest.approx(700 / 1200 * 100, abs=1.0)
    assert 68.0 < balanced < 82.0


def test_laf_code_asr_is_reproducible_and_rejects_degenerate_inputs(rng: np.random.Generator) -> None:
    retain, forget, test = _dirichlet(300, 0.3, rng), _dirichlet(100, 0.3, rng), _dirichlet(300, 0.6, rng)
    assert laf_asr(retain, forget, test, seed=3, n_trees=10) == laf_asr(retain, forget, test, seed=3, n_trees=10)
    with pytest.raises(ValueError, match="forget"):
        laf_asr(retain, forget.subset(np.arange(0)), test, seed=0)
    with pytest.raises(ValueError, match="retain"):
        laf_asr(retain.subset(np.arange(0)), forget, test, seed=0)


def test_asr_is_reproducible_and_seeded(rng: np.random.Generator) -> None:
    # given: overlapping distributions so that sampling changes the number
    retain = _dirichlet(800, 0.3, rng)
    forget = _dirichlet(300, 0.3, rng)
    test = _dirichlet(800, 0.6, rng)
    # when
    first, again, other = (laf_asr_balanced(retain, forget, test, seed=s, n_trees=20) for s in (1, 1, 2))
    # then
    assert first == again
    assert 0.0 <= other <= 100.0


def test_asr_caps_shadow_size_by_retain_and_max_shadow(rng: np.random.Generator) -> None:
    # given: tiny retain and a small cap still give a valid (and here perfectly separable) attack
    retain = _dirichlet(30, 0.05, rng)
    forget = _dirichlet(50, 0.05, rng)
    test = _dirichlet(400, 50.0, rng)
    assert laf_asr_balanced(retain, forget, test, seed=0, n_trees=10, max_shadow=20) > 95.0


def test_asr_rejects_degenerate_inputs(rng: np.random.Generator) -> None:
    some = _dirichlet(10, 1.0, rng)
    with pytest.raises(ValueError, match="forget"):
        laf_asr_balanced(some, some.subset(np.arange(0)), some, seed=0)
    with pytest.raises(ValueError, match="retain"):
        laf_asr_balanced(some.subset(np.arange(0)), some, some, seed=0)
