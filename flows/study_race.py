"""Successive halving of one lever's values (Jamieson & Talwalkar 2016; ASHA's synchronous
form): every value trains at the smallest rung, the best 1/eta of them by validation accuracy
go on to a rung eta times larger, until one is left. Pure bookkeeping: flows/study.py trains
the points and records their validation accuracy here. Test accuracy never enters a race."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Size:
    """A point's training: how many training images, for how many epochs."""

    images: int
    epochs: int

    @property
    def work(self) -> int:
        return self.images * self.epochs


def rung_count(values: int, eta: int) -> int:
    """Rungs until one value is left: 5 values at eta 2 race at 5, 3 and 2 (3 rungs)."""
    n, k = values, 0
    while n > 1:
        n, k = math.ceil(n / eta), k + 1
    return max(1, k)


def entrants_at(values: int, eta: int) -> list[int]:
    """How many values train at each rung."""
    out, n = [], values
    for _ in range(rung_count(values, eta)):
        out.append(n)
        n = math.ceil(n / eta)
    return out


@dataclass
class Race:
    """One (dataset, family, lever) race: values in grid order, the recipe's among them, and
    each rung's size (smallest first)."""

    values: list[Any]
    recipe: Any
    sizes: list[Size]
    eta: int = 2
    scores: list[dict[int, float]] = field(default_factory=list)  # per rung: index -> val acc

    def __post_init__(self) -> None:
        if self.recipe not in self.values:
            raise ValueError(f"the recipe's value {self.recipe!r} is not in the grid {self.values}")
        if len(self.sizes) != rung_count(len(self.values), self.eta):
            raise ValueError(f"{len(self.values)} values at eta {self.eta} race over "
                             f"{rung_count(len(self.values), self.eta)} rungs, not "
                             f"{len(self.sizes)}")
        self.scores = [dict() for _ in self.sizes]

    def entrants(self, rung: int) -> list[int]:
        """Indices of the values that train at this rung (rung 0: all; then the best 1/eta of
        the rung below by validation accuracy, ties to the recipe, then grid order)."""
        if rung == 0:
            return list(range(len(self.values)))
        below = self.ranked(rung - 1)
        return below[:entrants_at(len(self.values), self.eta)[rung]]

    def ranked(self, rung: int) -> list[int]:
        recipe = self.values.index(self.recipe)
        got = self.scores[rung]
        return sorted(got, key=lambda i: (-got[i], i != recipe, i))

    def record(self, rung: int, index: int, val_acc: float) -> None:
        if index not in self.entrants(rung):
            raise ValueError(f"value {self.values[index]!r} does not race at rung {rung}")
        self.scores[rung][index] = float(val_acc)

    def complete(self, rung: int) -> bool:
        if rung > 0 and not self.complete(rung - 1):
            return False
        return set(self.scores[rung]) == set(self.entrants(rung))

    def next_rung(self) -> Optional[int]:
        """The first rung not yet complete (None: the race is over)."""
        for k in range(len(self.sizes)):
            if not self.complete(k):
                return k
        return None

    def winner(self) -> Optional[Any]:
        """The best value of the highest complete rung (None before rung 0 completes)."""
        done = [k for k in range(len(self.sizes)) if self.complete(k)]
        return self.values[self.ranked(done[-1])[0]] if done else None

    def finished(self) -> bool:
        return self.next_rung() is None

    def record_json(self) -> list[dict[str, Any]]:
        """The rungs' results as study.json keeps them."""
        return [{"rung": k, "images": s.images, "epochs": s.epochs,
                 "results": [{"value": self.values[i], "val_acc": self.scores[k][i]}
                             for i in sorted(self.scores[k])]}
                for k, s in enumerate(self.sizes)]
