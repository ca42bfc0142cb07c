"""Where the benchmarks write: bench/results/<name>.json, each with the machine and versions it
ran on (the README and docs/benchmarks.md quote these files)."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import torch

    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_native": bool(torch.cpu._is_avx512_bf16_supported()
                                or torch.cpu._is_amx_tile_supported()),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__}


def write(name: str, result: dict[str, Any]) -> str:
    """The result as pretty JSON under bench/results/, with the machine; returns the text."""
    text = json.dumps({"machine": machine(), **result}, indent=2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(text + "\n")
    return text
