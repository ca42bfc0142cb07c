"""The statistics a study's findings rest on: a paired t-test over seeds (the same seeds and
data on both sides), with Student's t distribution computed here (no SciPy in the project)."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    return betainc(df / 2.0, 0.5, df / (df + t * t))


@dataclass(frozen=True)
class Paired:
    """b − a over paired seeds: the mean difference, its t statistic and two-sided p-value
    (None with fewer than two pairs, or when every difference is the same)."""

    diff: float
    n: int
    t: Optional[float]
    p: Optional[float]


def paired_t(a: list[float], b: list[float]) -> Paired:
    if len(a) != len(b):
        raise ValueError(f"paired samples of different sizes ({len(a)} and {len(b)})")
    diffs = [y - x for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2 or statistics.stdev(diffs) == 0.0:
        return Paired(mean, len(diffs), None, None)
    t = mean / (statistics.stdev(diffs) / math.sqrt(len(diffs)))
    return Paired(mean, len(diffs), t, t_two_sided_p(t, len(diffs) - 1))
