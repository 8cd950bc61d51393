"""Verification gates on hand-made metric dicts: each limit holds at equality, fails just above it, and fails closed."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from components.verification.gates import GATES, GateConfig, Verdict, evaluate_gates

# Data-level forgetting (no test_r / test_f), every metric in percent.
RETRAIN: dict[str, float | None] = {
    "train_r": 90.0,
    "train_f": 80.0,
    "test": 85.0,
    "test_r": None,
    "test_f": None,
    "asr": 50.0,
    "ua": 20.0,
    "ra": 90.0,
    "ta": 85.0,
    "mia_efficacy": 40.0,
}
DEFAULTS = GateConfig()
GATE_NAMES = ("gap_laf", "gap_salun", "test_drop", "forget_excess", "mia_gap")


def unlearned(**changes: float | None) -> dict[str, float | None]:
    return {**RETRAIN, **changes}


def check(verdict: Verdict, name: str) -> Any:
    return next(c for c in verdict.checks if c.name == name)


# (gate, metrics at exactly the default limit, metrics just above it, value at the limit)
#   gap_laf:       mean |diff| over train_r, train_f, test, asr -> asr off by 4 x 5.0
#   gap_salun:     mean |diff| over ua, ra, ta, mia_efficacy    -> ua off by 4 x 10.0
#   test_drop:     retrain test - unlearned test                -> 3.0
#   forget_excess: unlearned train_f - retrain train_f          -> 5.0
#   mia_gap:       |mia_efficacy difference|                    -> 30.0 (below Retrain's here)
LIMIT_CASES = [
    ("gap_laf", {"asr": 70.0}, {"asr": 70.5}, 5.0),
    ("gap_salun", {"ua": 60.0}, {"ua": 60.5}, 10.0),
    ("test_drop", {"test": 82.0}, {"test": 81.5}, 3.0),
    ("forget_excess", {"train_f": 85.0}, {"train_f": 85.5}, 5.0),
    ("mia_gap", {"mia_efficacy": 10.0}, {"mia_efficacy": 9.5}, 30.0),
]


@pytest.mark.parametrize(("gate", "at_limit", "above", "value"), LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_gate_passes_at_its_limit(gate: str, at_limit: dict[str, float], above: dict[str, float], value: float) -> None:
    # given metrics that put one gate exactly at its default limit
    # when the gates are evaluated
    verdict = evaluate_gates(unlearned(**at_limit), RETRAIN, DEFAULTS)

    # then that gate reports the limit as its value and passes, and so does the verdict
    assert check(verdict, gate).value == pytest.approx(value)
    assert check(verdict, gate).limit == value
    assert check(verdict, gate).passed
    assert verdict.passed
    assert verdict.failures == []


@pytest.mark.parametrize(("gate", "at_limit", "above", "value"), LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_gate_fails_just_above_its_limit(
    gate: str, at_limit: dict[str, float], above: dict[str, float], value: float
) -> None:
    # given metrics that put one gate just above its default limit
    # when the gates are evaluated
    verdict = evaluate_gates(unlearned(**above), RETRAIN, DEFAULTS)

    # then only that gate fails, and the verdict with it
    assert check(verdict, gate).value > value
    assert [c.name for c in verdict.checks if not c.passed] == [gate]
    assert not verdict.passed
    assert verdict.failures == [f"{gate} = {check(verdict, gate).value:.2f} exceeds {value:.2f}"]


def test_every_gate_is_checked_in_a_fixed_order() -> None:
    verdict = evaluate_gates(RETRAIN, RETRAIN, DEFAULTS)

    assert tuple(c.name for c in verdict.checks) == GATE_NAMES == tuple(GATES)
    assert all(c.value == 0.0 for c in verdict.checks)
    assert verdict.passed


def test_forgetting_more_than_retrain_does_not_trip_forget_excess() -> None:
    # given an unlearned model that is *worse* on the forget set than Retrain (forgot more)
    verdict = evaluate_gates(unlearned(train_f=70.0, ua=30.0), RETRAIN, GateConfig(max_gap_laf=50, max_gap_salun=50))

    # then the one-sided gate sees a negative excess and passes
    assert check(verdict, "forget_excess").value == pytest.approx(-10.0)
    assert check(verdict, "forget_excess").passed


def test_mia_gap_is_symmetric() -> None:
    above = evaluate_gates(unlearned(mia_efficacy=70.0), RETRAIN, DEFAULTS)
    below = evaluate_gates(unlearned(mia_efficacy=10.0), RETRAIN, DEFAULTS)

    assert check(above, "mia_gap").value == check(below, "mia_gap").value == pytest.approx(30.0)


def test_test_drop_uses_test_r_for_class_level_forgetting() -> None:
    # given class-level metrics: full-test accuracy collapses (a class is gone) but Test_r drops by the limit
    retrain = {**RETRAIN, "test": 80.0, "test_r": 88.0, "test_f": 0.0}
    model = {**retrain, "test": 40.0, "test_r": 85.0}

    # when the gates are evaluated (other gaps generous)
    verdict = evaluate_gates(model, retrain, GateConfig(max_gap_laf=50.0))

    # then utility is Test_r: the drop is 3.0 and passes
    assert check(verdict, "test_drop").value == pytest.approx(3.0)
    assert check(verdict, "test_drop").passed


@pytest.mark.parametrize(
    ("missing_from", "key", "gate"),
    [
        ("unlearned", "mia_efficacy", "mia_gap"),
        ("retrain", "mia_efficacy", "mia_gap"),
        ("unlearned", "train_f", "forget_excess"),
        ("retrain", "test", "test_drop"),
    ],
)
def test_a_missing_metric_fails_closed(missing_from: str, key: str, gate: str) -> None:
    # given one side lacking a metric that a gate needs (absent key and None value both count)
    for absent in (None, "delete"):
        model, retrain = dict(RETRAIN), dict(RETRAIN)
        side = model if missing_from == "unlearned" else retrain
        if absent == "delete":
            del side[key]
        else:
            side[key] = None

        # when the gates are evaluated
        verdict = evaluate_gates(model, retrain, DEFAULTS)

        # then that gate has no value and fails, and the verdict says so
        assert check(verdict, gate).value is None
        assert not check(verdict, gate).passed
        assert not verdict.passed
        assert f"{gate} could not be computed" in verdict.failures


def test_no_metrics_at_all_fail_every_gate() -> None:
    verdict = evaluate_gates({}, RETRAIN, DEFAULTS)

    assert [c.passed for c in verdict.checks] == [False] * len(GATE_NAMES)
    assert all(c.value is None for c in verdict.checks)


def test_summary_of_a_passing_verdict() -> None:
    assert evaluate_gates(RETRAIN, RETRAIN, DEFAULTS).summary() == "PASS: every gate holds"


def test_summary_and_failures_of_a_failing_verdict() -> None:
    # given one gate over its limit and one that cannot be computed
    model = unlearned(asr=70.5)
    del model["mia_efficacy"]

    # when the gates are evaluated
    verdict = evaluate_gates(model, RETRAIN, DEFAULTS)

    # then the failures are listed in gate order, two decimals each
    assert verdict.failures == ["gap_laf = 5.12 exceeds 5.00", "mia_gap could not be computed"]
    assert verdict.summary() == "FAIL: gap_laf = 5.12 exceeds 5.00; mia_gap could not be computed"


def test_zero_limits_fail_any_difference() -> None:
    strict = GateConfig(max_gap_laf=0, max_gap_salun=0, max_test_drop=0, max_forget_excess=0, max_mia_gap=0)

    assert evaluate_gates(RETRAIN, RETRAIN, strict).passed
    assert not evaluate_gates(unlearned(asr=50.01), RETRAIN, strict).passed


def test_gate_config_defaults_are_the_documented_thresholds() -> None:
    assert DEFAULTS.model_dump() == {
        "max_gap_laf": 5.0,
        "max_gap_salun": 10.0,
        "max_test_drop": 3.0,
        "max_forget_excess": 5.0,
        "max_mia_gap": 30.0,
    }


@pytest.mark.parametrize("field", ["max_gap_laf", "max_gap_salun", "max_test_drop", "max_forget_excess", "max_mia_gap"])
def test_gate_config_rejects_a_negative_limit(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        GateConfig(**{field: -0.1})


def test_gate_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="max_gap_lfa"):
        GateConfig.model_validate({"max_gap_lfa": 1.0})


def test_gate_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        DEFAULTS.max_gap_laf = 100.0  # type: ignore[misc]
