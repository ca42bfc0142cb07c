"""Where this project leans on torch internals, in one place (Ray's are in cluster/ray_compat.py):
an upgrade that moves one breaks here, loudly; tests/lightning_modules/test_torch_compat.py
fails when one is gone."""
from __future__ import annotations

import torch

CHECKED_WITH = {"torch": "2.13.0"}


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU computes bf16 matmuls natively (torch has no public query)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
