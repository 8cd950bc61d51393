"""Per-batch certification of a deletion from evidence that needs no retrained model.

The retrain-from-scratch comparison of ``gates.py`` is the audit; this module is the cheap decision taken on every
deletion batch (see ``docs/certification.md`` in the shared design notes). It reads the softmax outputs of the
unlearned model (the candidate) and of the untouched champion (the control) on three splits:

- ``forget``: the deletion batch ``D_f``;
- ``heldout``: ``H``, data neither model trained on (the validation split, never the reporting test split);
- ``retain``: ``R``, a sample of the retained training data ``D_r``.

Every check is a confidence interval, not a point value, because batches are small: with 64 forget samples a
proportion's 95 % interval is about ±12 points, and a bare threshold would pass or fail by noise. A check fails
only when its *lower* bound exceeds the limit, i.e. when the data show a violation; a wide interval therefore
cannot fail. The control closes that loophole: the same checks run on the untouched model, and when it passes
them too the batch is reported as *not measurable* instead of "verified".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from components.verification.intervals import newcombe_interval, paired_difference_interval, wilson_interval
from components.verification.predictions import Predictions

# Floor for probabilities inside logarithms: float32 softmax rounds tiny probabilities to exactly 0.
_EPS = 1e-12
_TOP_K = 10


class CertificationConfig(BaseModel):
    """Tolerances and sizes of the per-batch certification.

    Accuracies, rates and their differences are reported in percent / percentage points (0-100) like the rest
    of the verification code; ``confidence``, ``max_membership_advantage`` and ``calibration_fraction`` are
    proportions (0-1).

    Attributes:
        confidence: Two-sided level of every confidence interval. A check fails when its lower bound exceeds the
            limit, so each check wrongly fails a model that exactly meets its limit with probability at most
            ``(1 - confidence) / 2``.
        max_membership_advantage: Tolerated membership advantage, as a proportion (0.05 = 5 percentage points):
            the share of the forget batch that the membership attack calls "member" may exceed the attack's
            false-positive rate on held-out non-members by at most this much. 0 would demand that the forget
            batch look exactly like unseen data to this attack.
        max_forget_class_accuracy: Class-level deletions only, in percent: highest tolerated accuracy on the
            forget batch and on the held-out samples of the forgotten classes. A model that never saw a class
            cannot predict it, so the ideal is 0; the tolerance absorbs the odd sample a model assigns to an
            unknown class by chance.
        max_forget_excess: Sample-level deletions only, in percentage points: tolerated excess of the forget
            batch's accuracy over the held-out accuracy on the same classes. A model that never saw the batch is
            expected to score on it as on unseen data (excess 0); remembering shows as a positive excess.
        max_utility_drop: In percentage points: tolerated drop of accuracy on held-out samples of the kept
            classes, control minus candidate, measured on the same samples (paired).
        calibration_fraction: Share of the retain sample and of the held-out non-members kept out of the
            attack's fitting. The held-out part estimates the attack's false-positive rate without the optimism
            of evaluating on fitting data; the retain part estimates its power (reported, not tested).
        max_attack_samples: Cap on retain and on held-out samples drawn for the attack, per side, before the
            calibration split; bounds the cost on large splits.
        monitor_fraction: Share of the validation split, per class and seeded, handed to the unlearning loop for
            its own monitors (the retained-accuracy guard, the forgetting monitor) and never read by
            certification (components/verification/heldout.py). A loop that stops when its monitor looks good
            would otherwise pick a moment where the certificate's own sample happens to look good. 0 hands the
            loop nothing (its monitors are off) and certifies on the whole split.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    confidence: float = Field(0.95, gt=0, lt=1)
    max_membership_advantage: float = Field(0.05, ge=0, le=1)
    max_forget_class_accuracy: float = Field(2.0, ge=0, le=100)
    max_forget_excess: float = Field(0.0, ge=0, le=100)
    max_utility_drop: float = Field(2.0, ge=0, le=100)
    calibration_fraction: float = Field(0.3, gt=0, lt=1)
    max_attack_samples: int = Field(5000, ge=2)
    monitor_fraction: float = Field(0.3, ge=0, lt=1)


