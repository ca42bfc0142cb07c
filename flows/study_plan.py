"""How a study's budget is spent, from each (dataset, family)'s measured speed. Pure: no
training here. The rule, in order:

1. Depth first (it answers the original study's question): every family's recipe on all its
   training images, the same epochs for each seed, as many as fit `DEPTH_SHARE` of the
   machine-seconds up to the family's own epochs (water-filling: a cheap family gets all of
   its epochs, the others share the rest alike). When one epoch of every model does not fit
   even the whole budget, the most expensive (dataset, family) is left out (not tested) until
   it does.
2. What is left goes to the levers, in equal shares per (dataset, family) (water-filled, the
   dearest left out when even its smallest size does not fit its share): one size for its
   confirmations (the race's winner and the recipe on fresh seeds; the depth models' own when
   it fits, else halved until it fits) and for its races' top rung (successive halving, each
   rung below eta times smaller).
3. Nothing that does not fit is run: it is reported as not tested, with the seconds it needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from flows.study_race import Size, entrants_at, rung_count

MIN_IMAGES = 500  # below this a point says more about noise than about its lever
DEPTH_SHARE = 0.7
EVAL_SPEEDUP = 3.0  # a forward pass (validation, test) at three times the training rate


@dataclass(frozen=True)
class Speed:
    """One (dataset, family) as measured by a short calibration training."""

    img_per_s: float     # training steps
    overhead_s: float    # start-up and everything else outside steps, per training
    train_count: int
    val_count: int
    test_count: int
    epochs: int          # the family's own epochs (its recipe's: what "trained" asks)
    levers: dict[str, list[float]] = field(default_factory=dict)  # each value's relative cost


def train_s(sp: Speed, size: Size, rel: float = 1.0, val: Optional[int] = None,
            test: bool = False) -> float:
    """Seconds of one training of `size` (validated on `val` images per epoch, all by default;
    tested on the whole test split when `test`)."""
    n_val = sp.val_count if val is None else min(val, sp.val_count)
    return (sp.overhead_s + size.work * rel / sp.img_per_s
            + size.epochs * n_val / (EVAL_SPEEDUP * sp.img_per_s)
            + (sp.test_count / (EVAL_SPEEDUP * sp.img_per_s) if test else 0.0))


def size_at(sp: Speed, q: float, epochs: int) -> Size:
    """A fraction q of (all images × epochs): whole epochs of all images while q × epochs is one
    or more, else a seeded subset of the images for one epoch (never below MIN_IMAGES)."""
    w = q * epochs
    if w >= 1 - 1e-9:
        return Size(sp.train_count, max(1, int(w + 1e-9)))
    return Size(min(sp.train_count, max(MIN_IMAGES, int(w * sp.train_count))), 1)


def depth_s(sp: Speed, epochs: int, seeds: int) -> float:
    return seeds * train_s(sp, Size(sp.train_count, epochs), test=True)


def depth_epochs(speeds: dict[str, Speed], seeds: int, capacity: float) -> dict[str, int]:
    """Epochs per (dataset, family) within capacity machine-seconds (0: left out)."""
    live = dict(speeds)
    while live and sum(depth_s(sp, 1, seeds) for sp in live.values()) > capacity:
        live.pop(max(live, key=lambda k: depth_s(live[k], 1, seeds)))
    out = {k: 0 for k in speeds}
    fixed = {k: depth_s(sp, 0, seeds) for k, sp in live.items()}  # start-up and the test
    per_epoch = {k: depth_s(sp, 1, seeds) - fixed[k] for k, sp in live.items()}
    left, open_ = capacity - sum(fixed.values()), dict(per_epoch)
    while open_:  # settle the families whose own epochs cost less than an equal share
        share = left / len(open_)
        capped = [k for k in open_ if open_[k] * speeds[k].epochs <= share]
        if not capped:
            break
        for k in capped:
            out[k] = speeds[k].epochs
            left -= open_.pop(k) * speeds[k].epochs
    for k in sorted(open_, key=lambda k: open_[k]):
        out[k] = max(1, min(speeds[k].epochs, int(left / len(open_) // open_[k])))
    return out


@dataclass
class Plan:
    """What the study trains: depth epochs per (dataset, family) (0: not trained), the
    confirmation's size and the race's top rung per (dataset, family) (None: levers not
    tested), and the machine-seconds planned per part."""

    epochs: dict[str, int]
    confirm: dict[str, Optional[Size]]
    race_top: dict[str, Optional[Size]]
    seconds: dict[str, float]
    machine_s: float
    notes: list[str]
    speeds: dict[str, Speed] = field(default_factory=dict)
    slots: int = 1
    factor: float = 1.0

    def estimate(self, key: str, size: Size, test: bool, val: Optional[int] = None) -> float:
        """Machine-seconds of one training of `size` (0: no speed measured)."""
        sp = self.speeds.get(key)
        return 0.0 if sp is None else self.factor * train_s(sp, size, val=val, test=test)

    def rungs(self, key: str, values: int, eta: int) -> Optional[list[Size]]:
        """The rung sizes of a race of `values` values: the top rung's, divided by eta per
        rung down (never below MIN_IMAGES for one epoch)."""
        top = self.race_top.get(key)
        return None if top is None else rung_sizes(top, values, eta)


def _scaled(size: Size, f: float) -> Size:
    w = size.epochs * f
    if w >= 1 - 1e-9:
        return Size(size.images, max(1, int(w + 1e-9)))
    return Size(max(MIN_IMAGES, min(size.images, int(size.images * w))), 1)


def confirm_s(sp: Speed, size: Size, depth_epochs: int, seeds: int) -> float:
    """Both arms of every lever of one (dataset, family) on `seeds` seeds; the recipe's arm is
    a depth model (trained already) when the size is the depth models' own."""
    recipe_arm = 0.0 if size == Size(sp.train_count, depth_epochs) else 1.0
    return sum(seeds * (sum(rels) / len(rels) + recipe_arm) * train_s(sp, size, test=True)
               for rels in sp.levers.values())


