"""The deployments as users run them: a real Prefect server, `prefect deploy` from
prefect.yaml, the pipeline triggered through the REST API as the UI does, and a process worker
running it to a published, verified run. The run is kept small (one dataset, one family, one
trial): what the pipeline computes is tested in-process in tests/flows/test_pipeline.py."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import ray

from flows.publish import verify_run
from flows.store import join, read_json
from tests.conftest import _free_port, shared_dataset
from tests.datagen import idx_subset

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on a free loopback port, with its own home and database."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"prefect server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
    yield api, {**env, "PREFECT_API_URL": api}
    proc.terminate()
    proc.wait(30)


def _post_retrying(url: str, body: dict, tries: int = 5) -> dict:
    """POST as the UI does, which retries too: a just-started server (SQLite) has answered
    503 Service Unavailable under load in CI; a 4xx is not retried."""
    for attempt in range(tries):
        resp = httpx.post(url, json=body, timeout=30)
        if resp.status_code < 500 or attempt == tries - 1:
            return resp.json()
        time.sleep(2 * (attempt + 1))
    raise AssertionError("unreachable")


def test_deployed_pipeline_runs_when_triggered_through_the_api(prefect_server, tmp_path):
    api, env = prefect_server
    store = str(tmp_path / "store")
    digits = idx_subset(shared_dataset("mnist"), tmp_path / "digits", 300, 60)
    cfg = {"datasets": [{"dataset": "mnist", "source": str(digits), "name": "digits"}],
           "families": ["bp"], "store": store, "epochs": 1, "max_train_samples": None,
           "tune_train_samples": None, "tune": {"num_samples": 1, "max_epochs": 1},
           "run_time_budget_s": None}
    cli = {"env": env, "cwd": ROOT, "check": True, "capture_output": True, "text": True,
           "timeout": 300}
    subprocess.run([str(BIN / "prefect"), "work-pool", "create", "imgclf-process", "--type",
                    "process"], **cli)
    subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], **cli)
    names = {d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}).json()}
    assert {"pipeline", "pipeline-smoke", "prepare-data", "train", "tune", "evaluate",
            "study"} <= names
    dep = httpx.get(f"{api}/deployments/name/pipeline/pipeline").json()
    assert dep["schedules"][0]["slug"] == "weekly-retrain"
    # What the UI's "Quick run / Custom run" does: create a flow run of the deployment.
    run = _post_retrying(f"{api}/deployments/{dep['id']}/create_flow_run",
                         {"parameters": {"cfg": cfg}})
    assert "id" in run, run
    ray.shutdown()  # the worker's flow starts its own local Ray; two at once would clash
    worker = subprocess.run([str(BIN / "prefect"), "worker", "start", "--pool",
                             "imgclf-process", "--run-once"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    state = httpx.get(f"{api}/flow_runs/{run['id']}").json()["state"]
    assert state["type"] == "COMPLETED", worker.stdout[-4000:] + worker.stderr[-4000:]

    latest = read_json(join(store, "runs", "latest.json"))
    manifest = verify_run(latest["uri"])  # every listed file re-read: size and SHA-256
    assert {"digits/bp/weights.safetensors", "comparison.html"} <= set(manifest["files"])
    # The flow run's artifacts are what the UI shows under the run.
    arts = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {
        "any_": [run["id"]]}}}).json()
    assert {"model-comparison", "model-comparison-report"} <= {a["key"] for a in arts}
