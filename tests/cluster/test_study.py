"""The lever study on tiny data: one point per grid value, mean ± std over seeds, plot + JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.config import StudyConfig
from flows.study import study


@pytest.mark.slow  # real trainings on Ray
def test_one_lever_sweep_writes_plot_and_json(local_ray, prefect_harness):
    cfg = StudyConfig(base={"dataset": "mnist", "store": local_ray, "max_train_samples": 300,
                            "model": {"family": "bp", "preset": "small"},
                            "optim": {"batch_size": 32}},
                      plan={"levers": ["dropout"], "dropout_grid": [0.0, 0.5], "seeds": 2})
    uri = study(cfg)
    data = json.loads(Path(uri, "study.json").read_text())
    points = data["results"]["dropout"]
    assert [p["value"] for p in points] == [0.0, 0.5]
    for p in points:
        assert len(p["accs"]) == 2 and all(0.0 <= a <= 1.0 for a in p["accs"])
        assert p["mean"] == pytest.approx(sum(p["accs"]) / 2)
    assert Path(uri, "study.png").read_bytes()[:4] == b"\x89PNG"
    assert study(cfg) == uri  # a re-run reuses every trained and evaluated point


def test_bad_study_options():
    with pytest.raises(ValidationError, match="levers"):
        StudyConfig(plan={"levers": ["momentum"]})
    with pytest.raises(ValidationError, match="seeds"):
        StudyConfig(plan={"seeds": 0})
