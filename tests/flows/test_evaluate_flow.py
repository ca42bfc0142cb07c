"""The evaluate flow under Prefect's harness: metrics, plots and an artifact for a bundle."""
from __future__ import annotations

import json

from prefect.artifacts import Artifact

from flows.config import EvalConfig
from flows.evaluate import evaluate
from lightning_modules import metrics as M
from tests.datagen import random_bundle


def test_evaluate_flow_writes_metrics_and_artifact(prefect_harness, tiny_dataset):
    store, uri = tiny_dataset
    bundle = random_bundle(store, uri)
    metrics_uri = evaluate(EvalConfig(dataset="mnist", family="bp", store=store))
    m = json.loads(open(metrics_uri).read())
    assert metrics_uri == f"{bundle}/metrics.json"
    assert m["test_count"] == 60 and sum(map(sum, m["confusion"])) == 60
    assert 0.0 <= m[M.TEST_ACC] <= 1.0 and set(m["per_class"]) == {str(i) for i in range(10)}
    assert m["flops_per_image"] > 0 and m["latency_ms_p99"] >= m["latency_ms_p50"] > 0
    assert open(f"{bundle}/confusion.png", "rb").read(4) == b"\x89PNG"
    assert "test/acc" in Artifact.get("eval-mnist-bp").data


def test_a_study_points_light_evaluation_is_one_view_and_written_apart(tmp_path):
    """A study point is scored on one view of each test image (no test-time augmentation), with
    no speed measurement or plot, into study_metrics.json: a published model's full evaluation
    (metrics.json, with test-time augmentation for colour images) is never replaced by it."""
    import numpy as np
    import pytest

    from flows.config import PrepConfig
    from flows.evaluate import evaluate_bundle
    from flows.prep.build import prepare
    from lightning_modules.bundle import load_bundle
    from lightning_modules.datamodule import PreparedData
    from tests.datagen import write_tree

    src = write_tree(tmp_path / "photos", classes=2, per_class=8, size=(8, 8), mode="RGB")
    res = prepare(PrepConfig(dataset="imagefolder", source=str(src), store=str(tmp_path / "s")))
    bundle = random_bundle(str(tmp_path / "s"), res.uri, family="cnn", dataset="photos")
    light = evaluate_bundle(bundle, light=True)
    assert light["test_time_augmentation"] is False and "img_per_s" not in light
    assert json.loads(open(f"{bundle}/study_metrics.json").read())[M.TEST_ACC] == light[M.TEST_ACC]
    full = evaluate_bundle(bundle)
    assert full["test_time_augmentation"] is True and full["img_per_s"] > 0
    assert json.loads(open(f"{bundle}/metrics.json").read())["test_time_augmentation"] is True
    pred = load_bundle(bundle)  # the light score is the plain net's on every test image
    pred.tta = False
    test = PreparedData(res.uri, batch_size=1).split("test")
    plain = pred.probs(test.x).argmax(1)
    assert light[M.TEST_ACC] == pytest.approx(float((plain == test.y).float().mean()))
    assert np.array_equal(np.load(f"{bundle}/study_predictions.npy"), plain.numpy())
