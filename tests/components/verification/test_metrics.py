"""Tests for ``components.verification.metrics``."""

from __future__ import annotations

import numpy as np
import pytest

from components.verification import metrics
from components.verification.metrics import (
    ALL_METRICS,
    LAF_METRICS,
    SALUN_METRICS,
    evaluate_predictions,
    gap_laf,
    gap_salun,
)
from components.verification.predictions import Predictions

K = 4


def _predictions(labels: np.ndarray, predicted: np.ndarray, confidence: float = 0.9) -> Predictions:
    """Rows putting ``confidence`` on ``predicted`` and the rest evenly on the other classes."""
    probs = np.full((len(labels), K), (1.0 - confidence) / (K - 1))
    probs[np.arange(len(labels)), predicted] = confidence
    return Predictions(probs=probs, labels=labels)


def _perfect(n: int, rng: np.random.Generator, classes: tuple[int, ...] = tuple(range(K))) -> Predictions:
    labels = rng.choice(np.asarray(classes), size=n)
    return _predictions(labels, labels)


def test_metric_name_tuples() -> None:
    assert LAF_METRICS == ("train_r", "train_f", "test", "test_r", "test_f", "asr", "asr_balanced")
    assert SALUN_METRICS == ("ua", "ra", "ta", "mia_efficacy")
    assert ALL_METRICS == LAF_METRICS + SALUN_METRICS


def test_perfect_data_level_predictions() -> None:
    # given
    rng = np.random.default_rng(0)
    retain, forget, test = _perfect(200, rng), _perfect(50, rng), _perfect(200, rng)
    # when
    result = evaluate_predictions(retain, forget, test, forgotten_classes=(), seed=0)
    # then
    assert tuple(result) == ALL_METRICS
    assert result["train_r"] == result["train_f"] == result["test"] == 100.0
    assert result["test_r"] is None
    assert result["test_f"] is None
    assert result["ua"] == 0.0
    assert result["ra"] == 100.0
    assert result["ta"] == result["test"]
    assert 0.0 <= result["asr"] <= 100.0
    assert 0.0 <= result["asr_balanced"] <= 100.0
    assert 0.0 <= result["mia_efficacy"] <= 100.0


def test_balanced_asr_can_be_left_out_without_changing_the_rest() -> None:
    # given
    rng = np.random.default_rng(0)
    retain, forget, test = _perfect(200, rng), _perfect(50, rng), _perfect(200, rng)
    # when
    full = evaluate_predictions(retain, forget, test, forgotten_classes=(), seed=0)
    lean = evaluate_predictions(retain, forget, test, forgotten_classes=(), seed=0, balanced_asr=False)
    # then
    assert lean["asr_balanced"] is None
    assert {k: v for k, v in lean.items() if k != "asr_balanced"} == {
        k: v for k, v in full.items() if k != "asr_balanced"
    }


