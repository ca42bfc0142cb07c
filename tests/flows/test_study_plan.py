"""The study's budget: every point of every study gets the same size, the largest that fits."""
from __future__ import annotations

from flows.study_plan import MIN_IMAGES, Speed, cost, shape


def test_one_size_for_every_study_fits_the_budget_cut_epochs_first_then_images():
    speeds = {"mnist/bp": Speed(img_per_s=2_000, overhead_s=2, train_count=54_000, points=30),
              "mnist/dcnn": Speed(img_per_s=500, overhead_s=10, train_count=54_000, points=30),
              "mnist/cnn": Speed(img_per_s=4_000, overhead_s=4, train_count=54_000, points=30)}
    out = shape(speeds, budget_s=1800, slots=2, epochs=4)
    sizes = {(s.images, s.epochs) for s in out.values()}
    assert len(sizes) == 1  # the families compare on the same training images
    (images, epochs), = sizes
    assert epochs == 1 and MIN_IMAGES < images < 54_000
    assert cost(speeds, images, 1) <= 3600 < cost(speeds, images + 50, 1)
    assert "30 points of" in out["mnist/dcnn"].note
    # A budget that holds every image twice but not three times cuts epochs, not images.
    twice = cost(speeds, 54_000, 2)
    out = shape(speeds, budget_s=twice / 2 + 1, slots=2, epochs=4)
    assert {(s.images, s.epochs) for s in out.values()} == {(54_000, 2)}


def test_a_generous_budget_keeps_the_configured_sizes_and_a_tiny_one_the_floor():
    sp = {"a": Speed(img_per_s=1_000, overhead_s=1, train_count=3_000, points=4),
          "b": Speed(img_per_s=1_000, overhead_s=1, train_count=2_000, points=4)}
    big = shape(sp, 10_000, 1, 3)
    assert (big["a"].images, big["a"].epochs, big["b"].images) == (3_000, 3, 2_000)
    assert shape(sp, 1, 1, 3)["a"].images == MIN_IMAGES


def test_the_calibrations_measured_slowdown_shrinks_the_plan():
    from flows.study_plan import slowdown

    sp = {"a": Speed(img_per_s=1_000, overhead_s=5, train_count=50_000, points=40),
          "b": Speed(img_per_s=250, overhead_s=5, train_count=50_000, points=40)}
    # One calibration point each of 2,000 images: 7 s and 13 s predicted; side by side on two
    # places they took 10 s of wall, 20 machine-seconds: as predicted.
    assert slowdown(sp, 2_000, 10.0, 2) == 1.0
    assert slowdown(sp, 2_000, 15.0, 2) == 1.5
    assert slowdown(sp, 2_000, 5.0, 2) == 1.0  # never planned tighter than measured
    plain, slow = shape(sp, 3_000, 2, 1), shape(sp, 3_000, 2, 1, factor=1.5)
    assert slow["a"].images < plain["a"].images
    assert cost(sp, slow["a"].images, 1) * 1.5 <= 6_000 < cost(sp, plain["a"].images + 50, 1)
    assert "× 1.50" in slow["a"].note


def test_learning_rates_are_swept_around_each_familys_recipe():
    from flows.config import StudyConfig, StudyPlan
    from flows.study import expand, grid, points

    cfg = StudyConfig(families=["cnn", "dcnn"], plan=StudyPlan(levers=["lr"], seeds=1))
    cnn, dcnn = expand(cfg)
    assert grid(dcnn, "lr") == [0.0375, 0.1125, 0.375, 1.125, 3.75]
    assert grid(cnn, "lr")[2] == cnn.base.optim.lr
    # The recipe's own value is the base's point: trained once, not twice.
    from lightning_modules.layout import cache_key
    assert len({cache_key(c) for c in points(dcnn).values()}) == 5
    fixed = StudyConfig(plan=StudyPlan(levers=["lr"], lr_grid=[0.01], seeds=1))
    assert grid(fixed, "lr") == [0.01]


def test_a_larger_structure_costs_more_points_of_the_budget_than_the_recipe():
    from lightning_modules.config import ModelConfig
    from lightning_modules.nets import forward_flops
    from flows.study_plan import relative_cost

    flops = {p: forward_flops(ModelConfig(family="dcnn", preset=p), (3, 32, 32), 10)
             for p in ("small", "medium", "large")}
    assert flops["small"] < flops["medium"] < flops["large"]
    large = relative_cost(flops["large"], flops["small"])
    assert relative_cost(flops["small"], flops["small"]) == 1.0
    # Dearer than the recipe, but less than its FLOPs say (wider layers run faster).
    assert 1.0 < large < flops["large"] / flops["small"]
    sp = Speed(img_per_s=500, overhead_s=10, train_count=50_000, points=3, work=1 + 1 + large)
    assert cost({"d": sp}, 1_000, 1) == sp.load * 12 > 3 * 12


def test_a_budget_too_small_for_the_smallest_size_says_it_overruns():
    sp = {"a": Speed(img_per_s=1_000, overhead_s=10, train_count=3_000, points=40)}
    assert "even the smallest size overruns the budget" in shape(sp, 100, 2, 1)["a"].note
    assert "overruns" not in shape(sp, 10_000, 2, 1)["a"].note
