"""The deep CNN family, airbench-class (after Keller Jordan's cifar10-airbench and tysam-code's
hlb-CIFAR10): a 2×2 whitening stem fixed from the training data's patch covariance, three
conv groups (conv, pool, batch norm, activation, conv, batch norm, activation) whose batch norm
keeps a frozen unit scale, and a max-pooled linear head scaled down. Any C×H×W input."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

WHITEN_KERNEL = 2
HEAD_SCALE = 1 / 9  # logits scaled down, so a fresh net starts near-uniform (airbench's value)
BN_MOMENTUM = 0.4  # torch's convention (weight of the new batch): airbench's 0.6 running decay


class FrozenScaleNorm(nn.BatchNorm2d):
    """Batch norm whose scale stays 1 (only its shift learns): the scale would only fight
    the next conv's weights and the weight decay."""

    def __init__(self, width: int) -> None:
        super().__init__(width, eps=1e-12, momentum=BN_MOMENTUM)
        self.weight.requires_grad_(False)


class Whitening(nn.Conv2d):
    """A 2×2 conv whose filters are the training patches' covariance eigenvectors scaled by
    1/sqrt(eigenvalue), each with its negation (so a ReLU-like activation keeps both signs).
    Its weights never train; `fit` sets them once, before the first step, and the buffer
    `fitted` travels with the checkpoint so a resumed run keeps them."""

    def __init__(self, channels: int) -> None:
        k = WHITEN_KERNEL
        super().__init__(channels, 2 * channels * k * k, k, padding=0, bias=True)
        self.weight.requires_grad_(False)
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """x: standardised training images (N×C×H×W, a few thousand suffice)."""
        c, k = x.shape[1], WHITEN_KERNEL
        patches = x.float().unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, c * k * k)
        cov = patches.T @ patches / len(patches)
        eigval, eigvec = torch.linalg.eigh(cov)
        filters = (eigvec.T / torch.sqrt(eigval.clamp_min(0) + eps)[:, None]).flip(0)
        filters = filters.reshape(c * k * k, c, k, k)  # patches were flattened as (c, kh, kw)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))
        self.bias.zero_()
        self.fitted.fill_(True)


class ConvGroup(nn.Module):
    """conv → (pool) → norm → act → conv → norm → act; pooling while the map is 2×2 or
    more."""

    def __init__(self, a: int, b: int, act: Callable[[], nn.Module], pool: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(a, b, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.norm1, self.act1 = FrozenScaleNorm(b), act()
        self.conv2 = nn.Conv2d(b, b, 3, padding=1, bias=False)
        self.norm2, self.act2 = FrozenScaleNorm(b), act()
        for conv in (self.conv1, self.conv2):  # start each conv near identity (airbench's init)
            nn.init.dirac_(conv.weight[: conv.in_channels])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.pool(self.conv1(x))))
        return self.act2(self.norm2(self.conv2(x)))


class DeepCNN(nn.Module):
    """widths: [group1, group2, group3]."""

    def __init__(self, shape: tuple[int, int, int], classes: int, widths: list[int],
                 act: Callable[[], nn.Module], dropout: float) -> None:
        super().__init__()
        self.whiten = Whitening(shape[0])
        self.whiten_act = act()
        side = min(shape[1:]) - WHITEN_KERNEL + 1
        groups, prev = [], self.whiten.out_channels
        for width in widths:
            groups.append(ConvGroup(prev, width, act, pool=side >= 2))
            side, prev = (side // 2 if side >= 2 else side), width
        self.groups = nn.Sequential(*groups)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(prev, classes, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.whiten_act(self.whiten(x)))
        return self.head(x) * HEAD_SCALE


def norm_shifts(net: nn.Module) -> list[nn.Parameter]:
    """The batch norms' trainable shifts: airbench trains them at a far higher learning rate."""
    return [m.bias for m in net.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
            and m.bias.requires_grad]
