"""Verification gates: named thresholds that decide whether an unlearned model may serve.

Each gate compares the unlearned model with the retrain-from-scratch reference on the same data; the verdict
passes only when every gate passes. The thresholds live in params.yaml (section ``verify``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from components.verification.metrics import gap_laf, gap_salun

Metrics = Mapping[str, float | None]


class GateConfig(BaseModel):
    """Thresholds, in percentage points.

    Attributes:
        max_gap_laf: largest allowed LAF-protocol gap to Retrain (mean |diff| of Train_r, Train_f, Test(_r), ASR).
        max_gap_salun: largest allowed SalUn-protocol gap (mean |diff| of UA, RA, TA, MIA-Efficacy).
        max_test_drop: how far utility (Test_r for class-level, Test otherwise) may fall below Retrain's.
        max_forget_excess: how far forget-set accuracy may exceed Retrain's (remembering more than a model that
            never saw the data is the failure that matters; forgetting more is a utility question).
        max_mia_gap: largest allowed |MIA-Efficacy - Retrain's|.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_gap_laf: float = Field(5.0, ge=0)
    max_gap_salun: float = Field(10.0, ge=0)
    max_test_drop: float = Field(3.0, ge=0)
    max_forget_excess: float = Field(5.0, ge=0)
    max_mia_gap: float = Field(30.0, ge=0)


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float | None
    limit: float
    passed: bool


@dataclass(frozen=True)
class Verdict:
    """All gate checks; ``passed`` when every check passed."""

    checks: tuple[GateCheck, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[str]:
        return [
            f"{c.name} could not be computed" if c.value is None else f"{c.name} = {c.value:.2f} exceeds {c.limit:.2f}"
            for c in self.checks
            if not c.passed
        ]

    def summary(self) -> str:
        if self.passed:
            return "PASS: every gate holds"
        return "FAIL: " + "; ".join(self.failures)


def _utility(metrics: Metrics) -> float | None:
    return metrics.get("test_r") if metrics.get("test_r") is not None else metrics.get("test")


def _difference(key: str, sign: float) -> Callable[[Metrics, Metrics], float | None]:
    def compute(unlearned: Metrics, retrain: Metrics) -> float | None:
        a, b = unlearned.get(key), retrain.get(key)
        return None if a is None or b is None else sign * (a - b)

    return compute


def _test_drop(unlearned: Metrics, retrain: Metrics) -> float | None:
    a, b = _utility(unlearned), _utility(retrain)
    return None if a is None or b is None else b - a


def _mia_gap(unlearned: Metrics, retrain: Metrics) -> float | None:
    a, b = unlearned.get("mia_efficacy"), retrain.get("mia_efficacy")
    return None if a is None or b is None else abs(a - b)


# gate name -> (how to compute its value, which config field bounds it)
GATES: dict[str, tuple[Callable[[Metrics, Metrics], float | None], str]] = {
    "gap_laf": (lambda u, r: gap_laf(u, r), "max_gap_laf"),
    "gap_salun": (lambda u, r: gap_salun(u, r), "max_gap_salun"),
    "test_drop": (_test_drop, "max_test_drop"),
    "forget_excess": (_difference("train_f", 1.0), "max_forget_excess"),
    "mia_gap": (_mia_gap, "max_mia_gap"),
}


def evaluate_gates(unlearned: Metrics, retrain: Metrics, config: GateConfig) -> Verdict:
    """Check every gate; a gate whose value cannot be computed (metric absent) fails closed."""
    checks = []
    for name, (compute, field) in GATES.items():
        value = compute(unlearned, retrain)
        limit = float(getattr(config, field))
        checks.append(GateCheck(name=name, value=value, limit=limit, passed=value is not None and value <= limit))
    return Verdict(checks=tuple(checks))
