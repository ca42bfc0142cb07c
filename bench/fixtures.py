"""Real inputs made small, shared by the benchmarks and the tests: a subset of a real IDX set,
an untrained (but real) model bundle, a PNG of an array."""
from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def random_bundle(store: str, data_uri: str, family: str = "bp", run: str = "run-x",
                  dataset: str = "mnist", seed: int = 0) -> str:
    """A real (untrained) model bundle for a prepared dataset: tests of evaluation and
    publishing that need no training."""
    import torch

    from lightning_modules.bundle import write_bundle
    from lightning_modules.config import ModelConfig
    from lightning_modules.datamodule import load_manifest
    from lightning_modules.nets import build_net
    from lightning_modules.store import join, write_json

    torch.manual_seed(seed)
    m = load_manifest(data_uri)
    model = ModelConfig(family=family, preset="small")
    bundle = join(store, "models", dataset, family, run)
    write_bundle(bundle, build_net(model, m["shape"], len(m["classes"])).state_dict(),
                 {"dataset": dataset, "family": family, "run_name": run, "data_uri": data_uri,
                  "data_key": m["key"], "model": model.model_dump(), "classes": m["classes"],
                  "shape": m["shape"], "mean": m["mean"], "std": m["std"],
                  "config": {"seed": seed, "dataset": dataset}, "train_seconds": 1.0,
                  "metrics": {"val/acc": 0.1 + 0.01 * seed},
                  "history": [{"epoch": 1, "val/acc": 0.1, "val/loss": 2.3}]})
    write_json(join(store, "models", dataset, family, "latest.json"), {"uri": bundle})
    return bundle


def idx_subset(src: Path, dst: Path, n_train: int, n_test: int) -> Path:
    """The first images of a real IDX set (MNIST, Fashion-MNIST) as a small IDX set."""
    dst.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, header in (("images-idx3", 16), ("labels-idx1", 8)):
            name = f"{prefix}-{kind}-ubyte.gz"
            raw = gzip.decompress((src / name).read_bytes())
            item = 28 * 28 if kind.startswith("images") else 1
            head = bytearray(raw[:header])
            head[4:8] = struct.pack(">I", n)
            (dst / name).write_bytes(gzip.compress(bytes(head) + raw[header:header + n * item]))
    return dst
