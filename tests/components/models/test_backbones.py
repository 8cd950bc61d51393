"""Backbone registry: every registered model on tiny random inputs (timm-style shape, split and gradient checks)."""

from __future__ import annotations

import pytest
import torch

from components.models.backbones import BACKBONES, Backbone, SmallCNN, build_backbone

NUM_CLASSES = 10

# name -> [(image_shape, batch, expected feature map (C, h, w))]; every registered name must have cases.
CASES: dict[str, list[tuple[tuple[int, int, int], int, tuple[int, int, int]]]] = {
    "small_cnn": [((1, 8, 8), 3, (32, 2, 2)), ((1, 28, 28), 2, (32, 7, 7))],
    "resnet18": [((3, 32, 32), 2, (256, 8, 8))],
}
PARAMS = [
    pytest.param(name, shape, batch, feature_shape, id=f"{name}-{'x'.join(map(str, shape))}")
    for name in sorted(BACKBONES)
    for shape, batch, feature_shape in CASES.get(name, [])
]


def _model(name: str, shape: tuple[int, int, int]) -> Backbone:
    torch.manual_seed(0)
    return build_backbone(name, shape, NUM_CLASSES)


def test_every_registered_backbone_has_a_test_case() -> None:
    assert set(BACKBONES) == set(CASES)


@pytest.mark.parametrize(("name", "shape", "batch", "feature_shape"), PARAMS)
def test_forward_shapes_and_feature_head_split(
    name: str, shape: tuple[int, int, int], batch: int, feature_shape: tuple[int, int, int]
) -> None:
    # given
    model = _model(name, shape).eval()
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
    # when
    with torch.no_grad():
        logits = model(x)
        feature_map = model.features(x)
        via_split = model.head(feature_map)
    # then
    assert logits.shape == (batch, NUM_CLASSES)
    assert feature_map.shape == (batch, *feature_shape)
    assert feature_map.shape[1] == model.feature_channels
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, via_split, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "shape", "batch", "feature_shape"), PARAMS)
def test_backward_reaches_every_parameter(
    name: str, shape: tuple[int, int, int], batch: int, feature_shape: tuple[int, int, int]
) -> None:
    # given
    model = _model(name, shape).train()
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(2))
    # when
    model(x).mean().backward()
    # then
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None
        assert torch.isfinite(parameter.grad).all(), parameter_name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)


def test_unknown_name_lists_the_registered_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'vgg99'") as error:
        build_backbone("vgg99", (1, 8, 8), NUM_CLASSES)
    for name in BACKBONES:
        assert name in str(error.value)


@pytest.mark.parametrize("shape", [(1, 3, 3), (1, 3, 8), (1, 8, 2)])
def test_small_cnn_refuses_too_small_input(shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="at least 4x4"):
        SmallCNN(shape, NUM_CLASSES)


def test_small_cnn_accepts_the_smallest_input() -> None:
    # given
    model = SmallCNN((1, 4, 4), NUM_CLASSES)
    # when
    logits = model(torch.zeros(1, 1, 4, 4))
    # then
    assert logits.shape == (1, NUM_CLASSES)