@dataclass(frozen=True)
class ModelEvidence:
    """One model's outputs on the three splits certification reads.

    Attributes:
        forget: Outputs on the deletion batch ``D_f``.
        heldout: Outputs on held-out data ``H`` (validation split).
        retain: Outputs on a sample of the retained training data ``D_r``.
    """

    forget: Predictions
    heldout: Predictions
    retain: Predictions


@dataclass(frozen=True)
class CheckResult:
    """One check's estimate, confidence interval, limit and outcome.

    Attributes:
        name: ``membership``, ``forget_accuracy``, ``heldout_forgotten_accuracy``, ``forget_excess`` or
            ``utility_drop``.
        value: Point estimate in percent or percentage points.
        lower: Lower confidence bound, same unit.
        upper: Upper confidence bound, same unit.
        limit: The tolerance ``value`` is held to, same unit.
        passed: ``lower <= limit``: the data do not show the limit exceeded.
        detail: Counts behind the numbers, for a human reader.
    """

    name: str
    value: float
    lower: float
    upper: float
    limit: float
    passed: bool
    detail: str

    def describe(self) -> str:
        """``name value [lower, upper], lower bound <= limit`` (``>`` when failed), one decimal.

        The relation is the decision's, i.e. the lower bound's: ``3.7 [-2.9, 9.4], lower bound <= 0.0`` passes because
        the data cannot exclude an excess of 0 or less.
        """
        relation = "<=" if self.passed else ">"
        return (
            f"{self.name} {self.value:.1f} [{self.lower:.1f}, {self.upper:.1f}], "
            f"lower bound {relation} {self.limit:.1f}"
        )


@dataclass(frozen=True)
class MembershipAttack:
    """Counts of a fitted population membership attack applied to the forget batch and to held-out data.

    Attributes:
        forget_members: Forget samples called "member".
        forget_total: Forget samples (all of ``D_f``).
        heldout_members: Held-out calibration non-members called "member" (false positives).
        heldout_total: Held-out calibration non-members.
        retain_members: Retain calibration samples called "member" (true positives: the attack's power).
        retain_total: Retain calibration samples.
        auc: ROC AUC of the attack score, forget batch (positive) vs held-out calibration non-members; 0.5 when
            the attack cannot tell them apart.
    """

    forget_members: int
    forget_total: int
    heldout_members: int
    heldout_total: int
    retain_members: int
    retain_total: int
    auc: float


