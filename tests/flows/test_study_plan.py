"""The study's plan: depth first, on all training images, up to each family's epochs; then
confirmations and races sized to what is left; what does not fit is not run."""
from __future__ import annotations

from flows.study_plan import DEPTH_SHARE, MIN_IMAGES, Speed, depth_s, plan
from flows.study_results import trained


def _speeds(ips_conv: float = 800.0) -> dict[str, Speed]:
    levers = {"dropout": [1.0] * 4, "lr": [1.0] * 5}
    return {"mnist/bp": Speed(10_000, 3, 54_000, 6_000, 10_000, 10, levers),
            "mnist/dcnn": Speed(ips_conv, 3, 54_000, 6_000, 10_000, 10, levers)}


def test_a_generous_budget_trains_every_family_to_its_epochs_and_confirms_at_that_size():
    p = plan(_speeds(), 1e7, seeds=3, eta=2, val_sample=2000)
    assert p.epochs == {"mnist/bp": 10, "mnist/dcnn": 10}
    assert p.confirm["mnist/dcnn"].images == 54_000 and p.confirm["mnist/dcnn"].epochs == 10
    assert p.rungs("mnist/dcnn", 5, 2)[-1] == p.confirm["mnist/dcnn"]
    assert [s.work for s in p.rungs("mnist/dcnn", 5, 2)] == [108_000, 270_000, 540_000]  # 2.5 epochs: 2


def test_a_tight_budget_gives_depth_its_share_and_sizes_the_rest_to_fit():
    sp = _speeds()
    machine_s = 3_000.0
    p = plan(sp, machine_s, seeds=3, eta=2, val_sample=2000)
    assert p.epochs["mnist/bp"] == 10  # cheap: all its epochs
    assert 1 <= p.epochs["mnist/dcnn"] < 10
    assert sum(p.seconds.values()) <= machine_s
    assert p.seconds["depth"] <= DEPTH_SHARE * machine_s + 1e-6
    if p.confirm["mnist/dcnn"] is not None:
        assert p.confirm["mnist/dcnn"].work <= 54_000 * p.epochs["mnist/dcnn"]
        assert p.rungs("mnist/dcnn", 4, 2)[-1].work <= p.confirm["mnist/dcnn"].work


def test_a_budget_too_small_for_one_epoch_of_everything_leaves_out_the_dearest_and_says_so():
    sp = _speeds(ips_conv=100.0)
    only_bp = depth_s(sp["mnist/bp"], 1, 3) * 1.2
    p = plan(sp, only_bp, seeds=3, eta=2, val_sample=2000)
    assert p.epochs["mnist/dcnn"] == 0 and p.epochs["mnist/bp"] >= 1
    assert p.confirm["mnist/dcnn"] is None and p.race_top["mnist/dcnn"] is None
    assert any(n.startswith("mnist/dcnn: not trained (one epoch of 3 seed(s) needs")
               for n in p.notes), p.notes
    assert any("levers not tested" in n for n in p.notes)
    assert sum(p.seconds.values()) <= only_bp


def test_race_rungs_never_go_below_the_smallest_point():
    p = plan(_speeds(), 2_500.0, seeds=3, eta=2, val_sample=2000)
    for key in p.race_top:
        for s in p.rungs(key, 5, 2) or []:
            assert s.images >= MIN_IMAGES and s.epochs >= 1


def test_the_trained_rule():
    ok, why = trained([[0.5, 0.8, 0.9], [0.5, 0.8, 0.9]], 3, 10)
    assert not ok and why.startswith("still gaining +0.1000")
    assert trained([[0.9, 0.902], [0.9, 0.903]], 2, 10)[0]  # under half a point on average
    # One seed's swing (0.974 → 0.993) beside two that have settled: the mean decides.
    assert trained([[0.99, 0.991], [0.974, 0.984], [0.99, 0.99]], 2, 10)[0]
    assert trained([[0.5] * 10], 10, 10) == (True, "reached the family's 10 epoch(s)")
    ok, why = trained([[0.9], [0.9, 0.91, 0.92]], 3, 10)
    assert not ok and "deadline after 1 of 3" in why
    assert not trained([[0.9]], 1, 10)[0]  # one epoch: no sign of convergence


def test_the_calibrations_measure_what_a_training_costs_outside_its_process():
    from flows.study_budget import MIN_OUTSIDE_S, measured, outside_s

    infos = [{"wall_seconds": 1.0}, {"wall_seconds": 2.0}, {"wall_seconds": 0.5}]
    # 3 trainings in 9 s on one place, 3.5 s of it their own: 1.83 s each outside.
    assert abs(outside_s(9.0, 1, infos) - 5.5 / 3) < 1e-9
    assert outside_s(2.0, 1, infos) == MIN_OUTSIDE_S  # never below the floor
    sp = measured({"metrics": {"perf/train_img_per_s": 1000.0}, "wall_seconds": 3.0},
                  {"train": 10, "val": 1, "test": 1}, 10, {}, outside=1.5)
    assert abs(sp.overhead_s - (3.0 - 2.0 + 1.5)) < 1e-9  # 2,000 images at 1,000 img/s: 2 s
