"""The lever study on tiny data: one point per grid value, mean ± std over seeds, plot + JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.config import StudyConfig
from flows.study import study


@pytest.mark.slow  # real trainings on Ray
def test_one_lever_sweep_writes_plot_json_and_findings(local_ray, prefect_harness):
    # One CPU per training: the local Ray's two CPUs hold two points at once. Points of a few
    # seconds: the second Ray worker (started on demand) joins while the first still trains.
    cfg = StudyConfig(base={"dataset": "mnist", "store": local_ray, "max_train_samples": 6000,
                            "epochs": 2, "model": {"family": "bp", "preset": "small"},
                            "optim": {"batch_size": 32}, "scaling": {"cpus_per_worker": 1}},
                      plan={"levers": ["dropout"], "dropout_grid": [0.0, 0.5], "seeds": 2})
    uri = study(cfg)
    data = json.loads(Path(uri, "study.json").read_text())
    points = data["results"]["dropout"]
    assert [p["value"] for p in points] == [0.0, 0.5]
    for p in points:
        assert len(p["accs"]) == 2 and all(0.0 <= a <= 1.0 for a in p["accs"])
        assert p["mean"] == pytest.approx(sum(p["accs"]) / 2)
        assert len(p["val_accs"]) == 2
    assert len(data["results"]["base"]["accs"]) == 2
    assert Path(uri, "study.png").read_bytes()[:4] == b"\x89PNG"
    findings = Path(uri, "findings.md").read_text()
    assert "| dropout | 0.1 | " in findings and "the seeds' spread" in findings \
        or " than the base (p = " in findings, findings
    # Submitted at once: trainings overlapped in time rather than running one by one.
    infos = [json.loads(p.read_text())
             for p in Path(local_ray, "models", "mnist", "bp").glob("*/bundle.json")]
    spans = sorted(tuple(i["steps_span"]) for i in infos
                   if i["config"]["max_train_samples"] == 6000 and i["config"]["epochs"] == 2)
    assert len(spans) == 6, spans  # the base (dropout 0.1), 0.0 and 0.5; two seeds each
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans
    assert study(cfg) == uri  # a re-run reuses every trained and evaluated point


def test_bad_study_options():
    with pytest.raises(ValidationError, match="levers"):
        StudyConfig(plan={"levers": ["momentum"]})
    with pytest.raises(ValidationError, match="seeds"):
        StudyConfig(plan={"seeds": 0})


@pytest.mark.slow  # real trainings on Ray
def test_a_study_over_families_tests_the_depth_claim(local_ray, prefect_harness):
    cfg = StudyConfig(base={"dataset": "mnist", "store": local_ray, "max_train_samples": 300,
                            "scaling": {"cpus_per_worker": 1}},
                      families=["bp", "dnn"],
                      plan={"levers": ["dropout"], "dropout_grid": [0.0], "seeds": 2})
    uri = study(cfg)
    data = json.loads(Path(uri, "study.json").read_text())
    assert set(data["results"]["mnist"]) == {"bp", "dnn"}
    for fam in ("bp", "dnn"):
        res = data["results"]["mnist"][fam]
        assert len(res["base"]["accs"]) == 2 and [p["value"] for p in res["dropout"]] == [0.0]
    findings = Path(uri, "findings.md").read_text()
    assert "| mnist | bp | dnn |" in findings, findings
    assert "| Classification improves with the deepening of the network model | mnist |" \
        in findings and "| The dropout changes the classification accuracy | all |" in findings
    assert Path(uri, "study-mnist.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # real trainings on Ray
def test_a_budget_sizes_every_point_of_a_study_alike(local_ray, prefect_harness):
    cfg = StudyConfig(base={"dataset": "mnist", "store": local_ray, "epochs": 20,
                            "scaling": {"cpus_per_worker": 1}},
                      families=["bp"], budget_s=15,
                      plan={"levers": ["dropout"], "dropout_grid": [0.0], "seeds": 2})
    uri = study(cfg)
    data = json.loads(Path(uri, "study.json").read_text())
    base = data["config"]["base"]
    # 15 s for a calibration and 4 points cannot hold 20 epochs of the whole training set.
    assert base["epochs"] < 20 or base["max_train_samples"] < 54_000, base
    assert "Budget: mnist/bp: 4 points of " in Path(uri, "findings.md").read_text()
    assert "the same size so that levers and families compare" in Path(uri, "findings.md").read_text()
    assert "s budget (planned " in Path(uri, "findings.md").read_text()
