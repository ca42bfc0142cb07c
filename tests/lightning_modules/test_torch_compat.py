"""torch internals this project uses (lightning_modules/torch_compat.py): each still there."""
from __future__ import annotations

import torch

from lightning_modules import torch_compat


def test_checked_version_is_the_installed_one():
    assert torch.__version__.split("+")[0] == torch_compat.CHECKED_WITH["torch"]


def test_the_private_cpu_queries_still_exist_and_answer_a_bool():
    assert isinstance(torch_compat.cpu_has_native_bf16(), bool)
