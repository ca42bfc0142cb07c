"""The study on tiny data, with real trainings on Ray: depth models with their curves, races
recorded rung by rung on validation, confirmations on fresh seeds, and a budget kept."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.config import StudyConfig
from flows.study import study


def _infos(store: str, fam: str) -> list[dict]:
    return [json.loads(p.read_text())
            for p in Path(store, "models", "mnist", fam).glob("*/bundle.json")]


@pytest.mark.slow  # real trainings on Ray
def test_a_study_over_families_races_levers_and_tests_depth_on_trained_models(
        local_ray, prefect_harness):
    # Points of a few seconds: one CPU per training, the local Ray's two CPUs hold two.
    cfg = StudyConfig(base={"dataset": "mnist", "store": local_ray, "max_train_samples": 1500,
                            "epochs": 2, "scaling": {"cpus_per_worker": 1}},
                      families=["bp", "dnn"],
                      plan={"levers": ["dropout"], "dropout_grid": [0.0, 0.5], "seeds": 2,
                            "eval_samples": 500})
    uri = study(cfg)
    data = json.loads(Path(uri, "study.json").read_text())
    depth = {r["family"]: r for r in data["depth"]}
    for r in depth.values():
        assert r["seeds"] == [0, 1] and len(r["test_acc"]) == 2 and r["n_test"] == 10_000
        assert r["train_images"] == 1500 and r["epochs"] == 2
        assert [len(c) for c in r["val_curve"]] == [2, 2]
        assert isinstance(r["trained"], bool) and r["reason"]
    t, = data["depth_tests"]
    assert (t["shallower"], t["deeper"]) == ("bp", "dnn") and t["verdict"] in (
        "confirmed", "refuted", "no significant difference", "not tested")
    for lever in data["levers"]:
        assert lever["values"] == [0.0, 0.1, 0.5] and lever["recipe"] == 0.1  # recipe added
        rungs = lever["race"]
        assert [len(r["results"]) for r in rungs] == [3, 2]  # successive halving: 3 → 2
        assert all(set(x) == {"value", "val_acc"} for r in rungs for x in r["results"])
        best = max(rungs[-1]["results"], key=lambda x: x["val_acc"])
        assert lever["chosen"] == best["value"]
        assert lever["confirm_seeds"] == [0, 1] and len(lever["recipe_test_acc"]) == 2
        assert lever["verdict"] in ("confirmed", "refuted", "no significant difference")
    # The races trained on a seed the depth models and confirmations never use.
    race_seeds = {i["config"]["seed"] for i in _infos(local_ray, "bp")
                  if i["config"]["max_eval_samples"] == 500}
    assert race_seeds == {1000}
    assert {c["verdict"] for c in data["claims"]} <= {
        "confirmed", "refuted", "no significant difference", "not tested"}
    findings = Path(uri, "findings.md").read_text()
    assert "| mnist | bp → dnn |" in findings and "p (Holm)" in findings
    assert Path(uri, "depth-mnist.png").read_bytes()[:4] == b"\x89PNG"
    assert Path(uri, "levers-mnist.png").read_bytes()[:4] == b"\x89PNG"
    assert study(cfg) == uri  # a re-run reuses every trained and evaluated point


def test_bad_study_options():
    with pytest.raises(ValidationError, match="levers"):
        StudyConfig(plan={"levers": ["momentum"]})
    with pytest.raises(ValidationError, match="seeds"):
        StudyConfig(plan={"seeds": 0})
    with pytest.raises(ValidationError, match="batch_lr_rule"):
        StudyConfig(plan={"batch_lr_rule": "cubic"})


@pytest.mark.slow  # real trainings on Ray
def test_a_budget_is_kept_and_what_does_not_fit_is_not_tested(local_ray, prefect_harness):
    cfg = StudyConfig(base={"dataset": "mnist", "store": local_ray,
                            "scaling": {"cpus_per_worker": 1}},
                      families=["bp"], budget_s=40,
                      plan={"levers": ["dropout", "lr"], "seeds": 2})
    uri = study(cfg)
    data = json.loads(Path(uri, "study.json").read_text())
    assert data["wall_s"] <= 40 + 5, data["wall_s"]
    r, = data["depth"]
    assert r["train_images"] == 54_001 and r["epochs"] >= 1  # depth: every training image
    assert data["plan"]["seconds"]["depth"] > 0
    findings = Path(uri, "findings.md").read_text()
    assert "of its 40 s budget" in findings and "machine-seconds planned" in findings
    for x in data["levers"]:  # either raced and judged, or not tested and saying why
        assert (x["race"] and x["verdict"] != "not tested") or (
            x["verdict"] == "not tested" and x["reason"]), x
