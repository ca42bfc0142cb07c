"""What each layer of a network computes for one input: forward hooks on the activation
modules (conv feature maps are C×H×W, dense layers a vector), plus the logits."""
from __future__ import annotations

import torch
from torch import nn

from lightning_modules.nets import ACTIVATIONS

# The activation modules the families are built with, by type, named as the config names them.
ACTIVATION_NAMES: dict[type, str] = {type(make()): name for name, make in ACTIVATIONS.items()}


@torch.inference_mode()
def layer_outputs(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor]]]:
    """(logits, [(activation's name, its output for the first image), ...] in forward order)."""
    seen: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(
        lambda _m, _i, out, name=ACTIVATION_NAMES[type(m)]: seen.append(
            (name, out[0].detach().clone())))
        for m in net.modules() if type(m) in ACTIVATION_NAMES]
    try:
        logits = net(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, seen
