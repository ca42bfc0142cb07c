"""The statistics the study's verdicts rest on, against Student's t tables, hand-computed Holm
adjustments and the zero-spread cases that a naive t-test turns into a tiny p-value."""
from __future__ import annotations

import pytest

from flows.study_stats import (
    CONFIRMED,
    NO_DIFFERENCE,
    NOT_TESTED,
    REFUTED,
    holm,
    one_sample_t,
    paired_t,
    verdict,
)


def test_paired_t_on_seeds_matches_the_hand_computed_case():
    # Differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01, t = 0.02 / (0.01 / sqrt 3) = 3.4641;
    # two-sided p for t = 3.4641 on 2 degrees of freedom: 0.0742 (t table: 4.303 at 0.05).
    r = paired_t([0.90, 0.91, 0.92], [0.91, 0.93, 0.95])
    assert r.diff == pytest.approx(0.02) and r.t == pytest.approx(3.4641, abs=1e-3)
    assert r.p == pytest.approx(0.0742, abs=1e-3)
    assert paired_t([0.9], [0.95]).p is None  # one seed: no test
    with pytest.raises(ValueError, match="different sizes"):
        paired_t([0.9, 0.8], [0.9])


@pytest.mark.parametrize("t,df,p", [(12.706, 1, 0.05), (4.303, 2, 0.05), (2.776, 4, 0.05),
                                    (9.925, 2, 0.01)])
def test_the_p_value_matches_the_t_table(t, df, p):
    # Differences built to give exactly this t on df degrees of freedom: mean t·s/√n, sd s.
    import math
    n, s = df + 1, 0.01
    base = [0.5] * n
    spread = [s * x for x in _unit_sd(n)]
    other = [b + t * s / math.sqrt(n) + d for b, d in zip(base, spread)]
    assert paired_t(base, other).p == pytest.approx(p, abs=2e-4)


def _unit_sd(n: int) -> list[float]:
    """n numbers of mean 0 and sample standard deviation 1."""
    import statistics
    xs = [i - (n - 1) / 2 for i in range(n)]
    sd = statistics.stdev(xs)
    return [x / sd for x in xs]


def test_a_constant_difference_is_no_test_not_a_tiny_p():
    # [.1, .2, .3] against [.2, .3, .4]: every difference 0.1 up to rounding (a plain t-test
    # on the rounding noise gives p ~ 1e-32).
    r = paired_t([0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    assert r.p is None and "no spread" in r.reason
    assert verdict(r, None) == NOT_TESTED
    same = paired_t([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert same.p is None and verdict(same, None) == NO_DIFFERENCE  # identical results


def test_holm_matches_the_hand_computed_adjustment():
    # Sorted 0.01, 0.02, 0.03, 0.04 of m = 4: ×4, ×3, ×2, ×1 = 0.04, 0.06, 0.06, 0.04 →
    # monotone: 0.04, 0.06, 0.06, 0.06. None stays None and does not count.
    assert holm([0.03, None, 0.01, 0.04, 0.02]) == pytest.approx(
        [0.06, None, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_verdicts_come_from_the_adjusted_p_and_the_sign():
    up = paired_t([0.90, 0.91, 0.92], [0.95, 0.97, 0.98])
    down = paired_t([0.95, 0.97, 0.98], [0.90, 0.91, 0.92])
    assert up.p < 0.05 and verdict(up, up.p) == CONFIRMED
    assert verdict(down, down.p) == REFUTED
    assert verdict(up, 0.2) == NO_DIFFERENCE  # significant alone, not after adjustment


def test_one_sample_against_a_published_figure():
    r = one_sample_t([0.880, 0.884, 0.886], 0.8763)
    assert r.diff == pytest.approx(0.00703, abs=1e-4) and 0.05 < r.p < 0.06  # t = 3.99, df 2
    from scipy import stats
    assert r.p == pytest.approx(stats.ttest_1samp([0.880, 0.884, 0.886], 0.8763).pvalue)
