"""What each layer of a network computes for one input: forward hooks on the activation
modules (conv feature maps are C×H×W, dense layers a vector), plus the logits."""
from __future__ import annotations

import torch
from torch import nn

ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid)


@torch.inference_mode()
def layer_outputs(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor]]]:
    """(logits, [(layer name, activation of the first image), ...] in forward order)."""
    seen: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(
        lambda _m, _i, out, name=name: seen.append((name, out[0].detach().clone())))
        for name, m in net.named_modules() if isinstance(m, ACTIVATION_TYPES)]
    try:
        logits = net(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, seen
