"""How big each study point may be so that a whole study ends within its budget: from each
(dataset, family)'s measured training speed, the same training images and epochs for every
point of that (dataset, family), so its points compare. Pure: no training here."""
from __future__ import annotations

from dataclasses import dataclass

MIN_IMAGES = 500  # below this a point says more about noise than about its lever


@dataclass(frozen=True)
class Speed:
    """One (dataset, family) as measured by a short calibration training."""

    img_per_s: float   # training steps
    overhead_s: float  # start-up, validation and the test evaluation of one point
    train_count: int   # training images available
    points: int        # distinct trainings of its study


@dataclass(frozen=True)
class Shape:
    images: int
    epochs: int
    note: str


def shape(speeds: dict[str, Speed], budget_s: float, slots: int, epochs: int) -> dict[str, Shape]:
    """Each study gets an equal share of the machine-time (budget × trainings side by side);
    within it every point gets the same images × epochs: all images and the configured epochs
    when they fit, else fewer epochs, else fewer images (at least MIN_IMAGES, one epoch)."""
    share = budget_s * max(1, slots) / max(1, len(speeds))
    out = {}
    for key, sp in speeds.items():
        per_point = share / max(1, sp.points)
        seen = max(0.0, per_point - sp.overhead_s) * sp.img_per_s  # images a point may train on
        n = sp.train_count
        if seen >= n * epochs:
            images, eps = n, epochs
        elif seen >= n:
            images, eps = n, int(seen // n)
        else:
            images, eps = min(n, max(MIN_IMAGES, int(seen))), 1
        out[key] = Shape(images, eps, (
            f"{key}: {sp.points} points of {images:,} images × {eps} epoch(s): "
            f"{per_point:.0f} s each at {sp.img_per_s:,.0f} img/s with {sp.overhead_s:.0f} s "
            f"of start-up and evaluation, {max(1, slots)} training(s) side by side"))
    return out
