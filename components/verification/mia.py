"""Membership-inference attacks used to verify forgetting.

Two different attacks live here, named after the protocol they reproduce, because their numbers are not
comparable (and LAF's in two scorings):

- ``laf_asr``: the LAF / MixUnlearn "ASR" as LAF's released code computes it (XGBoost on sorted softmax
  vectors; accuracy on *all* forget samples vs the test samples the shadow model did not use: imbalanced).
- ``laf_asr_balanced``: the same attack scored on equally many forget and held-out test samples.
- ``salun_mia_efficacy``: the SalUn / l1-sparse "MIA-Efficacy" (SVC on the true-label confidence, share of the
  forget set called non-member).

All are pure functions of ``Predictions``; the seeded ones take their seed explicitly.
"""

from __future__ import annotations

import numpy as np

from components.verification.predictions import Predictions


def _sorted_probs(predictions: Predictions) -> np.ndarray:
    """Each softmax vector sorted in descending order, so the attack sees the shape, not the class."""
    return -np.sort(-predictions.probs, axis=1)


def _confidence(predictions: Predictions) -> np.ndarray:
    """Probability of the true label, ``p_y``, as an ``(n, 1)`` feature matrix."""
    p_y = predictions.probs[np.arange(len(predictions)), predictions.labels]
    return p_y.reshape(-1, 1)


