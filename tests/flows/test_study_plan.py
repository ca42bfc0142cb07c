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
