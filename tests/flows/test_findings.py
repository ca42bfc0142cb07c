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
