"""Tests for ``components.verification.mia`` on constructed outputs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from components.verification.mia import laf_asr, salun_mia_efficacy
from components.verification.predictions import Predictions

K = 10


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


def test_asr_near_100_when_forget_is_confident_and_test_is_flat(rng: np.random.Generator) -> None:
    # given
    retain = _dirichlet(2000, 0.05, rng)
    forget = _dirichlet(400, 0.05, rng)
    test = _dirichlet(2000, 50.0, rng)
    # when
    asr = laf_asr(retain, forget, test, seed=0, n_trees=30)
    # then
    assert asr > 97.0


def test_asr_near_50_when_all_sets_share_one_distribution(rng: np.random.Generator) -> None:
    retain, forget, test = (_dirichlet(n, 0.5, rng) for n in (3000, 1000, 3000))
    asr = laf_asr(retain, forget, test, seed=0, n_trees=30)
    assert 42.0 < asr < 58.0


def test_asr_is_reproducible_and_seeded(rng: np.random.Generator) -> None:
    # given: overlapping distributions so that sampling changes the number
    retain = _dirichlet(800, 0.3, rng)
    forget = _dirichlet(300, 0.3, rng)
    test = _dirichlet(800, 0.6, rng)
    # when
    first, again, other = (laf_asr(retain, forget, test, seed=s, n_trees=20) for s in (1, 1, 2))
    # then
    assert first == again
    assert 0.0 <= other <= 100.0


def test_asr_caps_shadow_size_by_retain_and_max_shadow(rng: np.random.Generator) -> None:
    # given: tiny retain and a small cap still give a valid (and here perfectly separable) attack
    retain = _dirichlet(30, 0.05, rng)
    forget = _dirichlet(50, 0.05, rng)
    test = _dirichlet(400, 50.0, rng)
    assert laf_asr(retain, forget, test, seed=0, n_trees=10, max_shadow=20) > 95.0


def test_asr_rejects_degenerate_inputs(rng: np.random.Generator) -> None:
    some = _dirichlet(10, 1.0, rng)
    with pytest.raises(ValueError, match="forget"):
        laf_asr(some, some.subset(np.arange(0)), some, seed=0)
    with pytest.raises(ValueError, match="retain"):
        laf_asr(some.subset(np.arange(0)), some, some, seed=0)
