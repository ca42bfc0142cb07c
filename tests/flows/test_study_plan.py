"""The study's budget: points of one (dataset, family) all get the same size, what fits."""
from __future__ import annotations

from flows.study_plan import MIN_IMAGES, Speed, shape


def test_sizes_fit_the_budget_and_are_cut_epochs_first_then_images():
    speeds = {"mnist/bp": Speed(img_per_s=2_000, overhead_s=2, train_count=54_000, points=30),
              "mnist/dcnn": Speed(img_per_s=500, overhead_s=10, train_count=54_000, points=30),
              "mnist/cnn": Speed(img_per_s=4_000, overhead_s=4, train_count=54_000, points=30)}
    out = shape(speeds, budget_s=3600, slots=2, epochs=4)
    share = 3600 * 2 / 3
    for key, sp in speeds.items():
        s = out[key]
        assert s.images <= sp.train_count and s.epochs >= 1
        used = sp.points * (sp.overhead_s + s.images * s.epochs / sp.img_per_s)
        assert used <= share * 1.001 or s.images == MIN_IMAGES, (key, used, share)
    assert (out["mnist/bp"].images, out["mnist/bp"].epochs) == (54_000, 2)  # epochs cut first
    assert out["mnist/dcnn"].epochs == 1 and out["mnist/dcnn"].images < 54_000
    assert "30 points of" in out["mnist/dcnn"].note


def test_a_generous_budget_keeps_the_configured_sizes_and_a_tiny_one_the_floor():
    sp = {"a": Speed(img_per_s=1_000, overhead_s=1, train_count=3_000, points=4)}
    assert (shape(sp, 10_000, 1, 3)["a"].images, shape(sp, 10_000, 1, 3)["a"].epochs) == (3_000, 3)
    assert shape(sp, 1, 1, 3)["a"].images == MIN_IMAGES
