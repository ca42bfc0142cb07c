"""The paired t-test the study's findings use, against Student's t tables and a worked case."""
from __future__ import annotations

import pytest

from flows.study_stats import betainc, paired_t, t_two_sided_p


@pytest.mark.parametrize("t,df,p", [(12.706, 1, 0.05), (4.303, 2, 0.05), (2.776, 4, 0.05),
                                    (9.925, 2, 0.01), (2.228, 10, 0.05), (0.0, 3, 1.0)])
def test_two_sided_p_matches_the_t_table(t, df, p):
    assert t_two_sided_p(t, df) == pytest.approx(p, abs=2e-4)


def test_betainc_edges_and_symmetry():
    assert betainc(2, 3, 0.0) == 0.0 and betainc(2, 3, 1.0) == 1.0
    assert betainc(2.5, 1.5, 0.3) == pytest.approx(1 - betainc(1.5, 2.5, 0.7), abs=1e-12)


def test_paired_t_on_seeds():
    # Differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01, t = 0.02 / (0.01 / sqrt 3) = 3.4641.
    r = paired_t([0.90, 0.91, 0.92], [0.91, 0.93, 0.95])
    assert r.diff == pytest.approx(0.02) and r.t == pytest.approx(3.4641, abs=1e-3)
    assert r.p == pytest.approx(0.0742, abs=1e-3)
    assert paired_t([0.9], [0.95]).p is None  # one seed: no test
    with pytest.raises(ValueError, match="different sizes"):
        paired_t([0.9, 0.8], [0.9])
