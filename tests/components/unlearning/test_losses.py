"""MixUnlearn's contrastive losses against values written out by hand, and the direction of their gradients."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from components.unlearning.losses import mix_contrastive_loss, real_contrastive_loss, sharpen, sim_loss

Vector = list[float]


def _cos(a: Vector, b: Vector) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _sim(a: Vector, b: Vector) -> float:
    return 1.0 - _cos(a, b)


def _logsumexp(values: Vector) -> float:
    return math.log(sum(math.exp(v) for v in values))


def _t(rows: list[Vector]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# A 3-sample, 3-class example: probability rows of the unlearner and the two target sets.
OUTPUTS = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]]
RETAIN_TARGETS = [[1.0, 0.0, 0.0], [0.0, 0.9, 0.1], [0.2, 0.3, 0.5]]
FORGET_TARGETS = [[0.0, 1.0, 0.0], [0.8, 0.1, 0.1], [0.0, 0.0, 1.0]]


def test_sim_loss_identical_vectors_is_zero() -> None:
    # given
    rows = _t([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    # when / then
    torch.testing.assert_close(sim_loss(rows, rows), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-6)


def test_sim_loss_orthogonal_one_hots_is_one() -> None:
    # given
    eye = torch.eye(4, dtype=torch.float64)
    # when / then
    torch.testing.assert_close(sim_loss(eye, eye.roll(1, dims=0)), torch.ones(4, dtype=torch.float64))


def test_sim_loss_matches_cosine_by_hand_and_ignores_scale() -> None:
    # given
    a, b = [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]
    # when
    value = sim_loss(_t([a]), _t([b]))
    scaled = sim_loss(_t([[10 * x for x in a]]), _t([b]))
    # then
    assert value.item() == pytest.approx(_sim(a, b), abs=1e-12)
    assert scaled.item() == pytest.approx(value.item(), abs=1e-12)


def test_sharpen_with_temperature_one_is_identity() -> None:
    # given
    probabilities = torch.softmax(torch.randn(5, 7, generator=torch.Generator().manual_seed(0)), dim=1)
    # when / then
    torch.testing.assert_close(sharpen(probabilities, 1.0), probabilities)


def test_sharpen_by_hand() -> None:
    # given: q^(1/T) / sum q^(1/T) with T = 0.5 squares and renormalises
    q = [0.5, 0.3, 0.2]
    total = sum(x**2 for x in q)
    # when
    result = sharpen(_t([q]), 0.5)
    # then
    torch.testing.assert_close(result, _t([[x**2 / total for x in q]]))


def test_sharpen_small_temperature_approaches_one_hot() -> None:
    # given
    probabilities = _t([[0.3, 0.45, 0.25], [0.34, 0.33, 0.33]])
    # when
    mild, hard = sharpen(probabilities, 0.5), sharpen(probabilities, 1e-3)
    # then: entropy falls with T and T -> 0 puts all mass on the argmax, with no overflow
    torch.testing.assert_close(hard, _t([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), rtol=0, atol=1e-6)
    assert (mild.max(dim=1).values > probabilities.max(dim=1).values).all()
    assert torch.isfinite(sharpen(_t([[1.0, 0.0, 0.0]]), 1e-4)).all()


def test_sharpen_rows_sum_to_one() -> None:
    # given
    probabilities = torch.softmax(3 * torch.randn(6, 10, generator=torch.Generator().manual_seed(1)), dim=1)
    # when / then
    for temperature in (0.05, 0.3, 0.5, 1.0, 2.0):
        sums = sharpen(probabilities, temperature).sum(dim=1)
        torch.testing.assert_close(sums, torch.ones(6), rtol=0, atol=1e-6)


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_sharpen_rejects_non_positive_temperature(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sharpen(_t([[0.5, 0.5]]), temperature)


def test_mix_contrastive_loss_by_hand() -> None:
    # given
    lam, tau = 0.3, 2.0
    a = [(1 - lam) * _sim(o, r) for o, r in zip(OUTPUTS, RETAIN_TARGETS, strict=True)]
    b = [lam * _sim(o, f) for o, f in zip(OUTPUTS, FORGET_TARGETS, strict=True)]
    expected = sum(a) / len(a) - _logsumexp([b_k / tau for b_k in b])
    # when
    value = mix_contrastive_loss(_t(OUTPUTS), _t(RETAIN_TARGETS), _t(FORGET_TARGETS), lam, tau)
    # then
    assert value.item() == pytest.approx(expected, abs=1e-12)
    # and it is the released code's batch sum divided by N: (sum a - N log sum exp(b / tau)) / N
    assert value.item() == pytest.approx((sum(a) - 3 * _logsumexp([b_k / tau for b_k in b])) / 3, abs=1e-12)


def test_mix_contrastive_loss_with_lambda_zero_ignores_forget_targets() -> None:
    # given: lam = 0 -> b_k = 0, so the second term is log N whatever the forget targets
    outputs, retain = _t(OUTPUTS[:2]), _t(RETAIN_TARGETS[:2])
    # when
    value = mix_contrastive_loss(outputs, retain, _t(FORGET_TARGETS[:2]), 0.0, 1.0)
    other = mix_contrastive_loss(outputs, retain, _t(FORGET_TARGETS[1:]), 0.0, 1.0)
    # then
    expected = (_sim(OUTPUTS[0], RETAIN_TARGETS[0]) + _sim(OUTPUTS[1], RETAIN_TARGETS[1])) / 2 - math.log(2)
    assert value.item() == pytest.approx(expected, abs=1e-12)
    assert other.item() == pytest.approx(expected, abs=1e-12)


def test_real_contrastive_loss_by_hand() -> None:
    # given: 2 retain and 3 forget samples
    tau = 0.5
    retain_outputs, retain_targets = OUTPUTS[:2], RETAIN_TARGETS[:2]
    forget_outputs, forget_targets = OUTPUTS, FORGET_TARGETS
    s = [_sim(o, p) for o, p in zip(retain_outputs, retain_targets, strict=True)]
    s_forget = [_sim(o, p) for o, p in zip(forget_outputs, forget_targets, strict=True)]
    expected = (s[0] + s[1]) / 2 - _logsumexp([v / tau for v in s_forget])
    # when
    value = real_contrastive_loss(_t(retain_outputs), _t(retain_targets), _t(forget_outputs), _t(forget_targets), tau)
    # then
    assert value.item() == pytest.approx(expected, abs=1e-12)


def _step_on_logits(
    loss_of_outputs: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, lr: float = 0.5
) -> torch.Tensor:
    """One gradient-descent step on ``logits`` for ``loss_of_outputs(softmax(logits))``; returns new softmax."""
    logits = logits.clone().requires_grad_(True)
    loss_of_outputs(torch.softmax(logits, dim=1)).backward()
    assert logits.grad is not None
    with torch.no_grad():
        return torch.softmax(logits - lr * logits.grad, dim=1)


def test_descending_l_mix_moves_outputs_toward_retain_and_away_from_forget_targets() -> None:
    # given: near-uniform outputs, retain targets class 0, forget targets class 1
    logits = 0.1 * torch.randn(4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    retain = torch.nn.functional.one_hot(torch.zeros(4, dtype=torch.long), 5).double()
    forget = torch.nn.functional.one_hot(torch.ones(4, dtype=torch.long), 5).double()
    before = torch.softmax(logits, dim=1)
    # when
    after = _step_on_logits(lambda out: mix_contrastive_loss(out, retain, forget, 0.4, 1.0), logits)
    # then: every row is closer to its retain target and farther from its forget target
    assert (sim_loss(after, retain) < sim_loss(before, retain)).all()
    assert (sim_loss(after, forget) > sim_loss(before, forget)).all()
    # and the generator (which descends -L_mix) moves them the other way
    adversarial = _step_on_logits(lambda out: -mix_contrastive_loss(out, retain, forget, 0.4, 1.0), logits)
    assert (sim_loss(adversarial, retain) > sim_loss(before, retain)).all()


def test_descending_l_real_keeps_retain_and_pushes_forget_outputs() -> None:
    # given: retain rows and forget rows, both near-uniform, with one-hot targets
    logits = 0.1 * torch.randn(6, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    retain_targets = torch.nn.functional.one_hot(torch.tensor([0, 1, 2]), 4).double()
    forget_targets = torch.nn.functional.one_hot(torch.tensor([3, 3, 2]), 4).double()
    before = torch.softmax(logits, dim=1)

    def loss(out: torch.Tensor) -> torch.Tensor:
        return real_contrastive_loss(out[:3], retain_targets, out[3:], forget_targets, 1.0)

    # when
    after = _step_on_logits(loss, logits)
    # then
    assert (sim_loss(after[:3], retain_targets) < sim_loss(before[:3], retain_targets)).all()
    assert (sim_loss(after[3:], forget_targets) > sim_loss(before[3:], forget_targets)).all()


def test_larger_tau_forgets_more_gently() -> None:
    # given: the same forget rows under two temperatures
    logits = 0.1 * torch.randn(4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    retain_targets = torch.nn.functional.one_hot(torch.tensor([0, 1]), 4).double()
    forget_targets = torch.nn.functional.one_hot(torch.tensor([2, 3]), 4).double()

    def forget_grad_norm(tau: float) -> float:
        leaf = logits.clone().requires_grad_(True)
        out = torch.softmax(leaf, dim=1)
        real_contrastive_loss(out[:2], retain_targets, out[2:], forget_targets, tau).backward()
        assert leaf.grad is not None
        return float(leaf.grad[2:].norm())

    # when / then
    assert forget_grad_norm(20.0) < forget_grad_norm(1.0)
