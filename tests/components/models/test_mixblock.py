"""MixBlock: shape, normalisation, size and initial behaviour of the mask; pixel-space mixing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from components.models.mixblock import MixBlock, mix_images


def _features(n: int, c: int, h: int, w: int, seed: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, c, h, w, generator=generator), scale * torch.randn(n, c, h, w, generator=generator)


def _randomise(block: MixBlock, std: float = 1.0, seed: int = 0) -> MixBlock:
    """Replace the small init by non-trivial weights, as after some generator training."""
    torch.manual_seed(seed)
    for conv in (block.query, block.key, block.value):
        nn.init.normal_(conv.weight, std=std)
        nn.init.normal_(conv.bias, std=std)
    return block


@pytest.mark.parametrize("upsample_mode", ["bilinear", "nearest"])
@pytest.mark.parametrize(
    ("channels", "feature_size", "image_size"),
    [(32, (7, 7), (28, 28)), (32, (2, 2), (8, 8)), (256, (8, 8), (32, 32)), (16, (4, 4), (4, 4))],
)
def test_mask_shape_and_channels_sum_to_one(
    channels: int, feature_size: tuple[int, int], image_size: tuple[int, int], upsample_mode: str
) -> None:
    # given
    torch.manual_seed(0)
    block = _randomise(MixBlock(channels, upsample_mode=upsample_mode), std=0.3)
    forget, retain = _features(3, channels, *feature_size, seed=1)
    # when
    mask = block(forget, retain, 0.3, image_size)
    # then
    assert mask.shape == (3, 2, *image_size)
    assert (mask >= 0).all()
    torch.testing.assert_close(mask.sum(dim=1), torch.ones(3, *image_size), rtol=0, atol=1e-6)


def test_parameter_count_for_resnet18_layer3() -> None:
    # C = 256, reduction 2: Q and K 257 -> 128 with bias, V 257 -> 1 with bias.
    assert sum(p.numel() for p in MixBlock(256).parameters()) == 2 * (257 * 128 + 128) + (257 + 1) == 66_306


@pytest.mark.parametrize(("channels", "feature_size", "image_size"), [(256, (8, 8), (32, 32)), (32, (7, 7), (28, 28))])
def test_initial_masks_are_close_to_one_half(
    channels: int, feature_size: tuple[int, int], image_size: tuple[int, int]
) -> None:
    # given: the default N(0, 0.01^2) init with zero biases
    torch.manual_seed(0)
    block = MixBlock(channels)
    forget, retain = _features(4, channels, *feature_size, seed=2)
    # when
    with torch.no_grad():
        mask = block(forget, retain, 0.8, image_size)
    # then
    assert (mask - 0.5).abs().max() < 0.05
    assert all(bool((conv.bias.detach() == 0).all()) for conv in (block.query, block.key, block.value))


def test_mismatched_feature_shapes_raise() -> None:
    # given
    block = MixBlock(32)
    forget = torch.randn(2, 32, 7, 7)
    # when / then
    for retain in (torch.randn(2, 32, 6, 7), torch.randn(3, 32, 7, 7), torch.randn(2, 16, 7, 7)):
        with pytest.raises(ValueError, match="feature maps differ"):
            block(forget, retain, 0.5, (28, 28))


def test_unknown_upsample_mode_raises() -> None:
    with pytest.raises(ValueError, match="upsample_mode"):
        MixBlock(32, upsample_mode="bicubic")


def test_mix_images_matches_the_formula_by_hand() -> None:
    # given: a random normalised mask and 3-channel images
    generator = torch.Generator().manual_seed(3)
    mask = torch.softmax(torch.randn(2, 2, 4, 5, generator=generator), dim=1)
    forget = torch.randn(2, 3, 4, 5, generator=generator)
    retain = torch.randn(2, 3, 4, 5, generator=generator)
    # when
    mixed = mix_images(mask, forget, retain)
    # then: every pixel of every image channel is M_f * x_f + M_r * x_r
    expected = torch.empty_like(forget)
    for n in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(5):
                    m_f, m_r = float(mask[n, 0, i, j]), float(mask[n, 1, i, j])
                    expected[n, c, i, j] = m_f * float(forget[n, c, i, j]) + m_r * float(retain[n, c, i, j])
    torch.testing.assert_close(mixed, expected)


def test_mix_images_channel_zero_selects_the_forget_image() -> None:
    # given
    forget, retain = torch.full((1, 3, 2, 2), 7.0), torch.full((1, 3, 2, 2), -1.0)
    mask = torch.zeros(1, 2, 2, 2)
    mask[:, 0] = 1.0
    # when / then
    torch.testing.assert_close(mix_images(mask, forget, retain), forget)
    torch.testing.assert_close(mix_images(mask.flip(1), forget, retain), retain)


def test_lambda_changes_the_mask_once_weights_are_non_trivial() -> None:
    # given
    block = _randomise(MixBlock(32), std=0.5)
    forget, retain = _features(2, 32, 7, 7, seed=4)
    # when
    with torch.no_grad():
        low, high = block(forget, retain, 0.1, (28, 28)), block(forget, retain, 0.9, (28, 28))
    # then
    assert (low - high).abs().max() > 1e-3


def test_mask_is_differentiable_in_every_parameter() -> None:
    # given
    block = _randomise(MixBlock(32), std=0.2)
    forget, retain = _features(2, 32, 2, 2, seed=5)
    target = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    # when
    mask = block(forget, retain, 0.4, (8, 8))
    ((mask[:, 0:1] - target) ** 2).sum().backward()
    # then
    for name, parameter in block.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert block.query.weight.grad is not None
    assert block.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e5])
@pytest.mark.parametrize("randomised", [False, True])
def test_no_nan_on_random_and_large_magnitude_features(scale: float, randomised: bool) -> None:
    # given
    torch.manual_seed(0)
    block = MixBlock(32)
    if randomised:
        _randomise(block, std=1.0)
    forget, retain = _features(3, 32, 7, 7, seed=7, scale=scale)
    # when
    mask = block(forget, retain, 0.5, (28, 28))
    # then
    assert torch.isfinite(mask).all()
    torch.testing.assert_close(mask.sum(dim=1), torch.ones(3, 28, 28), rtol=0, atol=1e-6)
