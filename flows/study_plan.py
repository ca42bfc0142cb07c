"""How big each study point may be so that a whole study ends within its budget: from each
(dataset, family)'s measured training speed, one size (training images × epochs) for every
point of every study, so that a lever's points compare and so do the families on a dataset
(the depth claim is tested on the same training images). Pure: no training here."""
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
    work: float = 0.0  # its points' cost in base points (relative_cost); 0: points alike

    @property
    def load(self) -> float:
        return self.work or float(self.points)


# A point's seconds grow slower than its network's FLOPs (wider layers run at more FLOP/s):
# seconds ∝ FLOPs ** this, fitted to a whole study's points by bench/study_point_cost.py.
FLOPS_EXPONENT = 0.7


def relative_cost(flops: float, base_flops: float) -> float:
    """A point's cost in base points, from its network's forward FLOPs and the base's."""
    return (flops / base_flops) ** FLOPS_EXPONENT if base_flops > 0 else 1.0


@dataclass(frozen=True)
class Shape:
    images: int
    epochs: int
    note: str


def cost(speeds: dict[str, Speed], images: int, epochs: int) -> float:
    """Machine-seconds (summed over trainings side by side) of every point of every study."""
    return sum(sp.load * (sp.overhead_s + min(images, sp.train_count) * epochs / sp.img_per_s)
               for sp in speeds.values())


def size(speeds: dict[str, Speed], machine_s: float, epochs: int) -> tuple[int, int]:
    """The largest (images, epochs) whose cost fits machine_s: all images and the configured
    epochs, else all images and fewer epochs, else fewer images for one epoch (at least
    MIN_IMAGES, even when that does not fit)."""
    most = max(sp.train_count for sp in speeds.values())
    for eps in range(epochs, 0, -1):
        if cost(speeds, most, eps) <= machine_s:
            return most, eps
    lo, hi = MIN_IMAGES, most  # cost grows with images: bisect for the largest that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(speeds, mid, 1) <= machine_s else (lo, mid - 1)
    return lo, 1


def slowdown(speeds: dict[str, Speed], images: int, wall_s: float, slots: int) -> float:
    """How much longer the calibration took (wall × its side-by-side width) than the model of
    its points predicts: what the model leaves out (scheduling, the orchestrator's own CPU,
    points waiting for a free place at the end). At least 1: the model never plans tighter
    than its measurements."""
    one_each = {k: Speed(sp.img_per_s, sp.overhead_s, sp.train_count, 1)
                for k, sp in speeds.items()}
    predicted = cost(one_each, images, 1)
    width = max(1, min(slots, len(speeds)))
    return max(1.0, wall_s * width / predicted) if predicted > 0 else 1.0


def shape(speeds: dict[str, Speed], budget_s: float, slots: int, epochs: int,
          factor: float = 1.0) -> dict[str, Shape]:
    """One size for all studies within budget × trainings side by side, the cost model's
    seconds scaled by factor (slowdown()); a note per study."""
    machine_s = budget_s * max(1, slots) / factor
    images, eps = size(speeds, machine_s, epochs)
    total = cost(speeds, images, eps)
    out = {}
    for key, sp in speeds.items():
        n = min(images, sp.train_count)
        out[key] = Shape(n, eps, (
            f"{key}: {sp.points} points of {n:,} images × {eps} epoch(s) at "
            f"{sp.img_per_s:,.0f} img/s, {sp.overhead_s:.0f} s of start-up and evaluation each "
            f"(the recipe's; larger structures cost more: {sp.load:,.1f} recipe points' worth); "
            f"every study trains on the same size so that levers and families compare: "
            f"{total:,.0f} of {machine_s:,.0f} machine-seconds "
            f"({max(1, slots)} training(s) side by side; the model's seconds × {factor:.2f}, "
            f"the calibration's measured slowdown)"
            + ("; even the smallest size overruns the budget" if total > machine_s else "")))
    return out


def point_seconds(sp: Speed, shape_: Shape) -> float:
    """A base point's planned seconds (a point's are these × its relative cost)."""
    return sp.overhead_s + shape_.images * shape_.epochs / sp.img_per_s
