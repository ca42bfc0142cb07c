"""The deployments as users run them: a real `prefect server start`, `prefect deploy --all`
from prefect.yaml, the server's own scheduler creating runs, and a process worker on the node
of a `ray start --head` cluster (token auth, as Ray sets it up) running them:

1. the scheduler creates the weekly-retrain runs of prefect.yaml (Mondays 03:00 UTC);
2. a run triggered through the REST API as the UI's "Custom run" does trains and publishes;
3. a run the scheduler creates, the data unchanged: a no-op in seconds that says so;
4. a run the scheduler creates after images were added to the image-folder source: it
   re-prepares, retrains, publishes a new run and the champion gate decides.

The pipeline is kept small (one image-folder dataset, bp, one trial); what it computes is
tested in-process in tests/flows/test_pipeline.py."""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from flows.publish import verify_run
from lightning_modules.store import join, read_json
from tests.conftest import BIN, _free_port
from tests.datagen import image_bytes, write_tree

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on a free loopback port, with its own home and database; the
    scheduler visits deployments every 2 s instead of 60 s (nothing else changes)."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
           # On a port other than 4200 the UI needs to be told where its API is (README).
           "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
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
    assert "Can't evaluate bulk DML" not in (tmp_path / "server.log").read_text()


def _call(method: str, url: str, body: object = None, tries: int = 5) -> object:
    """As the UI does, which retries too: a just-started server (SQLite) has answered 503
    under load in CI; a 4xx is not retried."""
    for attempt in range(tries):
        resp = httpx.request(method, url, json=body, timeout=30)
        if resp.status_code < 500 or attempt == tries - 1:
            resp.raise_for_status()
            return resp.json() if resp.content else None
        time.sleep(2 * (attempt + 1))
    raise AssertionError("unreachable")


def _runs(api: str, dep_id: str, states: list[str]) -> list[dict]:
    return _call("POST", f"{api}/flow_runs/filter", {"flow_runs": {
        "deployment_id": {"any_": [dep_id]}, "state": {"type": {"any_": states}}}})


