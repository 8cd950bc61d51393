"""Tests for ``components.verification.certification`` on hand-built outputs whose verdict is known by construction.

Accuracies are set exactly (a deterministic per-class pattern), so accuracy-based checks have exact values; only
confidences are random, and the membership assertions rely on distributions that are either disjoint (the attack
separates them) or identical (it cannot), with wide margins to the limits.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from components.verification.certification import (
    CertificationConfig,
    CheckResult,
    ModelEvidence,
    attack_features,
    certify,
    membership_attack,
)
from components.verification.predictions import Predictions

K = 10
FORGOTTEN = 3
KEPT = np.array([c for c in range(K) if c != FORGOTTEN])
CONFIG = CertificationConfig()
SEEN = (0.95, 1.0)  # confidence of a model on data it trained on
UNSEEN = (0.3, 0.8)  # confidence on data it never saw


def _outputs(labels: np.ndarray, confidence: np.ndarray, correct: np.ndarray) -> Predictions:
    """Softmax rows giving ``confidence`` to the true class when ``correct``, else to the next class."""
    predicted = np.where(correct, labels, (labels + 1) % K)
    probs = np.repeat(((1.0 - confidence) / (K - 1))[:, None], K, axis=1)
    probs[np.arange(len(labels)), predicted] = confidence
    return Predictions(probs=probs, labels=labels)


def _correct_pattern(n: int, accuracy: float) -> np.ndarray:
    """Exactly ``accuracy`` of every class correct when ``n`` is a multiple of ``10 * K`` (labels cycle 0..K-1)."""
    return (np.arange(n) // K) % 10 < round(accuracy * 10)


def _split(
    n: int,
    confidence: tuple[float, float],
    accuracy: float,
    rng: np.random.Generator,
    labels: np.ndarray | None = None,
) -> Predictions:
    labels = np.arange(n) % K if labels is None else labels
    return _outputs(labels, rng.uniform(*confidence, len(labels)), _correct_pattern(len(labels), accuracy))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def remembering(rng: np.random.Generator) -> ModelEvidence:
    """The untouched model: the forget batch looks like its training data (confident, all correct)."""
    return ModelEvidence(
        forget=_split(200, SEEN, 1.0, rng),
        heldout=_split(600, UNSEEN, 0.8, rng),
        retain=_split(600, SEEN, 1.0, rng),
    )


@pytest.fixture
def forgetting(remembering: ModelEvidence, rng: np.random.Generator) -> ModelEvidence:
    """An unlearned model whose forget outputs are distributed like its held-out outputs (same accuracy)."""
    return ModelEvidence(
        forget=_split(200, UNSEEN, 0.8, rng),
        heldout=remembering.heldout,
        retain=remembering.retain,
    )


@pytest.fixture
def generalising(rng: np.random.Generator) -> ModelEvidence:
    """A model that treats training, forget and held-out data alike: no check can see the deletion."""
    return ModelEvidence(
        forget=_split(100, UNSEEN, 0.8, rng),
        heldout=_split(600, UNSEEN, 0.8, rng),
        retain=_split(600, UNSEEN, 0.8, rng),
    )


def _check(checks: tuple[CheckResult, ...], name: str) -> CheckResult:
    return next(check for check in checks if check.name == name)


def _with_flipped_heldout(evidence: ModelEvidence, flips: np.ndarray) -> ModelEvidence:
    """The same model, except wrong on the held-out positions ``flips``."""
    heldout = evidence.heldout
    correct = np.argmax(heldout.probs, axis=1) == heldout.labels
    correct[flips] = False
    confidence = np.max(heldout.probs, axis=1)
    return ModelEvidence(evidence.forget, _outputs(heldout.labels, confidence, correct), evidence.retain)


# --- the control -------------------------------------------------------------------------------------------------


def test_noop_candidate_gets_the_controls_results_and_fails_with_it(remembering: ModelEvidence) -> None:
    # given: "unlearning" that changed nothing, on a batch the control visibly remembers
    candidate = ModelEvidence(remembering.forget, remembering.heldout, remembering.retain)
    # when
    result = certify(candidate, remembering, (), CONFIG, seed=0)
    # then
    assert result.candidate_checks == result.control_checks
    assert result.candidate_attack_auc == result.control_attack_auc
    assert not result.control_passed
    assert result.measurable
    assert not result.certified
    assert result.verdict_line().startswith("FAIL: ")


def test_noop_candidate_of_a_passing_control_is_not_measurable_but_certified(generalising: ModelEvidence) -> None:
    result = certify(generalising, generalising, (), CONFIG, seed=0)
    assert result.candidate_checks == result.control_checks
    assert result.control_passed
    assert not result.measurable
    assert result.no_worse_than_control
    assert result.certified
    assert result.verdict_line().startswith("PASS: not measurable at this size")


def test_control_utility_drop_is_zero_by_construction(remembering: ModelEvidence) -> None:
    result = certify(remembering, remembering, (), CONFIG, seed=0)
    drop = _check(result.control_checks, "utility_drop")
    assert drop.value == 0.0
    assert drop.lower <= 0.0 <= drop.upper
    assert drop.passed


def test_unmeasurable_batch_fails_when_candidate_is_worse_than_control(generalising: ModelEvidence) -> None:
    # given: 5 extra errors on 600 held-out samples: within the utility tolerance, but beyond the control's interval
    candidate = _with_flipped_heldout(generalising, np.flatnonzero(_correct_pattern(600, 0.8))[:5])
    # when
    result = certify(candidate, generalising, (), CONFIG, seed=0)
    # then
    drop = _check(result.candidate_checks, "utility_drop")
    assert drop.passed
    assert drop.value > _check(result.control_checks, "utility_drop").upper
    assert result.candidate_passed
    assert not result.measurable
    assert not result.no_worse_than_control
    assert not result.certified
    assert result.verdict_line().startswith("FAIL: not measurable at this size")
    assert "utility_drop" in result.verdict_line()


# --- membership ----------------------------------------------------------------------------------------------------


def test_remembering_model_fails_membership_and_forgetting_model_passes(
    remembering: ModelEvidence, forgetting: ModelEvidence
) -> None:
    # when
    result = certify(forgetting, remembering, (), CONFIG, seed=0)
    # then: the control's forget batch is called "member" far beyond the tolerance
    control = _check(result.control_checks, "membership")
    assert not control.passed
    assert control.lower > 50.0
    assert result.control_attack_auc > 0.9
    # and the unlearned model's forget batch looks like held-out data
    candidate = _check(result.candidate_checks, "membership")
    assert candidate.passed
    assert candidate.lower <= 0.0 <= candidate.upper
    assert result.candidate_passed
    assert result.measurable
    assert result.certified
    assert result.verdict_line().startswith("PASS: certified")


def test_class_level_attack_compares_the_batch_with_held_out_samples_of_its_classes(
    rng: np.random.Generator,
) -> None:
    # given: 600 held-out samples, 60 of them of the forgotten class
    evidence = ModelEvidence(
        forget=_split(50, UNSEEN, 0.0, rng, labels=np.full(50, FORGOTTEN)),
        heldout=_split(600, UNSEEN, 0.8, rng),
        retain=_split(600, SEEN, 1.0, rng, labels=KEPT[np.arange(600) % len(KEPT)]),
    )
    # when
    attack = membership_attack(evidence, (FORGOTTEN,), CONFIG, seed=0)
    plain = membership_attack(evidence, (), CONFIG, seed=0)
    # then: class-level, the batch is compared with the 60 held-out samples of the forgotten class (the attack
    # fitted on kept classes only never saw them); sample-level, with the calibration 30 % of all 600
    assert attack.heldout_total == 60
    assert plain.heldout_total == 180
    assert attack.forget_total == 50


def test_attack_sample_cap_applies_per_side(remembering: ModelEvidence) -> None:
    attack = membership_attack(remembering, (), CertificationConfig(max_attack_samples=100), seed=0)
    assert attack.heldout_total == 30
    assert attack.retain_total == 30
    assert attack.forget_total == len(remembering.forget)


@pytest.mark.parametrize("num_classes", [3, 20])
def test_attack_features_have_loss_confidence_entropy_and_top_k(num_classes: int) -> None:
    probs = np.full((4, num_classes), 1.0 / num_classes)
    features = attack_features(Predictions(probs=probs, labels=np.zeros(4, dtype=np.int64)))
    assert features.shape == (4, 3 + min(10, num_classes))
    np.testing.assert_allclose(features[:, 0], np.log(num_classes))  # loss of a uniform output
    np.testing.assert_allclose(features[:, 2], np.log(num_classes))  # its entropy


# --- class-level forgetting ------------------------------------------------------------------------------------------


def _class_level(rng: np.random.Generator, heldout_labels: np.ndarray | None = None) -> ModelEvidence:
    """The untouched model of a class-level deletion: it recognises the forgotten class everywhere."""
    return ModelEvidence(
        forget=_split(100, SEEN, 1.0, rng, labels=np.full(100, FORGOTTEN)),
        heldout=_split(600, UNSEEN, 0.8, rng, labels=heldout_labels),
        retain=_split(600, SEEN, 1.0, rng, labels=KEPT[np.arange(600) % len(KEPT)]),
    )


def test_model_predicting_the_forgotten_class_fails_forget_accuracy(rng: np.random.Generator) -> None:
    # given: the control, and an unlearned model that still predicts the class on D_f, if less confidently
    control = _class_level(rng)
    candidate = ModelEvidence(
        forget=_split(100, UNSEEN, 1.0, rng, labels=control.forget.labels),
        heldout=control.heldout,
        retain=control.retain,
    )
    # when
    result = certify(candidate, control, (FORGOTTEN,), CONFIG, seed=0)
    # then
    forget_accuracy = _check(result.candidate_checks, "forget_accuracy")
    assert forget_accuracy.value == 100.0
    assert not forget_accuracy.passed
    assert not result.certified
    assert "forget_accuracy" in result.verdict_line()
    assert "forget_excess" not in {check.name for check in result.candidate_checks}


def test_model_never_predicting_the_forgotten_class_passes_class_checks(rng: np.random.Generator) -> None:
    # given: an unlearned model wrong on every sample of the forgotten class, in D_f and in H
    control = _class_level(rng)
    forgotten_in_heldout = np.flatnonzero(control.heldout.labels == FORGOTTEN)
    candidate = _with_flipped_heldout(
        ModelEvidence(
            forget=_split(100, UNSEEN, 0.0, rng, labels=control.forget.labels),
            heldout=control.heldout,
            retain=control.retain,
        ),
        forgotten_in_heldout,
    )
    # when
    result = certify(candidate, control, (FORGOTTEN,), CONFIG, seed=0)
    # then
    for name in ("forget_accuracy", "heldout_forgotten_accuracy"):
        check = _check(result.candidate_checks, name)
        assert check.value == 0.0
        assert check.passed
        assert not _check(result.control_checks, name).passed
    # the forgotten class's held-out errors do not count as a utility drop: utility is measured on kept classes
    assert _check(result.candidate_checks, "utility_drop").value == 0.0


def test_heldout_forgotten_accuracy_is_omitted_without_forgotten_samples_in_heldout(rng: np.random.Generator) -> None:
    control = _class_level(rng, heldout_labels=KEPT[np.arange(600) % len(KEPT)])
    result = certify(control, control, (FORGOTTEN,), CONFIG, seed=0)
    assert [check.name for check in result.candidate_checks] == ["membership", "forget_accuracy", "utility_drop"]


# --- sample-level forgetting -----------------------------------------------------------------------------------------


def test_forget_excess_fails_with_500_samples(rng: np.random.Generator) -> None:
    # given: 100 % on the batch vs exactly 80 % on held-out data of the same classes
    evidence = ModelEvidence(
        forget=_split(500, UNSEEN, 1.0, rng), heldout=_split(500, UNSEEN, 0.8, rng), retain=_split(500, SEEN, 1.0, rng)
    )
    # when
    result = certify(evidence, evidence, (), CONFIG, seed=0)
    # then
    excess = _check(result.candidate_checks, "forget_excess")
    assert excess.value == pytest.approx(20.0)
    assert excess.lower > 0.0
    assert not excess.passed
    assert excess.describe().startswith("forget_excess 20.0 [")


def test_forget_excess_passes_with_5_samples_because_the_interval_is_wide(rng: np.random.Generator) -> None:
    # given: the same 100 % vs 80 %, but a batch of 5 samples (classes 0-4)
    evidence = ModelEvidence(
        forget=_split(5, UNSEEN, 1.0, rng), heldout=_split(500, UNSEEN, 0.8, rng), retain=_split(500, SEEN, 1.0, rng)
    )
    # when
    excess = _check(certify(evidence, evidence, (), CONFIG, seed=0).candidate_checks, "forget_excess")
    # then
    assert excess.value == pytest.approx(20.0)
    assert excess.lower <= 0.0 < excess.value < excess.upper
    assert excess.passed
    assert "/250 held-out" in excess.detail  # H restricted to the 5 classes present in the batch


# --- utility -------------------------------------------------------------------------------------------------------


def test_utility_drop_fails_when_candidate_loses_a_fifth_of_the_controls_correct_answers(
    remembering: ModelEvidence, forgetting: ModelEvidence
) -> None:
    # given: the control is right on 480 of 600 held-out samples; the candidate is wrong on 96 of those
    right = np.flatnonzero(np.argmax(remembering.heldout.probs, axis=1) == remembering.heldout.labels)
    candidate = _with_flipped_heldout(forgetting, right[::5])
    # when
    result = certify(candidate, remembering, (), CONFIG, seed=0)
    # then
    drop = _check(result.candidate_checks, "utility_drop")
    assert drop.value == pytest.approx(16.0)
    assert drop.lower > CONFIG.max_utility_drop
    assert not drop.passed
    assert not result.certified
    # (held-out accuracy fell too, so forget_excess may fail alongside; each failure names the control's value)
    line = result.verdict_line()
    assert line.startswith("FAIL: ")
    assert "utility_drop 16.0 [" in line
    assert "> 2.0 (the control: 0.0 [" in line


# --- report and determinism ------------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_document(remembering: ModelEvidence, forgetting: ModelEvidence) -> None:
    first = certify(forgetting, remembering, (), CONFIG, seed=3).to_document()
    again = certify(forgetting, remembering, (), CONFIG, seed=3).to_document()
    assert first == again


def test_document_is_json_serialisable_and_carries_the_verdict(
    remembering: ModelEvidence, forgetting: ModelEvidence
) -> None:
    result = certify(forgetting, remembering, (), CONFIG, seed=0)
    document = json.loads(json.dumps(result.to_document(), allow_nan=False))
    assert document["verdict"] == result.verdict_line()
    assert document["certified"] is True
    assert document["measurable"] is True
    assert [check["name"] for check in document["candidate_checks"]] == ["membership", "forget_excess", "utility_drop"]
    assert document["control_checks"][0]["limit"] == pytest.approx(100.0 * CONFIG.max_membership_advantage)


# --- bad inputs ----------------------------------------------------------------------------------------------------


def test_empty_forget_set_raises(remembering: ModelEvidence) -> None:
    empty = ModelEvidence(remembering.forget.subset(np.arange(0)), remembering.heldout, remembering.retain)
    with pytest.raises(ValueError, match=r"forget set \(D_f\) is empty"):
        certify(empty, empty, (), CONFIG, seed=0)


def test_class_count_mismatch_between_splits_raises(remembering: ModelEvidence) -> None:
    narrow = Predictions(probs=np.full((20, 5), 0.2), labels=np.arange(20) % 5)
    candidate = ModelEvidence(remembering.forget, narrow, remembering.retain)
    with pytest.raises(ValueError, match="same number of classes"):
        certify(candidate, remembering, (), CONFIG, seed=0)


def test_candidate_and_control_on_different_samples_raise(remembering: ModelEvidence, rng: np.random.Generator) -> None:
    shifted = _split(600, UNSEEN, 0.8, rng, labels=(np.arange(600) + 1) % K)
    candidate = ModelEvidence(remembering.forget, shifted, remembering.retain)
    with pytest.raises(ValueError, match="same heldout samples"):
        certify(candidate, remembering, (), CONFIG, seed=0)


def test_class_level_forget_set_with_a_kept_class_raises(remembering: ModelEvidence) -> None:
    with pytest.raises(ValueError, match="may only hold the forgotten classes"):
        certify(remembering, remembering, (FORGOTTEN,), CONFIG, seed=0)


def test_too_few_samples_for_the_attack_raise(remembering: ModelEvidence) -> None:
    tiny = ModelEvidence(remembering.forget, remembering.heldout, remembering.retain.subset(np.arange(1)))
    with pytest.raises(ValueError, match="membership attack needs"):
        certify(tiny, tiny, (), CONFIG, seed=0)


@pytest.mark.parametrize(
    "fields", [{"confidence": 1.0}, {"calibration_fraction": 0.0}, {"max_utility_drop": -1.0}, {"delta": 0.1}]
)
def test_config_rejects_invalid_fields(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        CertificationConfig(**fields)
