"""Per-batch certification as a stage function (no orchestrator): the evidence certification reads, and the
certificate of an unlearned model against the untouched champion (the control).

Held-out data is the stored validation split, never the reporting test split; the retained data is a seeded
sample of the post-batch training pool (``verify.retain_sample`` samples at most).
"""

from __future__ import annotations

import numpy as np
import torch

from components.data.types import ImageSet
from components.stages.context import RunContext
from components.verification.certification import Certification, ModelEvidence, certify
from components.verification.predictions import Predictions, predict


def retain_sample(pool: ImageSet, size: int, seed: int) -> ImageSet:
    """At most ``size`` samples of ``pool``, drawn without replacement by ``seed`` (kept in pool order)."""
    if len(pool) <= size:
        return pool
    positions = np.sort(np.random.default_rng(seed).choice(len(pool), size=size, replace=False))
    return pool.subset(positions)


def model_evidence(
    context: RunContext,
    model: torch.nn.Module,
    forget: ImageSet,
    heldout: ImageSet,
    retain: ImageSet,
    batch_size: int = 1024,
) -> ModelEvidence:
    """``model``'s softmax outputs on the forget batch, the held-out set and the retained sample."""
    model = model.to(context.device)

    def outputs(images: ImageSet) -> Predictions:
        tensors = context.tensors(images)
        return predict(model, tensors.images, tensors.labels, batch_size)

    return ModelEvidence(forget=outputs(forget), heldout=outputs(heldout), retain=outputs(retain))


def certify_batch(
    context: RunContext,
    unlearned: torch.nn.Module,
    control: torch.nn.Module,
    forget: ImageSet,
    heldout: ImageSet,
    retained_pool: ImageSet,
) -> Certification:
    """Certify ``unlearned`` against the untouched ``control`` for this batch.

    Args:
        context: The batch's context (its forgotten classes decide class- or sample-level checks).
        unlearned: The candidate.
        control: The champion the batch was unlearned from.
        forget: The batch's forget samples ``D_f``.
        heldout: The validation split (never the test split); ``H`` is its share that the unlearning loop's
            monitors never saw (``RunContext.heldout_split``).
        retained_pool: The training pool after the batch; a seeded sample of it is ``R``.
    """
    verify = context.config.verify
    retain = retain_sample(retained_pool, verify.retain_sample, context.seed)
    heldout = context.heldout_split(heldout).certification
    return certify(
        model_evidence(context, unlearned, forget, heldout, retain),
        model_evidence(context, control, forget, heldout, retain),
        context.forgotten_classes,
        verify.certification,
        context.seed,
    )


def certification_metrics(certification: Certification) -> dict[str, float]:
    """Flat MLflow metrics: ``cert_<check>_{value,lower,upper,limit,passed}`` for the unlearned model,
    ``cert_control_<check>_...`` for the control, and the decision flags."""
    metrics: dict[str, float] = {
        "cert_certified": float(certification.certified),
        "cert_measurable": float(certification.measurable),
        "cert_attack_auc": certification.candidate_attack_auc,
        "cert_control_attack_auc": certification.control_attack_auc,
    }
    for prefix, checks in (("cert", certification.candidate_checks), ("cert_control", certification.control_checks)):
        for check in checks:
            for field in ("value", "lower", "upper", "limit"):
                metrics[f"{prefix}_{check.name}_{field}"] = float(getattr(check, field))
            metrics[f"{prefix}_{check.name}_passed"] = float(check.passed)
    return metrics
