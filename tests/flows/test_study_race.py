"""The race's bookkeeping on tiny data: who trains at each rung, who goes on, who wins; the
winner comes from validation accuracy only."""
from __future__ import annotations

import pytest

from flows.study_race import Race, Size, entrants_at, rung_count


def test_rungs_halve_the_field_until_one_is_left():
    assert [rung_count(n, 2) for n in (1, 2, 3, 4, 5, 6)] == [1, 1, 2, 2, 3, 3]
    assert entrants_at(5, 2) == [5, 3, 2] and entrants_at(6, 3) == [6, 2]


def _race() -> Race:
    return Race(["a", "b", "c", "d", "e"], "c", [Size(500, 1), Size(1000, 1), Size(1000, 2)])


def test_the_best_half_by_validation_goes_on_and_the_top_rung_names_the_winner():
    race = _race()
    assert race.entrants(0) == [0, 1, 2, 3, 4] and race.next_rung() == 0
    for i, v in enumerate([0.50, 0.70, 0.60, 0.90, 0.10]):
        race.record(0, i, v)
    assert race.complete(0) and race.entrants(1) == [3, 1, 2]  # d, b, c: the best three
    with pytest.raises(ValueError, match="does not race at rung 1"):
        race.record(1, 4, 0.99)  # e was knocked out
    for i, v in ((3, 0.80), (1, 0.85), (2, 0.70)):
        race.record(1, i, v)
    assert race.entrants(2) == [1, 3] and race.winner() == "b"  # the best of rung 1 so far
    race.record(2, 1, 0.86)
    assert not race.finished() and race.winner() == "b"  # rung 2 incomplete: rung 1's best
    race.record(2, 3, 0.91)
    assert race.finished() and race.winner() == "d"
    kept = race.record_json()
    assert [r["rung"] for r in kept] == [0, 1, 2] and kept[2]["images"] == 1000
    assert kept[2]["results"] == [{"value": "b", "val_acc": 0.86}, {"value": "d", "val_acc": 0.91}]


def test_a_tie_goes_to_the_recipe_and_a_race_needs_the_recipe_in_its_grid():
    race = Race([0.0, 0.1], 0.1, [Size(500, 1)])
    race.record(0, 0, 0.9)
    race.record(0, 1, 0.9)
    assert race.winner() == 0.1
    with pytest.raises(ValueError, match="not in the grid"):
        Race([0.0, 0.5], 0.1, [Size(500, 1)])
    with pytest.raises(ValueError, match="race over 1 rungs, not 2"):
        Race([0.0, 0.1], 0.1, [Size(500, 1), Size(500, 2)])


def test_no_winner_before_the_first_rung_is_complete():
    race = _race()
    race.record(0, 0, 0.99)
    assert race.winner() is None and race.next_rung() == 0
