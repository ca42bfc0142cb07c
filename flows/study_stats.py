"""The statistics a study's verdicts rest on: paired t-tests over seeds (the same seeds and
data on both sides), one-sample t-tests against a published figure, Holm's adjustment over
each family of comparisons, and one set of verdicts. SciPy computes the distributions."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

from scipy import stats

ALPHA = 0.05
# Accuracies on a test split move in steps of 1 / n_test (1e-4 on 10,000 images): a spread of
# differences below this is no spread at all, however floating point rounds it.
ZERO_SPREAD = 1e-9

CONFIRMED, REFUTED = "confirmed", "refuted"
NO_DIFFERENCE, NOT_TESTED = "no significant difference", "not tested"
VERDICTS = (CONFIRMED, REFUTED, NO_DIFFERENCE, NOT_TESTED)


@dataclass(frozen=True)
class Paired:
    """b − a over paired seeds: the mean difference, its t statistic and two-sided p-value.
    p is None (no test) with fewer than two pairs, or when the differences have no spread
    (why: `reason`)."""

    diff: float
    n: int
    t: Optional[float]
    p: Optional[float]
    reason: str = ""


def paired_t(a: Sequence[float], b: Sequence[float]) -> Paired:
    """Student's paired t-test of b against a (scipy.stats.ttest_rel), guarded: a constant
    difference (zero spread within ZERO_SPREAD) has no t statistic, whatever rounding says."""
    if len(a) != len(b):
        raise ValueError(f"paired samples of different sizes ({len(a)} and {len(b)})")
    diffs = [y - x for x, y in zip(a, b)]
    mean = statistics.fmean(diffs) if diffs else 0.0
    if len(diffs) < 2:
        return Paired(mean, len(diffs), None, None, "fewer than two seeds")
    if statistics.stdev(diffs) <= ZERO_SPREAD:
        return Paired(mean, len(diffs), None, None, "the differences have no spread")
    r = stats.ttest_rel(list(b), list(a))
    return Paired(mean, len(diffs), float(r.statistic), float(r.pvalue))


def one_sample_t(xs: Sequence[float], figure: float) -> Paired:
    """xs against a published figure (scipy.stats.ttest_1samp), with the same guards."""
    return paired_t([figure] * len(xs), list(xs))


def holm(ps: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm's step-down adjustment (controls the family-wise error rate): the k-th smallest of
    m p-values times (m − k + 1), made monotone and capped at 1. None (no test) stays None
    and does not count in m."""
    tested = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    m, out, running = len(tested), [None] * len(ps), 0.0
    for k, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out


def verdict(test: Paired, p_adjusted: Optional[float]) -> str:
    """The one set of verdicts, for a claim that b is better than a (test.diff = b − a):
    identical results on every seed are no difference; any other untestable one is not
    tested."""
    if test.p is None and test.n >= 2 and abs(test.diff) <= ZERO_SPREAD:
        return NO_DIFFERENCE
    if p_adjusted is None or math.isnan(p_adjusted):
        return NOT_TESTED
    if p_adjusted >= ALPHA:
        return NO_DIFFERENCE
    return CONFIRMED if test.diff > 0 else REFUTED


def describe(p: Optional[float]) -> str:
    return "–" if p is None else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")
