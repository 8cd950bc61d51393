"""The MixBlock: a cross-attention generator of pixel-wise mixing masks for (forget, retain) image pairs.

It reads feature maps of the frozen original model for a forget image and a retain image, conditions them on the
mixing ratio lambda, and outputs a two-channel mask at image resolution whose channels sum to one per pixel.
Shapes follow ``mixunlearn-method.md`` section 3 (OpenMixup's adaptive mask): with C = 256 it has 66,306
parameters, the paper's "66K".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MixBlock(nn.Module):
    """Cross-attention mask generator.

    Args:
        feature_channels: C, channels of the feature map it reads.
        reduction: query/key width is ``C // reduction`` (2 in the paper).
        upsample_mode: ``"bilinear"`` or ``"nearest"`` for the mask logits' upsampling to image size.
        init_std: standard deviation of the normal init of the conv weights (0.01 as in OpenMixup), biases zero;
            small weights make the first masks close to 0.5 everywhere.
    """

    def __init__(
        self,
        feature_channels: int,
        reduction: int = 2,
        upsample_mode: str = "bilinear",
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        if upsample_mode not in ("bilinear", "nearest"):
            raise ValueError(f"upsample_mode must be 'bilinear' or 'nearest', got {upsample_mode!r}")
        inner = max(1, feature_channels // reduction)
        self.inner = inner
        self.upsample_mode = upsample_mode
        # One extra input channel carries the constant lambda (forget side) or 1 - lambda (retain side) plane.
        self.query = nn.Conv2d(feature_channels + 1, inner, kernel_size=1)
        self.key = nn.Conv2d(feature_channels + 1, inner, kernel_size=1)
        self.value = nn.Conv2d(feature_channels + 1, 1, kernel_size=1)
        for conv in (self.query, self.key, self.value):
            nn.init.normal_(conv.weight, mean=0.0, std=init_std)
            nn.init.zeros_(conv.bias)

    def forward(
        self,
        forget_features: torch.Tensor,
        retain_features: torch.Tensor,
        lam: float,
        image_size: tuple[int, int],
    ) -> torch.Tensor:
        """Return the ``(N, 2, H, W)`` mask; channel 0 weights the forget image, channel 1 the retain image."""
        if forget_features.shape != retain_features.shape:
            raise ValueError(
                f"feature maps differ: forget {tuple(forget_features.shape)} vs retain {tuple(retain_features.shape)}"
            )
        n, _, h, w = forget_features.shape
        plane = forget_features.new_ones(n, 1, h, w)
        side_f = torch.cat([forget_features, plane * lam], dim=1)
        side_r = torch.cat([retain_features, plane * (1.0 - lam)], dim=1)
        logit_f = self._attend(side_f, side_r)
        logit_r = self._attend(side_r, side_f)
        logits = torch.cat([logit_f, logit_r], dim=1).view(n, 2, h, w)
        if (h, w) != tuple(image_size):
            kwargs = {"align_corners": False} if self.upsample_mode == "bilinear" else {}
            logits = F.interpolate(logits, size=tuple(image_size), mode=self.upsample_mode, **kwargs)
        return torch.softmax(logits, dim=1)

    def _attend(self, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """Mask logits of one side: softmax(Q(own)^T K(other) / sqrt(d)) @ V(own), shape ``(N, 1, h*w)``."""
        q = self.query(own).flatten(2)  # (N, d, hw)
        k = self.key(other).flatten(2)  # (N, d, hw)
        v = self.value(own).flatten(2)  # (N, 1, hw)
        attention = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(self.inner), dim=-1)  # (N, hw, hw)
        return (attention @ v.transpose(1, 2)).transpose(1, 2)


def mix_images(mask: torch.Tensor, forget_images: torch.Tensor, retain_images: torch.Tensor) -> torch.Tensor:
    """Pixel-space mixing ``M_f * x_f + M_r * x_r``; the mask broadcasts over the image channels."""
    return mask[:, 0:1] * forget_images + mask[:, 1:2] * retain_images
