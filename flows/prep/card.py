"""The dataset card: counts per class and split, normalisation, skipped files, a sample grid."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

PER_CLASS = 8
SCALE = 2
LABEL_W = 110


def sample_grid(x: np.ndarray, y: np.ndarray, classes: list[str], seed: int = 0) -> bytes:
    """PNG bytes: one row per class, PER_CLASS samples each, the class name on the left."""
    _, c, h, w = x.shape
    cell_h, cell_w = h * SCALE + 4, w * SCALE + 4
    grid = Image.new("RGB", (LABEL_W + PER_CLASS * cell_w, len(classes) * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    rng = np.random.default_rng(seed)
    for row, name in enumerate(classes):
        idx = np.flatnonzero(y == row)
        pick = rng.choice(idx, size=min(PER_CLASS, len(idx)), replace=False) if len(idx) else []
        draw.text((4, row * cell_h + cell_h // 2 - 6), name[:16], fill="black")
        for col, i in enumerate(pick):
            img = x[i].transpose(1, 2, 0)
            im = Image.fromarray(img[..., 0] if c == 1 else img).convert("RGB")
            im = im.resize((w * SCALE, h * SCALE), Image.Resampling.NEAREST)
            grid.paste(im, (LABEL_W + col * cell_w + 2, row * cell_h + 2))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    return buf.getvalue()


def render_card(m: dict, image_ref: str = "samples.png") -> str:
    """Markdown for the dataset card, from the manifest alone."""
    splits = list(m["splits"])
    lines = [f"# Dataset card: {m['name']}", "",
             f"- kind: `{m['dataset']}`; source: `{m['source']['url']}`",
             f"- shape (C×H×W): {'×'.join(map(str, m['shape']))}; classes: {len(m['classes'])}",
             f"- mean: {[round(v, 4) for v in m['mean']]}; std: {[round(v, 4) for v in m['std']]}",
             f"- store: `{m['uri']}`", "",
             "| class | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for i, name in enumerate(m["classes"]):
        cells = [str(m["splits"][s]["per_class"][i]) for s in splits]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [str(m["splits"][s]["count"]) for s in splits]
    lines += ["| **total** | " + " | ".join(totals) + " |", ""]
    skipped = m["skipped"]
    lines.append(f"Skipped files: {skipped['count']}")
    for path, why in skipped["files"][:50]:
        lines.append(f"- `{path}`: {why}")
    if skipped["count"] > 50:
        lines.append(f"- … and {skipped['count'] - 50} more (see manifest.json)")
    lines += ["", f"![samples per class]({image_ref})", ""]
    return "\n".join(lines)
