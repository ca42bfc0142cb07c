"""MLflow tracking against a real `mlflow server` (SQLite backend, artifacts proxied) on
loopback: a pipeline run is an MLflow run with every trial, final training and evaluation
nested under it; a retried training continues its run; the champion is the registered model's
alias `champion` and a rollback from the CLI moves it back. Without a URI nothing is logged."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from flows.config import PipelineConfig
from flows.publish import champion_entry, update_champion
from lightning_modules import metrics as M
from lightning_modules.layout import MANIFEST
from lightning_modules.tracking import (
    CHAMPION,
    KEY_TAG,
    KIND_TAG,
    PARENT_TAG,
    URI_TAG,
    TrackingConfig,
    mirror_champion,
    model_name,
)
from tests.conftest import BIN, _free_port, stop_process_tree
from tests.datagen import write_tree

pytestmark = pytest.mark.slow  # a real MLflow server


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        stop_process_tree(proc)
        pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
    yield uri
    stop_process_tree(proc)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, experiment: str) -> list:
    c = _client(uri)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else c.search_runs([exp.experiment_id], max_results=1000)


def test_a_pipeline_run_is_tracked_with_its_trials_trainings_and_evaluations(
        mlflow_server, tmp_path, prefect_harness):
    from flows.pipeline import pipeline

    shapes = write_tree(tmp_path / "shapes", classes=3, per_class=30, size=(12, 12))
    cfg = PipelineConfig(
        datasets=[{"dataset": "imagefolder", "source": str(shapes), "name": "shapes"}],
        families=["bp"], store=str(tmp_path / "store"), epochs=2, max_train_samples=None,
        tune_train_samples=None, run_time_budget_s=None,
        tune={"num_samples": 2, "max_epochs": 1}, space={"batch_sizes": [16, 32]},
        tracking={"tracking_uri": mlflow_server, "experiment": "pipeline-test"})
    run_uri = pipeline(cfg=cfg)
    runs = _runs(mlflow_server, "pipeline-test")
    kinds = {}
    for r in runs:
        kinds.setdefault(r.data.tags[KIND_TAG], []).append(r)
    parent, = kinds["pipeline"]
    assert len(kinds["trial"]) == 2 and len(kinds["training"]) == 1
    assert len(kinds["evaluation"]) == 1
    for r in kinds["trial"] + kinds["training"] + kinds["evaluation"]:
        assert r.data.tags[PARENT_TAG] == parent.info.run_id  # nested under the pipeline's run
    train, = kinds["training"]
    assert train.data.params["model.family"] == "bp" and "optim.lr" in train.data.params
    history = _client(mlflow_server).get_metric_history(train.info.run_id, M.VAL_ACC)
    assert len(history) == 2  # one value per epoch
    ev, = kinds["evaluation"]
    assert 0.0 <= ev.data.metrics[M.TEST_ACC] <= 1.0
    files = {f.path for f in _client(mlflow_server).list_artifacts(ev.info.run_id)}
    assert {"confusion.png", "curves.png", "metrics.json"} <= files
    assert "shapes.bp.test_acc" in parent.data.metrics
    assert "comparison.md" in {f.path for f in
                               _client(mlflow_server).list_artifacts(parent.info.run_id)}
    # The champion gate, mirrored: the published model's version carries the alias.
    version = _client(mlflow_server).get_model_version_by_alias(model_name("shapes", "bp"),
                                                                CHAMPION)
    assert version.tags[URI_TAG] == f"{run_uri}/shapes/bp"
    # Triggered again with the same inputs: nothing is trained and no run is added.
    assert pipeline(cfg=cfg) == run_uri
    assert len(_runs(mlflow_server, "pipeline-test")) == len(runs)


def test_a_retried_training_continues_its_run(mlflow_server, tmp_path):
    from cluster.config import TrainConfig
    from cluster.train_worker import tracked_run

    t = TrackingConfig(tracking_uri=mlflow_server, experiment="retry-test",
                       parent_run_id=None)
    cfg = TrainConfig(store=str(tmp_path), tracking=t)
    first = tracked_run(cfg)
    assert tracked_run(cfg) == first  # the same training, asked again: the same run
    other = tracked_run(cfg.model_copy(update={"seed": 1}))
    assert other != first
    keys = [r.data.tags[KEY_TAG] for r in _runs(mlflow_server, "retry-test")]
    assert len(keys) == len(set(keys)) == 2


def test_the_cli_rollback_moves_the_champion_alias_back(mlflow_server, tmp_path):
    store = str(tmp_path)
    t = TrackingConfig(tracking_uri=mlflow_server, experiment="rollback-test")
    for rid, acc in (("r1", 0.90), ("r3", 0.95)):
        run = tmp_path / "runs" / rid
        run.mkdir(parents=True)
        (run / MANIFEST).write_text('{"files": {}}')
        entry = champion_entry(rid, str(run), "digits", "cnn", acc)
        assert update_champion(store, "digits", "cnn", entry, 0.0)["moved"]
        mirror_champion(t, "digits", "cnn", entry["uri"])
    c = _client(mlflow_server)
    assert c.get_model_version_by_alias(model_name("digits", "cnn"), CHAMPION).tags[
        URI_TAG].endswith("/runs/r3/digits/cnn")
    out = subprocess.run([str(BIN / "imgclf"), "rollback", "--store", store, "--dataset",
                          "digits", "--family", "cnn", "--tracking-uri", mlflow_server],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["champion"] == "r1"
    assert c.get_model_version_by_alias(model_name("digits", "cnn"), CHAMPION).tags[
        URI_TAG].endswith("/runs/r1/digits/cnn")
    assert Path(store, "champions", "digits", "cnn.json").exists()
