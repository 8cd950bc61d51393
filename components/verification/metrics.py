"""Unlearning metrics under the two protocols the project reports, and their gaps to Retrain.

- LAF / MixUnlearn: Train_r, Train_f, Test, Test_r, Test_f, ASR (as LAF's code scores it, imbalanced), plus
  ASR-balanced (the same attack on a balanced evaluation set; reported, not part of the gap).
- SalUn: UA, RA, TA, MIA-Efficacy, plus Avg. Gap.

Every metric is in percent. Under both protocols *closer to Retrain is better*: a method is judged by its gap to
a model retrained on the retain set only, never by how close a number gets to 0 or 100.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from components.verification.mia import laf_asr, laf_asr_balanced, salun_mia_efficacy
from components.verification.predictions import Predictions

LAF_METRICS: tuple[str, ...] = ("train_r", "train_f", "test", "test_r", "test_f", "asr", "asr_balanced")
SALUN_METRICS: tuple[str, ...] = ("ua", "ra", "ta", "mia_efficacy")
ALL_METRICS: tuple[str, ...] = LAF_METRICS + SALUN_METRICS


def evaluate_predictions(
    retain: Predictions,
    forget: Predictions,
    test: Predictions,
    forgotten_classes: tuple[int, ...],
    seed: int,
    balanced_asr: bool = True,
) -> dict[str, float | None]:
    """Compute all eleven metrics (``ALL_METRICS``) in percent from one model's predictions.

    ``forgotten_classes`` decides the setting: non-empty means class-level forgetting, empty means data-level
    (random) forgetting.

    - ``train_r`` / ``train_f`` / ``test``: accuracy on retain / forget / the full test set.
    - ``test_r`` / ``test_f``: accuracy on test samples outside / inside ``forgotten_classes``; ``None`` for
      data-level. ``test_f`` is also ``None`` when the test set holds no sample of a forgotten class.
    - ``asr``: ``laf_asr`` against the full test set (LAF's code: every forget sample vs the unused test half).
    - ``asr_balanced``: ``laf_asr_balanced`` against the full test set (equal forget and test counts).
    - ``ua = 100 - train_f``, ``ra = train_r``, ``ta = test_r`` (class-level) or ``test`` (data-level).
    - ``mia_efficacy``: ``salun_mia_efficacy`` with the test set filtered to the kept classes for class-level,
      as SalUn filters its test loader.

    Args:
        retain: Outputs on the retain set, in stored order (MIA-Efficacy uses its first ``len(test)`` rows).
        forget: Outputs on the forget set.
        test: Outputs on the full test set.
        forgotten_classes: Classes removed entirely (class-level), or ``()`` for data-level forgetting.
        seed: Seed of the ASR attack.
        balanced_asr: Also fit the balanced attack (``asr_balanced``); ``False`` leaves it ``None`` (tuning, whose
            objective does not use it, saves one attack fit per evaluation).

    Returns:
        Dict keyed by ``ALL_METRICS`` in that order; values are floats in [0, 100] or ``None``.

    Raises:
        ValueError: if retain, forget or the (kept-class) test set is empty.
    """
    train_r = retain.accuracy()
    train_f = forget.accuracy()
    test_acc = test.accuracy()
    class_level = len(forgotten_classes) > 0
    test_r: float | None = None
    test_f: float | None = None
    mia_test = test
    if class_level:
        in_forgotten = np.isin(test.labels, np.asarray(forgotten_classes))
        mia_test = test.subset(~in_forgotten)
        test_r = mia_test.accuracy()
        test_f = test.subset(in_forgotten).accuracy() if in_forgotten.any() else None
    return {
        "train_r": train_r,
        "train_f": train_f,
        "test": test_acc,
        "test_r": test_r,
        "test_f": test_f,
        "asr": laf_asr(retain, forget, test, seed=seed),
        "asr_balanced": laf_asr_balanced(retain, forget, test, seed=seed) if balanced_asr else None,
        "ua": 100.0 - train_f,
        "ra": train_r,
        "ta": test_r if test_r is not None else test_acc,
        "mia_efficacy": salun_mia_efficacy(retain, forget, mia_test),
    }


def _mean_abs_gap(
    method: Mapping[str, float | None], retrain: Mapping[str, float | None], keys: tuple[str, ...]
) -> float | None:
    """Mean ``|method[k] - retrain[k]|`` over ``keys``, skipping keys missing or ``None`` on either side."""
    gaps = []
    for key in keys:
        ours, reference = method.get(key), retrain.get(key)
        if ours is not None and reference is not None:
            gaps.append(abs(ours - reference))
    return float(np.mean(gaps)) if gaps else None


def gap_laf(method: Mapping[str, float | None], retrain: Mapping[str, float | None]) -> float | None:
    """Mean absolute gap to Retrain over Train_r, Train_f, Test_r (or Test) and ASR; closer to Retrain is better.

    ASR is ``asr``, scored as LAF's code scores it (``laf_asr``); ``asr_balanced`` is reported beside it but is
    not a term.

    LAF and MixUnlearn report no averaged gap; this is the project's one-number summary of their "closer to
    Retrain" rule. Test_r is used when both sides have it (class-level), otherwise Test (data-level). A term
    that is ``None`` on either side is skipped.

    Args:
        method: Metrics of the evaluated model (e.g. from ``evaluate_predictions``, or means over seeds).
        retrain: Metrics of the Retrain reference, in the same form.

    Returns:
        The gap in percentage points, or ``None`` if no term is available.
    """
    use_test_r = method.get("test_r") is not None and retrain.get("test_r") is not None
    keys = ("train_r", "train_f", "test_r" if use_test_r else "test", "asr")
    return _mean_abs_gap(method, retrain, keys)


def gap_salun(method: Mapping[str, float | None], retrain: Mapping[str, float | None]) -> float | None:
    """SalUn Avg. Gap: mean absolute gap to Retrain over UA, RA, TA and MIA-Efficacy; closer to Retrain is better.

    SalUn averages each metric over seeds (trials) *first* and then takes the gap of the means, so callers pass
    per-metric means over seeds, not a single seed's values. A term that is ``None`` on either side is skipped.

    Args:
        method: Seed-averaged metrics of the evaluated method.
        retrain: Seed-averaged metrics of Retrain.

    Returns:
        The gap in percentage points, or ``None`` if no term is available.
    """
    return _mean_abs_gap(method, retrain, SALUN_METRICS)
