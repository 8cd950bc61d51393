"""Classifier backbones, chosen by name through a registry.

Every backbone splits into ``features`` (the intermediate map the MixBlock reads) and ``head`` (the rest of the
network), so ``model(x) == model.head(model.features(x))``. MixUnlearn reads ``features`` of the frozen original
model; nothing else in the project depends on where the split is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import nn


class Backbone(nn.Module, ABC):
    """A classifier that exposes the feature map the MixBlock conditions on."""

    feature_channels: int

    @abstractmethod
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``(N, feature_channels, h, w)`` map the MixBlock reads."""

    @abstractmethod
    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Map the feature map to class logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


BackboneFactory = Callable[[tuple[int, int, int], int], Backbone]
BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register a factory ``(image_shape, num_classes) -> Backbone`` under ``name``."""

    def decorate(factory: BackboneFactory) -> BackboneFactory:
        BACKBONES[name] = factory
        return factory

    return decorate


def build_backbone(name: str, image_shape: tuple[int, int, int], num_classes: int) -> Backbone:
    """Instantiate a registered backbone for images of ``(C, H, W)`` and ``num_classes`` outputs."""
    if name not in BACKBONES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](image_shape, num_classes)


class SmallCNN(Backbone):
    """The LAF small CNN (two 5x5 conv blocks, fc 256 -> 128 -> classes), adapted to the input size.

    LAF uses it for MNIST and Fashion-MNIST (28x28, flattened 32*7*7 = 1568). Padding 2 keeps the spatial size
    through each conv so only the two max-pools shrink it; any input of at least 4x4 works (digits is 8x8).
    The feature map is the output of the last conv block (32 channels).
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = image_shape
        if height < 4 or width < 4:
            raise ValueError(f"SmallCNN needs images of at least 4x4, got {height}x{width}")
        self.feature_channels = 32
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        flat = 32 * (height // 4) * (width // 4)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.classifier(feature_map)


@register_backbone("small_cnn")
def _small_cnn(image_shape: tuple[int, int, int], num_classes: int) -> Backbone:
    return SmallCNN(image_shape, num_classes)


class BasicBlock(nn.Module):
    """The ResNet basic block (two 3x3 convs with a projection shortcut when the shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(Backbone):
    """CIFAR-style ResNet-18 (3x3 stride-1 stem, no max-pool): 11.2M parameters for 10 classes.

    The feature map is the ``layer3`` output (256 channels; 8x8 for 32x32 inputs), the one the MixBlock of
    the paper reads.
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels = image_shape[0]
        self.feature_channels = 256
        self.stem = nn.Sequential(
            nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        self.layer1 = self._stage(64, 64, stride=1)
        self.layer2 = self._stage(64, 128, stride=2)
        self.layer3 = self._stage(128, 256, stride=2)
        self.layer4 = self._stage(256, 512, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    @staticmethod
    def _stage(in_planes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layer4(feature_map)), 1))


@register_backbone("resnet18")
def _resnet18(image_shape: tuple[int, int, int], num_classes: int) -> Backbone:
    return ResNet18(image_shape, num_classes)
