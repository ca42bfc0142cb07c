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