def laf_asr(
    retain: Predictions,
    forget: Predictions,
    test: Predictions,
    seed: int,
    n_trees: int = 100,
    max_shadow: int = 5000,
) -> float:
    """LAF / MixUnlearn attack success rate (ASR) in percent, as LAF's released code computes it.

    Read from ``ShaofeiShen768/LAF`` (``Train.train_attack_model`` and ``Train.attack``, called from LAF.ipynb):
    the shadow model learns retained training samples (members) vs the first half of the test set (at most 5,000,
    non-members); the attack is then scored on **all** forget samples (members) together with the test samples the
    shadow model did not use, as many as there are forget samples when the test set has that many. The evaluation
    set is therefore imbalanced toward the forget side whenever the forget set is larger than the unused half of
    the test set (LAF's CIFAR-10 data-level setup: about 0.68 of it), and the accuracy weighs the forget side by
    that share. Use ``laf_asr_balanced`` for the balanced version. As there, the target is Retrain's own ASR,
    never 50 (see ``laf_asr_balanced``).

    Recipe:
        1. Features: each softmax vector sorted in descending order (LAF sorts ascending; a permutation of the
           same features, which the trees do not depend on).
        2. Shuffle the test set with ``numpy.random.default_rng(seed)`` (LAF reads it in stored order, which here
           may be sorted by class). The first ``n_shadow = min(len(test) // 2, max_shadow, len(retain))`` are the
           shadow non-members; shadow members are a random retain subset of the same size.
        3. Fit ``xgboost.XGBClassifier`` (``n_trees`` trees, hist) on shadow members (1) vs non-members (0).
        4. ASR = accuracy on every forget sample (label 1) plus the next ``min(len(forget), len(test) - n_shadow)``
           shuffled test samples (label 0).

    Args:
        retain: Evaluated model's outputs on the retain set.
        forget: Evaluated model's outputs on the forget set.
        test: Evaluated model's outputs on the full test set.
        seed: Seeds every sampling step and the classifier; same inputs and seed give the same ASR.
        n_trees: Number of boosted trees.
        max_shadow: Upper bound on the shadow set size per side (LAF: 5,000).

    Returns:
        Attack accuracy in percent (0-100).

    Raises:
        ValueError: if forget is empty, the test set has fewer than 2 samples, or the retain set is empty.
    """
    if len(forget) == 0 or len(test) < 2:
        raise ValueError(f"ASR needs a non-empty forget set and >= 2 test samples (got {len(forget)}, {len(test)})")
    n_shadow = min(len(test) // 2, max_shadow, len(retain))
    if n_shadow == 0:
        raise ValueError("ASR needs a non-empty retain set and a non-empty max_shadow")
    rng = np.random.default_rng(seed)
    test_order = rng.permutation(len(test))
    shadow_nonmembers = test_order[:n_shadow]
    eval_nonmembers = test_order[n_shadow : n_shadow + len(forget)]
    shadow_members = rng.choice(len(retain), size=n_shadow, replace=False)
    every_forget = np.arange(len(forget))
    return _attack_accuracy(
        (retain, shadow_members),
        (test, shadow_nonmembers),
        (forget, every_forget),
        (test, eval_nonmembers),
        seed,
        n_trees,
    )


def _attack_accuracy(
    shadow_members: tuple[Predictions, np.ndarray],
    shadow_nonmembers: tuple[Predictions, np.ndarray],
    eval_members: tuple[Predictions, np.ndarray],
    eval_nonmembers: tuple[Predictions, np.ndarray],
    seed: int,
    n_trees: int,
) -> float:
    """Fit the XGBoost attack on the shadow rows (members 1, non-members 0) and return its accuracy in percent on
    the evaluation rows; each argument is (predictions, row positions)."""

    def features(part: tuple[Predictions, np.ndarray]) -> np.ndarray:
        predictions, rows = part
        return _sorted_probs(predictions)[rows]

    def labelled(
        members: tuple[Predictions, np.ndarray], nonmembers: tuple[Predictions, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([features(members), features(nonmembers)])
        y = np.concatenate([np.ones(len(members[1]), dtype=np.int64), np.zeros(len(nonmembers[1]), dtype=np.int64)])
        return x, y

    x_shadow, y_shadow = labelled(shadow_members, shadow_nonmembers)
    x_eval, y_eval = labelled(eval_members, eval_nonmembers)
    # Two threads keep the result reproducible and avoid oversubscribing cores shared with the GPU feeder.
    import xgboost  # imported on first use: a CLI that fits no attack starts seconds faster

    attacker = xgboost.XGBClassifier(n_estimators=n_trees, random_state=seed, n_jobs=2, tree_method="hist")
    attacker.fit(x_shadow, y_shadow)
    return float(np.mean(attacker.predict(x_eval) == y_eval) * 100.0)


def laf_asr_balanced(
    retain: Predictions,
    forget: Predictions,
    test: Predictions,
    seed: int,
    n_trees: int = 100,
    max_shadow: int = 5000,
) -> float:
    """LAF's attack scored on a balanced evaluation set, in percent (the project's ASR before issue #9).

    This is *not* SalUn's MIA-Efficacy: it is a balanced attack accuracy on forget-vs-test, so 50 means the
    forget set is indistinguishable from unseen data. Retrain does not score 50 in practice (the LAF and
    MixUnlearn tables put it at roughly 60-68), because its outputs on the forget set and on the test set are not
    exchangeable: in class-level forgetting, for instance, the forget set is one class the model never predicts
    while the test set spans all classes. The target is therefore Retrain's own ASR ("closer to Retrain is
    better"), never 50.

    Recipe (``laf_asr``'s attack, with a balanced evaluation set):
        1. Features: each softmax vector sorted in descending order.
        2. Shuffle the test set with ``numpy.random.default_rng(seed)``. The first
           ``n_eval = min(len(forget), len(test) // 2)`` shuffled test samples are held out as evaluation
           non-members; the rest, capped at ``max_shadow`` and at ``len(retain)``, are shadow non-members.
        3. Shadow members: a random retain subset of the same size.
        4. Fit ``xgboost.XGBClassifier`` (``n_trees`` trees, hist) on shadow members (1) vs non-members (0).
        5. ASR = accuracy on a random ``n_eval`` subset of forget (label 1) plus the held-out test samples
           (label 0).

    Args:
        retain: Evaluated model's outputs on the retain set.
        forget: Evaluated model's outputs on the forget set.
        test: Evaluated model's outputs on the full test set.
        seed: Seeds every sampling step and the classifier; same inputs and seed give the same ASR.
        n_trees: Number of boosted trees.
        max_shadow: Upper bound on the shadow set size per side.

    Returns:
        Attack accuracy in percent (0-100).

    Raises:
        ValueError: if forget is empty, the test set has fewer than 2 samples, or no shadow set can be formed.
    """
    rng = np.random.default_rng(seed)
    n_eval = min(len(forget), len(test) // 2)
    if n_eval == 0:
        raise ValueError(f"ASR needs a non-empty forget set and >= 2 test samples (got {len(forget)}, {len(test)})")

    test_order = rng.permutation(len(test))
    eval_nonmembers = test_order[:n_eval]
    n_shadow = min(len(test) - n_eval, max_shadow, len(retain))
    if n_shadow == 0:
        raise ValueError("ASR needs a non-empty retain set and a non-empty max_shadow")
    shadow_nonmembers = test_order[n_eval : n_eval + n_shadow]
    shadow_members = rng.choice(len(retain), size=n_shadow, replace=False)
    eval_members = rng.choice(len(forget), size=n_eval, replace=False)

    return _attack_accuracy(
        (retain, shadow_members),
        (test, shadow_nonmembers),
        (forget, eval_members),
        (test, eval_nonmembers),
        seed,
        n_trees,
    )


def salun_mia_efficacy(retain: Predictions, forget: Predictions, test: Predictions) -> float:
    """SalUn / l1-sparse MIA-Efficacy in percent: share of the forget set the attack calls non-member.

    Polarity: higher = more forgetting (100 = every forget sample looks unseen). Like every metric in this
    protocol it is judged against Retrain's value, not against 100.

    Recipe (OPTML-Group ``evaluation/SVC_MIA.py``, ``confidence`` feature only), deterministic:
        1. Shadow members: the *first* ``len(test)`` retain samples in stored order (all of retain if shorter).
        2. Shadow non-members: ``test`` as passed. For class-wise forgetting the caller passes the test set
           without the forgotten classes, as SalUn does.
        3. Feature: ``p_y``, the softmax probability of the true label (1-D).
        4. Attack: ``sklearn.svm.SVC(C=3, gamma="auto", kernel="rbf")``, members 1 / non-members 0, fit on the
           shadow sets only.
        5. Result: percentage of forget samples predicted 0 (TN / |D_f|).

    Args:
        retain: Evaluated model's outputs on the retain set, in stored order.
        forget: Evaluated model's outputs on the forget set.
        test: Evaluated model's outputs on the (class-filtered, for class-wise) test set.

    Returns:
        MIA-Efficacy in percent (0-100).

    Raises:
        ValueError: if any of the three sets is empty.
    """
    if len(retain) == 0 or len(forget) == 0 or len(test) == 0:
        raise ValueError(
            f"MIA-Efficacy needs non-empty retain, forget and test sets (got {len(retain)}, {len(forget)}, {len(test)})"
        )
    members = retain.subset(np.arange(min(len(test), len(retain))))
    x_shadow = np.concatenate([_confidence(members), _confidence(test)])
    y_shadow = np.concatenate([np.ones(len(members), dtype=np.int64), np.zeros(len(test), dtype=np.int64)])
    from sklearn.svm import SVC

    attacker = SVC(C=3, gamma="auto", kernel="rbf")
    attacker.fit(x_shadow, y_shadow)
    return float(np.mean(attacker.predict(_confidence(forget)) == 0) * 100.0)
