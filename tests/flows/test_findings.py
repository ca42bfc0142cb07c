"""The study's findings from given results: the best value is chosen on validation, never on
test; a difference within the seeds' spread is said to be; the depth claim is tested pair by
pair and reported as not holding where the data do not support it."""
from __future__ import annotations

from flows.config import StudyConfig
from flows.findings import depth_findings, lever_findings, lever_rows


def _pt(value, accs, val_accs):
    return {"value": value, "accs": accs, "mean": sum(accs) / len(accs),
            "std": 0.0, "val_accs": val_accs, "val_mean": sum(val_accs) / len(val_accs)}


BASE = _pt("base", [0.90, 0.91, 0.92], [0.90, 0.91, 0.92])


def test_best_value_is_chosen_on_validation_and_tested_against_the_base():
    cfg = StudyConfig(base={"model": {"family": "cnn", "dropout": 0.1}})
    results = {"base": BASE, "dropout": [
        # 0.5 tops test but not validation: it must not be called best.
        _pt(0.0, [0.92, 0.93, 0.95], [0.95, 0.95, 0.95]),
        _pt(0.5, [0.99, 0.99, 0.99], [0.50, 0.50, 0.50])]}
    row, = lever_rows(cfg, results)
    assert row["best value"] == 0.0 and row["base value"] == 0.1
    assert abs(row["effect"] - 0.0233) < 1e-3
    text = lever_findings(cfg, results)
    assert "| dropout | 0.1 | 0.0 | 0.9333 | +0.0233 |" in text
    assert "within the seeds' spread" in text or "better than the base" in text


def test_depth_claim_is_reported_honestly():
    results = {("mnist", "bp"): {"base": BASE},
               ("mnist", "dnn"): {"base": _pt("base", [0.95, 0.97, 0.97], [0.9] * 3)},
               ("mnist", "cnn"): {"base": _pt("base", [0.99, 0.98, 0.99], [0.9] * 3)},
               ("mnist", "dcnn"): {"base": _pt("base", [0.98, 0.99, 0.97], [0.9] * 3)}}
    text = depth_findings(results)
    assert "| mnist | bp | dnn | 0.9100 | 0.9633 | +0.0533 |" in text
    assert "| mnist | cnn | dcnn |" in text and "within the seeds' spread" in text
    assert "holds (deeper significantly better) in 2 of 3 comparisons" in text


def test_claims_table_says_what_held_and_what_did_not():
    from flows.claims import claims_table

    results = {("mnist", "bp"): {"base": BASE, "dropout": [
                   _pt(0.0, [0.80, 0.81, 0.80], [0.95] * 3)]},  # clearly worse: significant
               ("mnist", "dnn"): {"base": _pt("base", [0.95, 0.97, 0.97], [0.9] * 3)},
               ("cifar10-jpeg", "cnn"): {"base": _pt("base", [0.70, 0.72, 0.71], [0.7] * 3),
                                         "dropout": [
                   # best on test, not on validation: never the reported best point
                   _pt(0.3, [0.74, 0.71, 0.73], [0.1] * 3)]},
               ("cifar10-jpeg", "dcnn"): {"base": _pt("base", [0.60, 0.61, 0.62], [0.8] * 3)}}
    text = claims_table(results, ["dropout"])
    assert "| deepening of the network model | mnist | deeper significantly better in 1 of 1" \
        in text.replace("Classification improves with the ", "") and "| confirmed |" in text
    assert "| cifar10-jpeg | deeper significantly better in 0 of 1 paired comparisons | " \
           "not supported by these data |" in text
    assert "in 1 of 2 studies" in text and "partly confirmed" in text
    # The best point on validation is dcnn's base (0.8): its test accuracy is what counts.
    assert "| 0.6100 (dcnn base, the best point on validation) | not reached at this budget |" \
        in text, text


def test_a_dataset_figure_has_a_panel_per_lever_and_family():
    import io

    from PIL import Image

    from flows.plots import dataset_panels

    by_family = {fam: {"dropout": [_pt(0.0, [0.9], [0.9]), _pt(0.5, [0.8], [0.8])],
                       "lr": [_pt(0.1, [0.9], [0.9])]} for fam in ("bp", "dnn", "cnn")}
    one = Image.open(io.BytesIO(dataset_panels({"bp": by_family["bp"]}, "t")))
    three = Image.open(io.BytesIO(dataset_panels(by_family, "t")))
    assert three.size[0] > 2 * one.size[0] and three.size[1] == one.size[1]


def test_a_dataset_figure_keeps_panel_titles_clear_of_the_tick_labels_above():
    import matplotlib.pyplot as plt

    from flows.plots import dataset_figure

    long = ["leaky_relu", "sigmoid", "0.0375", "0.1125"]
    by_family = {fam: {lever: [_pt(v, [0.5], [0.5]) for v in long] for lever in ("lr", "act")}
                 for fam in ("bp", "dnn", "cnn", "dcnn")}
    fig = dataset_figure(by_family, "t", {fam: 0.5 for fam in by_family})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    assert len(axes) == 8 and any(ln.get_linestyle() == "--" for ln in axes[0].get_lines())
    for above, below in zip(axes[:4], axes[4:]):
        title = below.title.get_window_extent(renderer)
        for label in above.get_xticklabels():
            assert not title.overlaps(label.get_window_extent(renderer)), label.get_text()
    plt.close(fig)
