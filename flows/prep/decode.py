"""Decode one image file into C×H×W uint8 (runs in worker processes: numpy and Pillow only)."""
from __future__ import annotations

import io
import warnings
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def init_worker(max_pixels: int) -> None:
    """Per-process Pillow limit: bigger images are refused as decompression bombs."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def is_grey(mode: str) -> bool:
    return mode in _GREY_MODES


def _to_mode(im: Image.Image, channels: int) -> Image.Image:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # high bit depth: rescale to 8 bits
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = np.zeros_like(a) if hi <= lo else (a - lo) * (255.0 / (hi - lo))
        im = Image.fromarray(a.astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent pixels become black, like the background of MNIST digits.
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return im.convert("L" if channels == 1 else "RGB")


def decode(item: Union[str, bytes], size: int, channels: int) -> Union[np.ndarray, str]:
    """The image as C×size×size uint8, or a string saying why it cannot be read."""
    try:
        if isinstance(item, str) and "://" in item:  # a cluster node fetching its own
            from lightning_modules.store import read_bytes

            item = read_bytes(item)
        elif isinstance(item, str):
            with open(item, "rb") as fh:
                item = fh.read()
        if not item:
            return "empty file"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(item))
            im.load()
        im = _to_mode(im, channels)
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return f"decompression bomb refused ({e})"
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        return f"unreadable image ({e})"


def decode_task(args: tuple) -> Union[np.ndarray, str]:
    return decode(*args)


def header(item: Union[str, bytes]) -> tuple[int, int, str] | None:
    """(width, height, mode) from the header only, or None when it is not an image."""
    try:
        src = item if isinstance(item, str) else io.BytesIO(item)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(src) as im:
                return im.size[0], im.size[1], im.mode
    except Exception:  # unreadable files are reported later, by decode
        return None
