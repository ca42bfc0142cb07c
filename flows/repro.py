"""The repro capsule published beside each model: code, packages, seeds, data, hardware."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from lightning_modules import layout
from lightning_modules.store import filesystem, join

PACKAGES = ("torch", "lightning", "torchmetrics", "ray", "prefect", "numpy", "fsspec", "s3fs",
            "safetensors", "pydantic")
_REPO = Path(__file__).resolve().parents[1]


def git_state() -> dict[str, Any]:
    """The commit the code came from, and whether the tree had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(_REPO), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}  # installed from a wheel, or no git on the node


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def hardware() -> dict[str, Any]:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"machine": platform.machine(), "system": platform.system(),
            "cpu_count": os.cpu_count(), "gpus": gpus, "node": platform.node()}


def data_fingerprint(data_uri: str) -> dict[str, str]:
    """The prepared dataset's key and the SHA-256 of its manifest (which hashes every array)."""
    fs, path = filesystem(data_uri)
    raw = fs.cat_file(join(path, layout.MANIFEST))
    return {"uri": data_uri, "manifest_sha256": hashlib.sha256(raw).hexdigest()}


def capsule(bundle_infos: list[dict], tune_best: dict | None) -> dict[str, Any]:
    """Everything needed to reproduce the published models of one (dataset, family)."""
    first = bundle_infos[0]
    return {"git": git_state(), "versions": versions(), "hardware": hardware(),
            "data": {**data_fingerprint(first["data_uri"]), "key": first.get("data_key")},
            "seeds": [b["config"]["seed"] for b in bundle_infos],
            "train_configs": [b["config"] for b in bundle_infos],
            "tuning": None if tune_best is None else {"name": tune_best.get("name"),
                                                      "params": tune_best.get("params")}}
