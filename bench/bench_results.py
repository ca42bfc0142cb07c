"""Where the benchmarks write: bench/results/<name>.json, each with the machine and versions it
ran on (bench/README.md quotes these files)."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lightning_modules.torch_compat import cpu_has_native_bf16

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_native": cpu_has_native_bf16(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__}


def command() -> str:
    """How this benchmark was run, as a user would type it."""
    return "python " + " ".join(["bench/" + Path(sys.argv[0]).name, *sys.argv[1:]])


def write(name: str, result: dict[str, Any]) -> str:
    """The result as pretty JSON under bench/results/, with the machine; returns the text."""
    text = json.dumps({"machine": machine(), **result}, indent=2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(text + "\n")
    return text


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """FLOP/s of an n×n matrix multiply in this dtype on this machine's threads, right now
    (n shrinks where the dtype has no fast kernels: bf16 without AVX512-BF16 or AMX)."""
    probe = torch.randn(256, 256).to(dtype)
    t = time.perf_counter()
    probe @ probe
    if 2 * 256 ** 3 / (time.perf_counter() - t) < 5e9:
        n = 512
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    done, t = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - t < seconds:
        a @ b
        done += 1
    return 2 * n ** 3 * done / (time.perf_counter() - t)