def rung_sizes(top: Size, values: int, eta: int) -> list[Size]:
    """A race's rungs: the top rung's size divided by eta per rung down."""
    k = rung_count(values, eta)
    return [_scaled(top, eta ** -(k - 1 - r)) for r in range(k)]


def race_s(sp: Speed, top: Size, eta: int, val_sample: int) -> float:
    """Every race of one (dataset, family), its points validated on the sample."""
    return sum(n * sum(rels) / len(rels) * train_s(sp, s, val=val_sample)
               for rels in sp.levers.values()
               for n, s in zip(entrants_at(len(rels), eta), rung_sizes(top, len(rels), eta)))


def _ladder(sp: Speed, epochs: int, cap: Optional[Size] = None) -> list[Size]:
    """Sizes halving from all images × epochs (or cap) down to MIN_IMAGES for one epoch."""
    out, q = [], 1.0
    while True:
        size = size_at(sp, q, max(1, epochs))
        if cap is not None and size.work > cap.work:
            size = cap
        if out and size == out[-1]:
            return out
        out.append(size)
        q /= 2


def share_out(options: dict[str, list[tuple[Size, float]]], budget: float
              ) -> dict[str, Optional[Size]]:
    """Equal shares of budget, water-filled: a (dataset, family) whose largest size costs less
    than its share takes it and leaves the rest to the others; the others take the largest
    size within their share. When even the smallest size of some does not fit their share,
    the dearest of those is left out (None) until the rest fit."""
    out: dict[str, Optional[Size]] = {k: None for k in options}
    open_, left = dict(options), budget
    while open_:
        share = left / len(open_)
        settled = [k for k, opts in open_.items() if opts[0][1] <= share]
        if settled:
            for k in settled:
                out[k] = open_[k][0][0]
                left -= open_.pop(k)[0][1]
            continue
        short = [k for k, opts in open_.items() if opts[-1][1] > share]
        if not short:
            break
        open_.pop(max(short, key=lambda k: open_[k][-1][1]))
    for k, opts in open_.items():
        out[k] = next((size for size, c in opts if c <= left / len(open_)), None)
    return out


def plan(speeds: dict[str, Speed], machine_s: float, seeds: int, eta: int,
         val_sample: int) -> Plan:
    """The study's plan within machine_s machine-seconds (wall × trainings side by side)."""
    full = sum(depth_s(sp, sp.epochs, seeds) for sp in speeds.values())
    one = sum(depth_s(sp, 1, seeds) for sp in speeds.values())
    capacity = min(full, max(DEPTH_SHARE * machine_s, min(one, machine_s)))
    epochs = depth_epochs(speeds, seeds, capacity)
    spent = sum(depth_s(sp, epochs[k], seeds) for k, sp in speeds.items() if epochs[k])
    rest = max(0.0, machine_s - spent)
    # One size per (dataset, family) for its confirmations and its races' top rung.
    levers = share_out({k: [(s, confirm_s(sp, s, epochs[k], seeds) + race_s(sp, s, eta,
                                                                           val_sample))
                            for s in _ladder(sp, epochs[k])]
                        for k, sp in speeds.items() if sp.levers}, rest)
    confirm = {k: levers.get(k) for k in speeds}
    race = dict(confirm)
    seconds = {"depth": spent,
               "race": sum(race_s(speeds[k], s, eta, val_sample) for k, s in race.items() if s),
               "confirm": sum(confirm_s(speeds[k], s, epochs[k], seeds)
                              for k, s in confirm.items() if s)}
    notes = _notes(speeds, epochs, confirm, race, seconds, machine_s, seeds)
    return Plan(epochs, confirm, race, seconds, machine_s, notes, speeds=speeds)


def _notes(speeds: dict[str, Speed], epochs: dict[str, int], confirm: dict[str, Optional[Size]],
           race: dict[str, Optional[Size]], seconds: dict[str, float], machine_s: float,
           seeds: int) -> list[str]:
    notes = [f"{machine_s:,.0f} machine-seconds: depth {seconds['depth']:,.0f}, race "
             f"{seconds['race']:,.0f}, confirmation {seconds['confirm']:,.0f} planned"]
    for k, sp in speeds.items():
        line = (f"{k}: not trained (one epoch of {seeds} seed(s) needs "
                f"{depth_s(sp, 1, seeds):,.0f} machine-seconds)" if not epochs[k] else
                f"{k}: depth {seeds} × {sp.train_count:,} images × {epochs[k]} of its "
                f"{sp.epochs} epoch(s) at {sp.img_per_s:,.0f} img/s")
        if confirm[k] and race[k]:
            line += (f"; levers raced up to {race[k].images:,} images × {race[k].epochs} "
                     f"epoch(s), confirmed at {confirm[k].images:,} × {confirm[k].epochs}")
        else:
            need = sum(seeds * 2 * train_s(sp, Size(MIN_IMAGES, 1), test=True)
                       for _ in sp.levers)
            line += f"; levers not tested (their smallest confirmation alone needs {need:,.0f} s)"
        notes.append(line)
    return notes




def machine_seconds(left_s: float, slots: int, factor: float = 1.0) -> float:
    return max(0.0, left_s) * max(1, slots) / max(1.0, factor)
