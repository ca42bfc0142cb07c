"""The deployments as users run them: a real Prefect server, `prefect deploy` from
prefect.yaml, the pipeline triggered through the REST API as the UI does, a process worker
running it, and the results in an S3 store (moto on loopback). Then a re-run in-process:
every stage is a cache hit and nothing is published twice."""
from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import ray
import s3fs

from flows.publish import champion_uri, verify_run
from flows.store import join, read_json
from tests.conftest import shared_dataset
from tests.datagen import idx_subset

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def _tiny_sources(tmp_path: Path) -> list[str]:
    a = idx_subset(shared_dataset("mnist"), tmp_path / "digits", 400, 100)
    b = idx_subset(shared_dataset("fashion-mnist"), tmp_path / "clothes", 400, 100)
    bad = idx_subset(shared_dataset("mnist"), tmp_path / "broken", 400, 100)
    raw = (bad / "train-images-idx3-ubyte.gz").read_bytes()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(raw)[:5000]))
    return [{"dataset": "mnist", "source": str(a), "name": "digits"},
            {"dataset": "fashion-mnist", "source": str(b), "name": "clothes"},
            {"dataset": "mnist", "source": str(bad), "name": "broken"}]


def _listing(store: str) -> dict[str, str]:
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return {p: info.get("ETag", "") for p, info in fs.find(store, detail=True).items()}


def test_deployed_pipeline_runs_from_the_api_then_reruns_from_cache(
        s3_bucket, prefect_server, tmp_path, prefect_harness):
    # s3_bucket first: the server's (and so the worker's) environment then points at moto.
    api, env = prefect_server
    store = f"{s3_bucket}/imgclf"
    cfg = {"datasets": _tiny_sources(tmp_path), "families": ["bp", "cnn"], "store": store,
           "epochs": 1, "max_train_samples": None, "tune_train_samples": None,
           "tune": {"num_samples": 2, "max_epochs": 1, "max_concurrent": 2},
           "run_time_budget_s": None,
           "space": {"batch_sizes": [32, 64]}}
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
    run = httpx.post(f"{api}/deployments/{dep['id']}/create_flow_run",
                     json={"parameters": {"cfg": cfg}}).json()
    assert "id" in run, run
    ray.shutdown()  # the worker's flow starts its own local Ray; two at once would clash
    worker = subprocess.run([str(BIN / "prefect"), "worker", "start", "--pool",
                             "imgclf-process", "--run-once"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    state = httpx.get(f"{api}/flow_runs/{run['id']}").json()["state"]
    assert state["type"] == "COMPLETED", worker.stdout[-4000:] + worker.stderr[-4000:]

    latest = read_json(join(store, "runs", "latest.json"))
    manifest = verify_run(latest["uri"])  # every listed file re-read: size and SHA-256
    assert {f"{ds}/{fam}/weights.safetensors" for ds in ("digits", "clothes")
            for fam in ("bp", "cnn")} <= set(manifest["files"])
    assert "broken" in manifest["failed_datasets"]
    comp = read_json(join(latest["uri"], "comparison.json"))
    for ds in ("digits", "clothes"):
        for fam in ("bp", "cnn"):
            c = comp["cells"][ds][fam]
            assert c["status"] == "ok" and 0 <= c["test_acc"] <= 1 and c["best_params"]
            assert c["tuning"]["trials_run"] == 2
            assert read_json(champion_uri(store, ds, fam))["run_id"] == latest["run_id"]
    assert {c["status"] for c in comp["cells"]["broken"].values()} == {"failed"}
    assert "truncated" in comp["cells"]["broken"]["bp"]["error"].lower() or \
        "broken" in comp["cells"]["broken"]["bp"]["error"]

    # Same inputs again, in this process: prep, tuning, training and evaluation are cache
    # hits (no Ray needed), and the published run is not written again.
    from flows.config import PipelineConfig
    from flows.pipeline import pipeline

    before = _listing(store)
    assert pipeline(cfg=PipelineConfig(**cfg)) == latest["uri"]
    assert _listing(store) == before