@dataclass(frozen=True)
class Certification:
    """Check results of the unlearned model (candidate) and of the untouched champion (control).

    Attributes:
        candidate_checks: The candidate's checks, in a fixed order.
        control_checks: The control's checks, same names and order.
        candidate_attack_auc: Membership-attack AUC on the candidate, forget vs held-out (0-1; extra evidence).
        control_attack_auc: The same for the control.
    """

    candidate_checks: tuple[CheckResult, ...]
    control_checks: tuple[CheckResult, ...]
    candidate_attack_auc: float
    control_attack_auc: float

    @property
    def candidate_passed(self) -> bool:
        """Every check holds for the unlearned model."""
        return all(check.passed for check in self.candidate_checks)

    @property
    def control_passed(self) -> bool:
        """Every check holds for the untouched model as well."""
        return all(check.passed for check in self.control_checks)

    @property
    def measurable(self) -> bool:
        """The checks can tell at this batch size: the untouched model, which remembers, fails at least one."""
        return not self.control_passed

    @property
    def no_worse_than_control(self) -> bool:
        """For every check, the candidate's value does not exceed the control's upper confidence bound."""
        control = {check.name: check for check in self.control_checks}
        return all(check.value <= control[check.name].upper for check in self.candidate_checks)

    @property
    def certified(self) -> bool:
        """The candidate passes, and either the checks had power (measurable) or it is no worse than the control.

        An unmeasurable batch is still certified when the candidate is no worse than the untouched model: nothing
        the checks can see distinguishes it from a model that provably holds the data, and it is not worse.
        """
        return self.candidate_passed and (self.measurable or self.no_worse_than_control)

    def _worse_than_control(self) -> list[str]:
        control = {check.name: check for check in self.control_checks}
        return [
            f"{check.name} {check.value:.1f} > the control's upper bound {control[check.name].upper:.1f}"
            for check in self.candidate_checks
            if check.value > control[check.name].upper
        ]

    def verdict_line(self) -> str:
        """One sentence starting with ``PASS`` or ``FAIL`` that states the decision and the numbers behind it."""
        candidate_summary = "; ".join(check.describe() for check in self.candidate_checks)
        if not self.candidate_passed:
            control = {check.name: check for check in self.control_checks}
            failures = [
                f"{check.describe()} (the control: {control[check.name].value:.1f} "
                f"[{control[check.name].lower:.1f}, {control[check.name].upper:.1f}])"
                for check in self.candidate_checks
                if not check.passed
            ]
            return "FAIL: " + "; ".join(failures)
        if self.measurable:
            control_failures = ", ".join(check.name for check in self.control_checks if not check.passed)
            return (
                "PASS: certified: every check holds for the unlearned model and the untouched control fails "
                f"{control_failures} ({candidate_summary})"
            )
        if self.no_worse_than_control:
            return (
                "PASS: not measurable at this size: the untouched control also passes every check; "
                f"the unlearned model is no worse on any ({candidate_summary})"
            )
        return (
            "FAIL: not measurable at this size (the untouched control also passes every check) and the unlearned "
            f"model is worse than the control: {'; '.join(self._worse_than_control())}"
        )

    def to_document(self) -> dict[str, Any]:
        """JSON-serialisable record (plain floats, bools and strings) for reports and MLflow."""
        return {
            "verdict": self.verdict_line(),
            "certified": self.certified,
            "candidate_passed": self.candidate_passed,
            "control_passed": self.control_passed,
            "measurable": self.measurable,
            "no_worse_than_control": self.no_worse_than_control,
            "candidate_attack_auc": self.candidate_attack_auc,
            "control_attack_auc": self.control_attack_auc,
            "candidate_checks": [asdict(check) for check in self.candidate_checks],
            "control_checks": [asdict(check) for check in self.control_checks],
        }


def attack_features(predictions: Predictions) -> np.ndarray:
    """Per-sample membership features: loss, true-class probability, entropy and the sorted top-k softmax.

    The sorted vector (``k = min(10, K)``) carries the output's shape without the class identity, so the attack
    learns "how confident", not "which class"; loss and ``p_y`` add whether that confidence is on the right class.

    Returns:
        ``(n, 3 + k)`` float64 matrix.
    """
    probs = predictions.probs.astype(np.float64)
    p_y = probs[np.arange(len(predictions)), predictions.labels]
    loss = -np.log(np.clip(p_y, _EPS, 1.0))
    entropy = -np.sum(probs * np.log(np.clip(probs, _EPS, 1.0)), axis=1)
    top_k = -np.sort(-probs, axis=1)[:, : min(_TOP_K, predictions.num_classes)]
    return np.column_stack([loss, p_y, entropy, top_k])


def _kept(predictions: Predictions, forgotten_classes: tuple[int, ...]) -> Predictions:
    return predictions.subset(~np.isin(predictions.labels, forgotten_classes))