def _wait_for(what: str, fn, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


def _work(env: dict, api: str, run_id: str) -> dict:
    """One `prefect worker start --run-once` on the head node; returns the finished flow run."""
    out = subprocess.run([str(BIN / "prefect"), "worker", "start", "--pool", "imgclf-process",
                          "--run-once"], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    run = _call("GET", f"{api}/flow_runs/{run_id}")
    assert run["state"]["type"] == "COMPLETED", out.stdout[-4000:] + out.stderr[-4000:]
    return run


def _artifact(api: str, run_id: str, key: str) -> dict:
    arts = _call("POST", f"{api}/artifacts/filter", {"artifacts": {
        "flow_run_id": {"any_": [run_id]}, "key": {"any_": [key]}}})
    assert arts, f"no artifact {key!r} on flow run {run_id}"
    return arts[0]


def _task_runs_tab_lists_every_task(api: str, run_id: str) -> None:
    """The flow run's Task Runs tab in Prefect's own UI, in Chromium: every task run listed by
    a readable name (a task input recorded as a flow_run's result left the tab empty)."""
    from playwright.sync_api import sync_playwright

    from tests.flows.test_page_browser import _chromium

    runs = _call("POST", f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    names = {r["name"] for r in runs}
    assert {"branch shapes/bp", "champion gate", "dataset card shapes"} <= names, names
    assert any(n.startswith("publish run ") for n in names), names
    assert not [n for n in names if re.fullmatch(r".*-[0-9a-f]{3}", n)], names  # auto-names
    for r in runs:
        kinds = {i["input_type"] for ins in r["task_inputs"].values() for i in ins}
        assert "flow_run" not in kinds, (r["name"], r["task_inputs"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        page.goto(f"{api.removesuffix('/api')}/runs/flow-run/{run_id}")
        try:
            page.get_by_text("Task Runs", exact=True).first.click(timeout=60_000)
        finally:
            page.screenshot(path=str(ROOT / "test-artifacts" / "prefect-ui-flow-run.png"))
        page.get_by_text("branch shapes/bp").first.wait_for(timeout=60_000)
        page.get_by_text("champion gate").first.wait_for(timeout=10_000)
        page.screenshot(path=str(ROOT / "test-artifacts" / "prefect-ui-task-runs.png"))
        browser.close()
    assert not [m for m in console if "Invalid TaskInputResponse" in m], console


def _schedule_soon(api: str, dep_id: str, cfg: dict) -> dict:
    """What the UI's "Add schedule" does: an interval schedule whose first run is due in a
    few seconds, carrying the small config as its parameters. Returns the run it created."""
    anchor = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=8)
    before = {r["id"] for r in _runs(api, dep_id, ["SCHEDULED"])}
    _call("POST", f"{api}/deployments/{dep_id}/schedules", [{
        "schedule": {"interval": 86400, "anchor_date": anchor.isoformat(), "timezone": "UTC"},
        "active": True, "parameters": {"cfg": cfg}}])
    run = _wait_for("the scheduler to create the run", lambda: [
        r for r in _runs(api, dep_id, ["SCHEDULED"]) if r["id"] not in before
        and abs(dt.datetime.fromisoformat(r["expected_start_time"]) - anchor).total_seconds() < 2])
    time.sleep(max(0.0, (anchor - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1)
    return run[0]


def test_scheduled_retraining_on_a_ray_head(prefect_server, ray_head, tmp_path):
    api, prefect_env = prefect_server
    _, ray_env = ray_head
    worker_env = {**prefect_env, "HOME": ray_env["HOME"], "RAY_ADDRESS": ray_env["RAY_ADDRESS"]}
    store = str(tmp_path / "store")
    shapes = write_tree(tmp_path / "shapes", classes=3, per_class=30, size=(12, 12))
    cfg = {"datasets": [{"dataset": "imagefolder", "source": str(shapes), "name": "shapes"}],
           "families": ["bp"], "store": store, "epochs": 1, "max_train_samples": None,
           "tune_train_samples": None, "tune": {"num_samples": 1, "max_epochs": 1},
           "space": {"batch_sizes": [16]}, "run_time_budget_s": None}
    cli = {"env": prefect_env, "cwd": ROOT, "check": True, "capture_output": True,
           "text": True, "timeout": 300}
    subprocess.run([str(BIN / "prefect"), "work-pool", "create", "imgclf-process", "--type",
                    "process"], **cli)
    subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], **cli)
    names = {d["name"] for d in _call("POST", f"{api}/deployments/filter", {})}
    assert {"pipeline", "pipeline-smoke", "prepare-data", "train", "tune", "evaluate",
            "study", "publish-model", "rollback-champion"} <= names
    dep = _call("GET", f"{api}/deployments/name/pipeline/pipeline")
    assert dep["schedules"][0]["slug"] == "weekly-retrain"

    # 1. The scheduler service creates the weekly runs (it created none with SQLAlchemy 2.1).
    weekly = _wait_for("weekly-retrain runs", lambda: _runs(api, dep["id"], ["SCHEDULED"]))
    for r in weekly:
        t = dt.datetime.fromisoformat(r["expected_start_time"]).astimezone(dt.timezone.utc)
        assert r["auto_scheduled"] and (t.weekday(), t.hour, t.minute) == (0, 3, 0)

    # 2. Triggered as the UI's Custom run does: trains and publishes.
    first = _call("POST", f"{api}/deployments/{dep['id']}/create_flow_run",
                  {"parameters": {"cfg": cfg}})
    _work(worker_env, api, first["id"])
    latest = read_json(join(store, "runs", "latest.json"))
    manifest = verify_run(latest["uri"])  # every listed file re-read: size and SHA-256
    assert {"shapes/bp/weights.safetensors", "comparison.html"} <= set(manifest["files"])
    # The run's own artifacts and its subflows' (the tunings run in the `tune-all` subflow).
    subflows = [r["id"] for r in _call("POST", f"{api}/flow_runs/filter", {"flow_runs": {
        "parent_flow_run_id": {"any_": [first["id"]]}}})]
    assert subflows, "the tune-all subflow ran"
    keys = {a["key"] for a in _call("POST", f"{api}/artifacts/filter", {"artifacts": {
        "flow_run_id": {"any_": [first["id"], *subflows]}}})}
    assert {"model-comparison", "model-comparison-report", "retrain-decision",
            "champion-gate"} <= keys
    assert any(k.startswith("tune-shapes-bp") for k in keys)  # the branch's trials table
    own = {a["key"] for a in _call("POST", f"{api}/artifacts/filter", {"artifacts": {
        "flow_run_id": {"any_": [first["id"]]}}})}
    assert any(k.startswith("tune-shapes-bp") for k in own)  # ... on the pipeline's run too
    _task_runs_tab_lists_every_task(api, first["id"])

    # 3. Scheduled, nothing changed: ends in seconds, says so, publishes nothing.
    run = _work(worker_env, api, _schedule_soon(api, dep["id"], cfg)["id"])
    assert run["auto_scheduled"] and run["total_run_time"] < 30, run["total_run_time"]
    assert "Nothing changed" in _artifact(api, run["id"], "retrain-decision")["data"]
    assert read_json(join(store, "runs", "latest.json")) == latest

    # 4. New images in the source: scheduled again, it retrains and the gate decides.
    for c in range(3):
        for i in range(30, 40):
            (shapes / "train" / f"class{c}" / f"{i}.png").write_bytes(
                image_bytes("PNG", "L", (12, 12), 40 * c + 12))
    for s in _call("GET", f"{api}/deployments/{dep['id']}/schedules"):
        if s.get("slug") != "weekly-retrain":
            _call("DELETE", f"{api}/deployments/{dep['id']}/schedules/{s['id']}")
    run = _work(worker_env, api, _schedule_soon(api, dep["id"], cfg)["id"])
    assert "Data changed" in _artifact(api, run["id"], "retrain-decision")["data"]
    new = read_json(join(store, "runs", "latest.json"))
    assert new["run_id"] != latest["run_id"]
    assert verify_run(new["uri"])["data_keys"]["shapes"] != manifest["data_keys"]["shapes"]
    gate = _artifact(api, run["id"], "champion-gate")["data"]
    assert "shapes/bp" in gate and ("moved" in gate or "kept" in gate)
    champion = read_json(join(store, "champions", "shapes", "bp.json"))
    assert champion["run_id"] in (latest["run_id"], new["run_id"])
