"""The contrastive losses of MixUnlearn (Eqs. 3-6 of the paper), on softmax outputs.

All losses use the batch form of the released code, divided by the batch size N so that their scale does not
depend on N: ``mean_k a_k - logsumexp_k(b_k / tau)`` equals ``(sum_k a_k - N log sum_k exp(b_k / tau)) / N``.
The gradient of the log-sum-exp term over the whole batch sums to 1/tau, against 1 for the mean term, so tau sets
the forgetting strength relative to retention: a large tau forgets gently.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sim_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row ``1 - cos(outputs, targets)``; for probability vectors it lies in [0, 1]."""
    return 1.0 - F.cosine_similarity(outputs, targets, dim=1, eps=1e-8)


def sharpen(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """MixMatch sharpening ``q^(1/T) / sum q^(1/T)``, computed in log space so small T cannot overflow."""
    if temperature <= 0:
        raise ValueError(f"sharpening temperature must be > 0, got {temperature}")
    return torch.softmax(torch.log(probabilities.clamp_min(1e-12)) / temperature, dim=1)


def mix_contrastive_loss(
    outputs: torch.Tensor,
    retain_targets: torch.Tensor,
    forget_targets: torch.Tensor,
    lam: float,
    tau: float,
) -> torch.Tensor:
    """L_mix (Eq. 5, outer sum over B_r): pull mixtures to the retain target, push from the forget target.

    Row k of ``outputs`` is the unlearner's softmax on a mixture of forget sample k and the retain sample whose
    target is row k of ``retain_targets`` (the matched pairing, not the released code's mismatch).
    ``a_k = (1 - lam) * SimLoss(out_k, p_r_k)``, ``b_k = lam * SimLoss(out_k, p_f_k)``.
    The generator minimises the negation of this loss (Eq. 3).
    """
    pull = (1.0 - lam) * sim_loss(outputs, retain_targets)
    push = lam * sim_loss(outputs, forget_targets)
    return pull.mean() - torch.logsumexp(push / tau, dim=0)


def real_contrastive_loss(
    retain_outputs: torch.Tensor,
    retain_targets: torch.Tensor,
    forget_outputs: torch.Tensor,
    forget_targets: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """L_real (Eq. 6): keep retain outputs on their targets, push forget outputs off theirs."""
    pull = sim_loss(retain_outputs, retain_targets)
    push = sim_loss(forget_outputs, forget_targets)
    return pull.mean() - torch.logsumexp(push / tau, dim=0)
