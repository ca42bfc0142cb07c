"""Test-time augmentation for nets trained on flipped and shifted images (airbench's level 2):
the logits of the image and its mirror, averaged with those of the pair shifted one pixel up-left
and down-right. Used by the evaluation and the page alike (lightning_modules/bundle.py)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

PASSES = 6  # forward passes per image: three views, each with its mirror


def _mirrored(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (net(x) + net(x.flip(-1)))


def tta_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x: standardised N×C×H×W images."""
    h, w = x.shape[-2:]
    if min(h, w) < 2:  # reflection needs two pixels
        return _mirrored(net, x)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[..., :h, :w], padded[..., 2:h + 2, 2:w + 2]]
    return 0.5 * _mirrored(net, x) + 0.25 * sum(_mirrored(net, s) for s in shifted)
