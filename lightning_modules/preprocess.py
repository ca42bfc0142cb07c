"""A user's picture → the uint8 C×H×W input a model was trained on (as MNIST was made: the
digit light on dark, fitted into a 20×20 box, centred by its centre of mass in 28×28)."""
from __future__ import annotations

import numpy as np
from PIL import Image


def to_model_input(img: Image.Image, shape: tuple[int, int, int], centre: bool) -> np.ndarray:
    """Grey models get the MNIST treatment (centre=True) or a plain fit; colour models a resize."""
    c, h, w = shape
    if c == 3:
        rgb = img.convert("RGB").resize((w, h), Image.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()
    grey = np.asarray(_flatten_alpha(img).convert("L"), dtype=np.float32)
    if _border_mean(grey) > 127:  # dark ink on a light page: invert to light on dark
        grey = 255.0 - grey
    return (_centre_digit(grey, h, w) if centre else _fit(grey, h, w))[None]


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Transparent pixels become the page (white), as a drawing on a canvas looks."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(page, rgba)
    return img


def _border_mean(a: np.ndarray) -> float:
    return float(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).mean())


def _fit(a: np.ndarray, h: int, w: int) -> np.ndarray:
    img = Image.fromarray(a.clip(0, 255).astype(np.uint8))
    return np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.uint8)


def _centre_digit(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Crop to the ink, scale the longer side to 20/28 of the frame, centre the mass."""
    ink = a > 0.1 * a.max() if a.max() > 0 else np.zeros_like(a, dtype=bool)
    if not ink.any():
        return np.zeros((h, w), dtype=np.uint8)
    ys, xs = np.nonzero(ink)
    crop = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    box = max(1, round(min(h, w) * 20 / 28))
    scale = box / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = np.asarray(Image.fromarray(crop.clip(0, 255).astype(np.uint8)).resize(
        size, Image.LANCZOS), dtype=np.float32)
    out = np.zeros((h, w), dtype=np.float32)
    total = small.sum() or 1.0
    cy = (small.sum(1) * np.arange(small.shape[0])).sum() / total
    cx = (small.sum(0) * np.arange(small.shape[1])).sum() / total
    top = int(np.clip(round(h / 2 - cy), 0, h - small.shape[0]))
    left = int(np.clip(round(w / 2 - cx), 0, w - small.shape[1]))
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out.clip(0, 255).astype(np.uint8)
