"""The pipeline's time budget: trials per tuning and epochs per final training, planned from
measured speeds so that the run fits its budget and cheap families get more epochs."""
from __future__ import annotations

import pytest

from flows.pipeline_plan import BranchCost, branch_cost, plan_epochs, plan_trials
from flows.profiles import build
from flows.tune import pick


def _total(costs: dict[str, BranchCost], epochs: dict[str, int]) -> float:
    return sum((c.fixed_s + c.epoch_s * epochs[k]) * c.runs for k, c in costs.items())


def test_cheap_families_get_more_epochs_and_the_plan_fits() -> None:
    costs = {"bp": BranchCost(2.0, 4.0), "dnn": BranchCost(4.0, 4.0),
             "cnn": BranchCost(25.0, 5.0), "dcnn": BranchCost(30.0, 5.0)}
    epochs, note = plan_epochs(costs, seconds=240, slots=1, max_epochs=10)
    assert epochs["bp"] == 10 and epochs["dnn"] == 10  # capped: their share was more than enough
    assert 2 <= epochs["dcnn"] <= epochs["cnn"] < 10  # the rest went to the slow ones
    assert _total(costs, epochs) <= 240
    # Nothing is left that could buy one more epoch for a branch below the cap.
    slack = 240 - _total(costs, epochs)
    assert all(slack < costs[k].epoch_s for k in ("cnn", "dcnn"))
    assert "over" not in note


def test_more_slots_buy_more_epochs() -> None:
    costs = {"a": BranchCost(30.0, 5.0), "b": BranchCost(30.0, 5.0)}
    one, _ = plan_epochs(costs, seconds=100, slots=1, max_epochs=20)
    two, _ = plan_epochs(costs, seconds=100, slots=2, max_epochs=20)
    assert sum(two.values()) > sum(one.values())


def test_a_budget_too_small_still_trains_each_model_once_and_says_so() -> None:
    costs = {"a": BranchCost(100.0, 5.0), "b": BranchCost(50.0, 5.0, runs=3)}
    epochs, note = plan_epochs(costs, seconds=60, slots=1, max_epochs=5)
    assert epochs == {"a": 1, "b": 1}
    assert "over" in note


def test_branch_cost_counts_validation_and_seeds() -> None:
    c = branch_cost(img_per_s=1000, n_train=6000, n_val=3000, runs=2, overhead_s=5)
    assert c.epoch_s == 7.0 and c.fixed_s == 5.0 and c.runs == 2
    # the evaluation's forward passes (six per test image with test-time augmentation)
    tta = branch_cost(img_per_s=1000, n_train=6000, n_val=3000, runs=1, overhead_s=5,
                      n_test=1000, eval_passes=6)
    assert tta.fixed_s == 7.0 and tta.epoch_s == 7.0


def test_trials_fit_the_tuning_share() -> None:
    cfg = build("default", {"run_time_budget_s": 400, "tune_share": 0.2,
                            "trial_seconds_guess": 5, "tune": {"num_samples": 4}})
    n, note = plan_trials(cfg, branches=8)  # 80 s of tuning over 8 branches: 2 trials of 5 s
    assert n == 2 and "2 of 4 trials" in note
    assert plan_trials(cfg.model_copy(update={"run_time_budget_s": None}), 8) == (4, None)


def test_a_sampled_config_must_beat_the_base_by_the_margin() -> None:
    class Row:
        def __init__(self, params: dict, score: float, img_per_s: float | None = None) -> None:
            self.params, self.best_score, self.img_per_s = params, score, img_per_s

    base, other = Row({"lr": 2e-3}, 0.756), Row({"lr": 7e-4}, 0.7655)
    assert pick([base, other], {"lr": 2e-3}, min_gain=0.02) is base
    assert pick([base, other], {"lr": 2e-3}, min_gain=0.0) is other
    assert pick([other], {"lr": 2e-3}, min_gain=0.02) is other  # the base did not finish
    # A slower config must win by the margin once for each time it is slower (the
    # Fashion-MNIST dcnn trials of the default run: +2.35 points at 736 against 1,829 img/s).
    base, slow = Row({"lr": 4e-3}, 0.785, 1829.2), Row({"lr": 3.9e-4}, 0.8085, 736.5)
    assert pick([base, slow], {"lr": 4e-3}, min_gain=0.02) is base
    fast = Row({"lr": 3.9e-4}, 0.8085, 2000.0)  # as good and not slower: it wins
    assert pick([base, fast], {"lr": 4e-3}, min_gain=0.02) is fast
    unmeasured = Row({"lr": 3.9e-4}, 0.8085)
    assert pick([base, unmeasured], {"lr": 4e-3}, min_gain=0.02) is unmeasured


def test_a_profile_structure_replaces_the_recipe_s_and_is_checked() -> None:
    from flows.pipeline_plan import base_train

    cfg = build("cifar")
    assert [d.dataset for d in cfg.datasets] in (["cifar10"], ["imagefolder"])  # or its copy
    dcnn = base_train(cfg, "cifar10-jpeg", "dcnn", 0, None)
    assert dcnn.model.preset == "large" and dcnn.optim.optimizer == "sgd"
    assert dcnn.optim.lookahead and dcnn.optim.decoupled_weight_decay
    assert base_train(build("default"), "mnist", "dcnn", 0, None).model.preset == "small"
    with pytest.raises(ValueError, match="preset 'huge' is not one of"):
        build("default", {"structures": {"dcnn": "huge"}})


def test_when_one_epoch_of_everything_does_not_fit_the_dearest_train_on_a_subset() -> None:
    from flows.pipeline_plan import MIN_FINAL_IMAGES, plan_images

    # bp: 6 s an epoch; dcnn: 120 s (10 of them validation); 60 s for both, 2 s fixed each.
    costs = {"bp": BranchCost(6.0, 2.0, val_s=1.0), "dcnn": BranchCost(120.0, 2.0, val_s=10.0)}
    n = {"bp": 50_000, "dcnn": 50_000}
    images, note = plan_images(costs, seconds=60, slots=1, n_train=n)
    assert images["bp"] is None and MIN_FINAL_IMAGES < images["dcnn"] < 50_000
    steps = 5.0 + 110.0 * images["dcnn"] / 50_000
    assert 4 + 11 + steps <= 60 + 1e-6  # the shrunk plan fits what is left
    assert "dcnn" in note and "bp" not in note
    assert plan_images(costs, seconds=1_000, slots=1, n_train=n) == ({"bp": None,
                                                                       "dcnn": None}, None)
    tiny, _ = plan_images(costs, seconds=1, slots=1, n_train=n)
    assert tiny["dcnn"] == tiny["bp"] == MIN_FINAL_IMAGES  # the floor, never zero
