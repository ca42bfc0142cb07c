"""The study's verdicts from given records: depth judged only on trained models, p-values
adjusted by Holm over each family, claims from one set of verdicts, the best model chosen on
validation (never on test), and figures a reader can compare at a glance."""
from __future__ import annotations

import io

from flows.claims import claims, figure_claims
from flows.study_results import depth_tests


def _row(ds, fam, test, val, trained=True, seeds=(0, 1, 2)):
    return {"dataset": ds, "family": fam, "seeds": list(seeds), "test_acc": test,
            "val_acc": val, "n_test": 10_000, "train_images": 54_000, "epochs": 5,
            "epochs_run": [5] * len(test), "val_curve": [[0.5, v] for v in val],
            "trained": trained, "reason": "reached" if trained else "still gaining"}


ROWS = [_row("mnist", "bp", [0.970, 0.972, 0.971], [0.97] * 3),
        _row("mnist", "dnn", [0.980, 0.983, 0.981], [0.98] * 3),
        _row("mnist", "cnn", [0.990, 0.991, 0.992], [0.99] * 3),
        _row("mnist", "dcnn", [0.985, 0.984, 0.986], [0.995] * 3, trained=False)]


def test_depth_is_judged_only_on_trained_models_and_adjusted_by_holm():
    tests = {(t["shallower"], t["deeper"]): t for t in depth_tests(ROWS)}
    assert set(tests) == {("bp", "dnn"), ("cnn", "dcnn"), ("bp", "dcnn")}
    assert tests[("cnn", "dcnn")]["verdict"] == "not tested"
    assert "dcnn not trained: still gaining" in tests[("cnn", "dcnn")]["reason"]
    bp_dnn = tests[("bp", "dnn")]
    # The only test: Holm over one p-value leaves it as it is.
    assert bp_dnn["p_adjusted"] == bp_dnn["p"] < 0.05 and bp_dnn["verdict"] == "confirmed"
    assert abs(bp_dnn["diff"] - 0.0103) < 1e-4


def test_constant_differences_are_no_test_and_holm_scales_the_depth_family():
    rows = [_row(ds, fam, [a + d for d in (0.0, 0.004, 0.001)], [0.9] * 3)
            for ds in ("mnist", "fashion-mnist", "cifar10")
            for fam, a in (("bp", 0.90), ("dnn", 0.903))]
    rows += [_row("mnist", "bp2", [0.9] * 3, [0.9] * 3)]
    tests = depth_tests(rows)
    assert len(tests) == 3 and all(t["p"] is None for t in tests)  # constant differences
    noisy = [_row("mnist", "bp", [0.90, 0.91, 0.92], [0.9] * 3),
             _row("mnist", "dnn", [0.93, 0.95, 0.94], [0.9] * 3),
             _row("mnist", "cnn", [0.95, 0.96, 0.97], [0.9] * 3),
             _row("mnist", "dcnn", [0.96, 0.96, 0.99], [0.9] * 3)]
    by = {(t["shallower"], t["deeper"]): t for t in depth_tests(noisy)}
    raw = sorted(t["p"] for t in by.values())
    assert sorted(t["p_adjusted"] for t in by.values())[0] == min(1.0, 3 * raw[0])


def test_the_best_model_of_a_dataset_is_chosen_on_validation_not_on_test():
    # cnn has the best test accuracy, dnn the best validation accuracy (dcnn is untrained).
    rows = [_row("mnist", "dnn", [0.990, 0.991, 0.992], [0.999] * 3),
            _row("mnist", "cnn", [0.996, 0.997, 0.998], [0.990] * 3)]
    mnist, = [c for c in figure_claims(rows) if c["dataset"] == "mnist"]
    assert mnist["measured"].startswith("dnn 0.9910")


def test_claims_take_one_set_of_verdicts():
    rows = ROWS + [_row("fashion-mnist", "bp", [0.885, 0.887, 0.889], [0.88] * 3)]
    table = claims(rows, depth_tests(rows), [
        {"lever": "dropout", "verdict": "confirmed"}, {"lever": "dropout", "verdict": "refuted"},
        {"lever": "lr", "verdict": "not tested"}])
    by = {(c["claim"][:30], c["dataset"]): c["verdict"] for c in table}
    assert {c["verdict"] for c in table} <= {"confirmed", "refuted", "no significant difference",
                                             "not tested"}
    assert by[("an MLP of one 256-unit ReLU la", "fashion-mnist")] == "confirmed"
    assert by[("the better the classification ", "mnist")] == "confirmed"  # bp→dnn only
    assert by[("optimising the dropout raises ", "all")] == "refuted"  # a counterexample
    assert by[("optimising the lr raises the c", "all")] == "not tested"
    fashion = next(c for c in table if c["dataset"] == "fashion-mnist")
    assert fashion["evidence"] == "0.8763 test accuracy (Keras)" and "0.95" in fashion["field"]


def test_lever_panels_share_a_y_range_per_row_within_zero_and_one():
    from PIL import Image

    from flows.plots import _race_axis, _ylim, levers_png

    lo, hi = _ylim([0.2, 0.999])
    assert abs(lo - (0.2 - 0.0799)) < 1e-9 and hi == 1.0  # a tenth of the range, capped at 1
    assert _ylim([0.001, 0.5])[0] == 0.0  # never below 0
    lever = {"family": "bp", "lever": "dropout", "values": [0.0, 0.1], "recipe": 0.1,
             "chosen": 0.0, "race": [{"rung": 0, "images": 500, "epochs": 1, "results": [
                 {"value": 0.0, "val_acc": 0.91}, {"value": 0.1, "val_acc": 0.90}]}]}
    png = levers_png([lever, {**lever, "lever": "lr"}, {**lever, "family": "dnn"}], "t")
    assert Image.open(io.BytesIO(png)).size[0] > 300
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    assert _race_axis(ax, lever, 7) == [0.91, 0.90]
    plt.close(fig)


def test_a_model_still_gaining_can_confirm_a_figure_but_never_refute_it():
    def cifar(acc, trained):
        return [_row("cifar10-jpeg", "bp", [0.99] * 3, [0.99] * 3),  # not a deep network
                _row("cifar10-jpeg", "dcnn", [acc, acc + 0.002, acc + 0.004], [0.8] * 3,
                     trained=trained)]
    verdict = {}
    for acc, ok in ((0.81, False), (0.70, False), (0.70, True)):
        c, = [c for c in figure_claims(cifar(acc, ok)) if c["dataset"] == "cifar10-jpeg"]
        assert c["measured"].startswith("dcnn")  # the claim is about the deep networks
        verdict[(acc, ok)] = c["verdict"]
    assert verdict == {(0.81, False): "confirmed", (0.70, False): "not tested",
                       (0.70, True): "refuted"}