def test_class_level_fields_and_filtered_mia_test(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: class 0 forgotten; the model predicts class 1 for every class-0 sample, everything else right
    rng = np.random.default_rng(1)
    retain = _perfect(300, rng, classes=(1, 2, 3))
    forget_labels = np.zeros(60, dtype=np.int64)
    forget = _predictions(forget_labels, np.ones(60, dtype=np.int64))
    test_labels = rng.integers(0, K, size=400)
    test = _predictions(test_labels, np.where(test_labels == 0, 1, test_labels))
    seen: dict[str, Predictions] = {}

    def fake_mia(retain: Predictions, forget: Predictions, test: Predictions) -> float:
        seen["test"] = test
        return 42.0

    monkeypatch.setattr(metrics, "salun_mia_efficacy", fake_mia)
    # when
    result = evaluate_predictions(retain, forget, test, forgotten_classes=(0,), seed=0)
    # then
    assert result["test_r"] == 100.0
    assert result["test_f"] == 0.0
    assert result["ta"] == result["test_r"]
    assert result["test"] == pytest.approx(100.0 * np.mean(test_labels != 0))
    assert result["train_f"] == 0.0
    assert result["ua"] == 100.0
    assert result["mia_efficacy"] == 42.0
    assert 0 not in seen["test"].labels
    assert len(seen["test"]) == int(np.sum(test_labels != 0))


def test_class_level_test_f_is_none_without_forgotten_test_samples() -> None:
    rng = np.random.default_rng(2)
    retain, forget, test = _perfect(100, rng, (1, 2)), _perfect(30, rng, (0,)), _perfect(100, rng, (1, 2))
    result = evaluate_predictions(retain, forget, test, forgotten_classes=(0,), seed=0)
    assert result["test_r"] == 100.0
    assert result["test_f"] is None


def test_evaluate_is_deterministic_for_a_seed() -> None:
    # given: 30% wrong, low-confidence outputs so that the attacks have something to separate
    rng = np.random.default_rng(3)
    labels = rng.integers(0, K, size=300)
    noisy = _predictions(labels, np.where(rng.random(300) < 0.3, (labels + 1) % K, labels), confidence=0.6)
    retain, forget, test = (noisy.subset(np.arange(a, b)) for a, b in ((0, 150), (150, 200), (200, 300)))
    # when
    first = evaluate_predictions(retain, forget, test, (), seed=5)
    again = evaluate_predictions(retain, forget, test, (), seed=5)
    # then
    assert first == again
    assert first["ua"] == pytest.approx(100.0 - first["train_f"])


RETRAIN = {
    "train_r": 99.0,
    "train_f": 90.0,
    "test": 88.0,
    "test_r": None,
    "test_f": None,
    "asr": 65.0,
    "ua": 10.0,
    "ra": 99.0,
    "ta": 88.0,
    "mia_efficacy": 20.0,
}


def test_gaps_of_retrain_with_itself_are_zero() -> None:
    assert gap_laf(RETRAIN, RETRAIN) == 0.0
    assert gap_salun(RETRAIN, RETRAIN) == 0.0


def test_gap_laf_data_level_uses_test() -> None:
    method = {**RETRAIN, "train_r": 97.0, "train_f": 94.0, "test": 87.0, "asr": 70.0}
    # |2| + |4| + |1| + |5| over 4 terms
    assert gap_laf(method, RETRAIN) == pytest.approx(3.0)


def test_gap_laf_class_level_uses_test_r_when_both_have_it() -> None:
    retrain = {**RETRAIN, "train_f": 0.0, "test": 80.0, "test_r": 88.0, "test_f": 0.0}
    method = {**retrain, "test": 50.0, "test_r": 86.0}
    # only the Test_r term differs (|2| over 4 terms); Test's large gap is ignored
    assert gap_laf(method, retrain) == pytest.approx(0.5)


def test_gap_laf_falls_back_to_test_when_one_side_lacks_test_r() -> None:
    retrain = {**RETRAIN, "test_r": 88.0}
    method = {**RETRAIN, "test": 80.0, "test_r": None}
    assert gap_laf(method, retrain) == pytest.approx(2.0)


def test_gap_laf_uses_the_laf_code_asr_not_the_balanced_one() -> None:
    method = {**RETRAIN, "asr_balanced": 10.0}
    assert gap_laf(method, {**RETRAIN, "asr_balanced": 90.0}) == 0.0
    assert gap_laf({**RETRAIN, "asr": 73.0}, RETRAIN) == pytest.approx(2.0)


def test_gap_skips_none_terms_and_returns_none_without_terms() -> None:
    method = {**RETRAIN, "asr": None, "train_r": 95.0}
    # ASR skipped: |4| + 0 + 0 over 3 terms
    assert gap_laf(method, RETRAIN) == pytest.approx(4.0 / 3.0)
    assert gap_laf({}, RETRAIN) is None
    assert gap_salun(dict.fromkeys(SALUN_METRICS), RETRAIN) is None


def test_gap_salun_values() -> None:
    method = {"ua": 6.0, "ra": 100.0, "ta": 85.0, "mia_efficacy": 28.0}
    # |4| + |1| + |3| + |8| over 4 terms
    assert gap_salun(method, RETRAIN) == pytest.approx(4.0)
    assert gap_salun({**method, "mia_efficacy": None}, RETRAIN) == pytest.approx(8.0 / 3.0)
