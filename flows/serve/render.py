"""What the page shows of one classification: the input as the network sees it, every layer's
activations (feature maps as PNG grids, dense units as values) and the class probabilities."""
from __future__ import annotations

import base64
import io
import time
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from lightning_modules.activations import layer_outputs
from lightning_modules.preprocess import to_model_input


def png_b64(a: np.ndarray) -> str:
    """A uint8 H×W (grey) or H×W×3 array as a base64 PNG."""
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _norm(a: torch.Tensor) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo + 1e-8) * 255).to(torch.uint8).numpy()


def describe_layer(index: int, activation: str, out: torch.Tensor, max_maps: int = 64,
                   max_units: int = 128) -> dict:
    """Conv layers as a grid of feature maps (PNG), dense layers as unit values; the title says
    what the layer is and how much of it is shown."""
    if out.dim() == 3:
        maps = out[:max_maps]
        cols = min(8, len(maps))
        rows = -(-len(maps) // cols)
        h, w = maps.shape[1:]
        grid = np.zeros((rows * (h + 1), cols * (w + 1)), dtype=np.uint8)
        for i, m in enumerate(maps):
            r, c = divmod(i, cols)
            grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = _norm(m)
        shown = f"{len(out)} feature maps" if len(maps) == len(out) else \
            f"{len(maps)} of {len(out)} feature maps"
        return {"name": f"layer {index}: convolution + {activation}, {shown} of {h}×{w}",
                "kind": "conv", "shape": list(out.shape), "maps": len(maps), "png": png_b64(grid)}
    units = out.flatten()
    top = units[:max_units]
    peak = float(top.abs().max()) or 1.0
    shown = f"{len(units)} units" if len(top) == len(units) else \
        f"the first {len(top)} of {len(units)} units"
    return {"name": f"layer {index}: dense + {activation}, {shown}", "kind": "dense",
            "shape": list(out.shape), "values": [round(float(v) / peak, 4) for v in top]}


def classify(pred: Any, meta: dict, img: Image.Image, centre: Optional[bool]) -> dict:
    """The whole classification process for one image."""
    t = time.perf_counter()
    if centre is None:  # MNIST-like digits are centred by mass; clothes and colour are fitted
        centre = pred.shape[0] == 1 and "fashion" not in meta["dataset"]
    x = torch.from_numpy(to_model_input(img, pred.shape, centre))[None]
    _, layers = layer_outputs(pred.net, pred.preprocess(x))
    probs = pred.probs(x)[0]  # with the test-time augmentation the evaluation used
    top = int(probs.argmax())
    seen = x[0].numpy()
    return {"model": meta["id"], "label": pred.classes[top], "label_index": top,
            "probabilities": {c: round(float(p), 6) for c, p in zip(pred.classes, probs)},
            "input": {"shape": list(seen.shape),
                      "png": png_b64(seen[0] if seen.shape[0] == 1 else seen.transpose(1, 2, 0))},
            "layers": [describe_layer(i, act, o) for i, (act, o) in enumerate(layers, 1)],
            "ms": round((time.perf_counter() - t) * 1000, 2)}