def _split(n: int, cap: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``n`` positions, keep at most ``cap``, and return (fitting, calibration) positions, both non-empty."""
    order = rng.permutation(n)[: min(n, cap)]
    # round, not ceil: 0.3 * 100 is 30.000000000000004 in floating point.
    n_calibration = min(max(1, round(fraction * len(order))), len(order) - 1)
    return order[n_calibration:], order[:n_calibration]


def membership_attack(
    evidence: ModelEvidence,
    forgotten_classes: tuple[int, ...],
    config: CertificationConfig,
    seed: int,
) -> MembershipAttack:
    """Fit a population membership attack on one model's outputs and apply it to the forget batch.

    Members are the retain sample ``R``, non-members the held-out set ``H`` (for class-level deletions only H's
    samples of the kept classes, as SalUn filters its test set: the forgotten classes are absent from ``R``, so
    keeping them in ``H`` would teach the attack "forgotten class = non-member" and flatter the candidate).
    Both sides are shuffled with ``numpy.random.default_rng(seed)``, capped at ``max_attack_samples`` and split
    into fitting and calibration parts (``calibration_fraction`` of each side, rounded, at least one sample in
    each part).

    The forget batch's "member" rate is compared with the rate on the calibration non-members (sample-level) or
    on every held-out sample of the forgotten classes (class-level; see the comment in the body).

    Classifier: standardised ``attack_features`` into a logistic regression with balanced class weights, which is
    deterministic (lbfgs) and needs no tuning. Decision: "member" when the predicted member probability exceeds
    0.5. With balanced weights that is the threshold maximising balanced accuracy if the fitted probabilities are
    calibrated; a threshold tuned on the fitting data would add variance at small sizes. The threshold only
    changes the attack's power, not the validity of the test: the false-positive rate is measured on calibration
    non-members the attack never saw.

    Args:
        evidence: The model's outputs.
        forgotten_classes: Forgotten classes of a class-level deletion; empty for a sample-level deletion.
        config: Sizes of the attack.
        seed: Seeds the shuffles and the classifier.

    Returns:
        Counts on the forget batch and on the calibration parts, and the attack's AUC.

    Raises:
        ValueError: if the retain sample or the (kept-class) held-out set has fewer than 2 samples.
    """
    members = evidence.retain
    nonmembers = _kept(evidence.heldout, forgotten_classes)
    if len(members) < 2 or len(nonmembers) < 2:
        raise ValueError(
            "the membership attack needs >= 2 retain samples and >= 2 held-out samples of the kept classes "
            f"(got {len(members)} and {len(nonmembers)})"
        )
    rng = np.random.default_rng(seed)
    member_fit, member_calibration = _split(len(members), config.max_attack_samples, config.calibration_fraction, rng)
    nonmember_fit, nonmember_calibration = _split(
        len(nonmembers), config.max_attack_samples, config.calibration_fraction, rng
    )

    # scikit-learn costs ~2 s to import: only when an attack is fitted, not whenever the config module loads
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    member_features, nonmember_features = attack_features(members), attack_features(nonmembers)
    x_fit = np.concatenate([member_features[member_fit], nonmember_features[nonmember_fit]])
    y_fit = np.concatenate([np.ones(len(member_fit), dtype=np.int64), np.zeros(len(nonmember_fit), dtype=np.int64)])
    attack = make_pipeline(
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed),
    )
    attack.fit(x_fit, y_fit)

    # decision_function > 0 is exactly predicted member probability > 0.5.
    forget_scores = attack.decision_function(attack_features(evidence.forget))
    # The forget batch is compared with non-members of its own kind. Class-level: held-out samples of the forgotten
    # classes (none was used in fitting); a model that never saw the class treats its training and held-out samples
    # alike, whereas kept-class non-members differ from any forgotten-class sample in kind (a confident wrong
    # prediction is neither a member's nor a kept-class non-member's output), so they would misstate the rate.
    forgotten_heldout = evidence.heldout.subset(np.isin(evidence.heldout.labels, forgotten_classes))
    if forgotten_classes and len(forgotten_heldout) >= 2:
        heldout_scores = attack.decision_function(attack_features(forgotten_heldout))
    else:
        heldout_scores = attack.decision_function(nonmember_features[nonmember_calibration])
    retain_scores = attack.decision_function(member_features[member_calibration])
    auc = roc_auc_score(
        np.concatenate([np.ones(len(forget_scores)), np.zeros(len(heldout_scores))]),
        np.concatenate([forget_scores, heldout_scores]),
    )
    return MembershipAttack(
        forget_members=int(np.sum(forget_scores > 0)),
        forget_total=len(forget_scores),
        heldout_members=int(np.sum(heldout_scores > 0)),
        heldout_total=len(heldout_scores),
        retain_members=int(np.sum(retain_scores > 0)),
        retain_total=len(retain_scores),
        auc=float(auc),
    )


def _correct(predictions: Predictions) -> np.ndarray:
    return np.argmax(predictions.probs, axis=1) == predictions.labels


def _result(name: str, interval: tuple[float, float, float], limit: float, detail: str) -> CheckResult:
    """Scale a proportion-unit interval to percent and apply the lower-bound rule."""
    value, lower, upper = (100.0 * bound for bound in interval)
    return CheckResult(
        name=name,
        value=float(value),
        lower=float(lower),
        upper=float(upper),
        limit=float(limit),
        passed=bool(lower <= limit),
        detail=detail,
    )


def _membership_check(attack: MembershipAttack, config: CertificationConfig) -> CheckResult:
    interval = newcombe_interval(
        attack.forget_members, attack.forget_total, attack.heldout_members, attack.heldout_total, config.confidence
    )
    detail = (
        f"called member: {attack.forget_members}/{attack.forget_total} of the forget batch vs "
        f"{attack.heldout_members}/{attack.heldout_total} held-out non-members (false positives) and "
        f"{attack.retain_members}/{attack.retain_total} held-out retain samples (power); "
        f"attack AUC forget vs held-out {attack.auc:.3f}"
    )
    return _result("membership", interval, 100.0 * config.max_membership_advantage, detail)


def _accuracy_check(name: str, predictions: Predictions, limit: float, confidence: float) -> CheckResult:
    correct = int(np.sum(_correct(predictions)))
    interval = wilson_interval(correct, len(predictions), confidence)
    return _result(name, interval, limit, f"{correct}/{len(predictions)} correct")


def _forget_excess_check(forget: Predictions, heldout: Predictions, config: CertificationConfig) -> CheckResult:
    # Compare like with like: accuracy differs by class, so H is restricted to the classes present in the batch.
    same_classes = heldout.subset(np.isin(heldout.labels, np.unique(forget.labels)))
    forget_correct = int(np.sum(_correct(forget)))
    heldout_correct = int(np.sum(_correct(same_classes)))
    interval = newcombe_interval(forget_correct, len(forget), heldout_correct, len(same_classes), config.confidence)
    detail = (
        f"{forget_correct}/{len(forget)} forget correct vs {heldout_correct}/{len(same_classes)} held-out "
        "correct on the same classes"
    )
    return _result("forget_excess", interval, config.max_forget_excess, detail)


def _utility_check(
    candidate_heldout: Predictions,
    control_heldout: Predictions,
    forgotten_classes: tuple[int, ...],
    config: CertificationConfig,
) -> CheckResult:
    kept = ~np.isin(control_heldout.labels, forgotten_classes)
    control_correct = _correct(control_heldout)[kept]
    candidate_correct = _correct(candidate_heldout)[kept]
    # Paired: both models are scored on the same samples, so only the samples they disagree on move the drop.
    both = int(np.sum(control_correct & candidate_correct))
    control_only = int(np.sum(control_correct & ~candidate_correct))
    candidate_only = int(np.sum(~control_correct & candidate_correct))
    neither = int(np.sum(~control_correct & ~candidate_correct))
    interval = paired_difference_interval(both, control_only, candidate_only, neither, config.confidence)
    detail = (
        f"on {int(np.sum(kept))} held-out kept-class samples: control right and model wrong on {control_only}, "
        f"the reverse on {candidate_only}"
    )
    return _result("utility_drop", interval, config.max_utility_drop, detail)


def _checks(
    evidence: ModelEvidence,
    control_heldout: Predictions,
    forgotten_classes: tuple[int, ...],
    config: CertificationConfig,
    seed: int,
) -> tuple[tuple[CheckResult, ...], float]:
    """All checks of one model, in a fixed order, and its attack AUC."""
    attack = membership_attack(evidence, forgotten_classes, config, seed)
    checks = [_membership_check(attack, config)]
    if forgotten_classes:
        checks.append(
            _accuracy_check("forget_accuracy", evidence.forget, config.max_forget_class_accuracy, config.confidence)
        )
        heldout_forgotten = evidence.heldout.subset(np.isin(evidence.heldout.labels, forgotten_classes))
        if len(heldout_forgotten) > 0:
            checks.append(
                _accuracy_check(
                    "heldout_forgotten_accuracy",
                    heldout_forgotten,
                    config.max_forget_class_accuracy,
                    config.confidence,
                )
            )
    else:
        checks.append(_forget_excess_check(evidence.forget, evidence.heldout, config))
    checks.append(_utility_check(evidence.heldout, control_heldout, forgotten_classes, config))
    return tuple(checks), attack.auc


def _validate(candidate: ModelEvidence, control: ModelEvidence, forgotten_classes: tuple[int, ...]) -> None:
    if len(control.forget) == 0 or len(candidate.forget) == 0:
        raise ValueError("the forget set (D_f) is empty: there is no deletion to certify")
    splits = {
        f"{who}.{split}": getattr(evidence, split)
        for who, evidence in (("candidate", candidate), ("control", control))
        for split in ("forget", "heldout", "retain")
    }
    class_counts = {name: predictions.num_classes for name, predictions in splits.items()}
    if len(set(class_counts.values())) != 1:
        raise ValueError(f"every split must have the same number of classes, got {class_counts}")
    num_classes = next(iter(class_counts.values()))
    for name, predictions in splits.items():
        if len(predictions) and (predictions.labels.min() < 0 or predictions.labels.max() >= num_classes):
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")
    for split in ("forget", "heldout"):
        if not np.array_equal(getattr(candidate, split).labels, getattr(control, split).labels):
            raise ValueError(f"candidate and control must be evaluated on the same {split} samples (labels differ)")
    if any(not 0 <= c < num_classes for c in forgotten_classes):
        raise ValueError(f"forgotten classes {forgotten_classes} outside 0..{num_classes - 1}")
    if forgotten_classes and not np.all(np.isin(control.forget.labels, forgotten_classes)):
        raise ValueError(f"a class-level forget set may only hold the forgotten classes {forgotten_classes}")


def certify(
    candidate: ModelEvidence,
    control: ModelEvidence,
    forgotten_classes: tuple[int, ...],
    config: CertificationConfig,
    seed: int,
) -> Certification:
    """Run every check on the unlearned model and on the untouched control.

    Checks (values in percent / percentage points; each passes when its lower confidence bound is within its limit):

    - ``membership``: attack member-rate on ``D_f`` minus its false-positive rate on held-out non-members
      (Newcombe interval), limit ``max_membership_advantage``.
    - class-level (``forgotten_classes`` non-empty): ``forget_accuracy`` on ``D_f`` and
      ``heldout_forgotten_accuracy`` on H's samples of the forgotten classes (Wilson intervals; the latter is
      omitted when H has none), limit ``max_forget_class_accuracy``.
    - sample-level: ``forget_excess``, accuracy on ``D_f`` minus accuracy on H's samples of the classes present in
      ``D_f`` (Newcombe interval), limit ``max_forget_excess``.
    - ``utility_drop``: control's minus the model's accuracy on H's kept-class samples (paired interval), limit
      ``max_utility_drop``; 0 for the control by construction.

    Both models' attacks use the same ``seed``, so identical evidence gives identical results.

    Args:
        candidate: The unlearned model's outputs.
        control: The untouched champion's outputs on the same forget and held-out samples.
        forgotten_classes: Classes removed by a class-level deletion; empty for a sample-level deletion.
        config: Tolerances and sizes.
        seed: Seeds every random step; the same inputs and seed give the same certification.

    Returns:
        Both models' check results; ``Certification.certified`` is the decision.

    Raises:
        ValueError: on an empty forget set, a class count that differs between splits, labels out of range,
            candidate and control evaluated on different samples, a class-level forget set holding a kept class,
            or too few retain / held-out samples for the attack.
    """
    forgotten = tuple(sorted({int(c) for c in forgotten_classes}))
    _validate(candidate, control, forgotten)
    candidate_checks, candidate_auc = _checks(candidate, control.heldout, forgotten, config, seed)
    control_checks, control_auc = _checks(control, control.heldout, forgotten, config, seed)
    return Certification(
        candidate_checks=candidate_checks,
        control_checks=control_checks,
        candidate_attack_auc=candidate_auc,
        control_attack_auc=control_auc,
    )
