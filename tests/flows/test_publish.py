"""Publishing without training: real bundles (untrained), real evaluation, a real store
(local, moto's S3 on loopback, and that S3 behind a flaky proxy)."""
from __future__ import annotations

import json

import pytest
import s3fs

from flows.compare import build
from flows.evaluate import evaluate_task
from flows.publish import (
    MANIFEST,
    champion_uri,
    publish_task,
    rollback_champion,
    update_champion,
    verify_run,
)
from flows.stats import mcnemar
from lightning_modules import metrics as M
from lightning_modules.errors import DataError
from lightning_modules.store import filesystem, join, read_json
from tests.datagen import random_bundle
from tests.s3proxy import FlakyS3


def _branch(store: str, data_uri: str, family: str, seeds: int = 1) -> dict:
    bundles = [random_bundle(store, data_uri, family, run=f"{family}-s{s}", seed=s)
               for s in range(seeds)]
    return {"dataset": "mnist", "family": family, "bundles": bundles, "tune_uri": None,
            "metrics_uris": [evaluate_task.fn(b) for b in bundles], "error": None}


def _publish(run: str, records: list[dict], failed: dict[str, str]) -> dict:
    comp = build("run-t", records, ["bp", "cnn", "dnn"], failed, {}, ["a note"])
    publish_task.fn(run, "run-t", records, comp, {}, failed)
    return comp


def test_publish_writes_a_manifest_that_lists_every_file_with_its_hash(tiny_dataset):
    store, data = tiny_dataset
    records = [_branch(store, data, "bp", seeds=2), _branch(store, data, "cnn")]
    run = join(store, "runs", "run-t")
    comp = _publish(run, records, {"broken": "DataError: truncated"})
    manifest = verify_run(run)  # re-reads every listed file and checks size and SHA-256
    fs, path = filesystem(run)
    on_disk = {f[len(path) + 1:] for f in fs.find(path)} - {MANIFEST}
    assert set(manifest["files"]) == on_disk
    assert {"mnist/bp/weights.safetensors", "mnist/bp/repro.json", "mnist/cnn/curves.png",
            "comparison.html", "comparison.md", "comparison.json"} <= on_disk
    cells = comp["cells"]
    assert cells["mnist"]["bp"]["seeds"] == 2 and cells["mnist"]["dnn"]["status"] == "missing"
    assert all(c["status"] == "failed" for c in cells["broken"].values())
    assert comp["paired_tests"]["mnist"]["a"] in {"bp", "cnn"}
    md = open(f"{path}/comparison.md").read()
    assert "MISSING" in md and "FAILED" in md and "truncated" in md
    assert "data:image/png;base64," in open(f"{path}/comparison.html").read()
    repro = json.loads(open(f"{path}/mnist/bp/repro.json").read())
    assert repro["seeds"] == [0, 1] and repro["versions"]["torch"] and repro["data"]["key"]
    with open(f"{path}/mnist/bp/metrics.json", "a") as f:
        f.write(" ")
    with pytest.raises(DataError, match="mnist/bp/metrics.json: does not match"):
        verify_run(run)


def test_mcnemar_matches_the_exact_binomial_by_hand():
    import numpy as np

    a = np.array([True] * 6 + [False] * 1 + [True] * 10)
    b = np.array([False] * 6 + [True] * 1 + [True] * 10)
    t = mcnemar(a, b)
    # 7 discordant pairs, 6 vs 1: p = 2 * (C(7,0) + C(7,1)) / 2**7 = 16/128
    assert (t["only_a_right"], t["only_b_right"]) == (6, 1)
    assert t["p_value"] == pytest.approx(16 / 128)


def test_champion_moves_only_past_the_margin_and_rolls_back(tmp_path):
    store = str(tmp_path)
    for rid in ("r1", "r2", "r3"):
        (tmp_path / "runs" / rid).mkdir(parents=True)
        (tmp_path / "runs" / rid / MANIFEST).write_text('{"files": {}}')

    def entry(rid: str, acc: float) -> dict:
        return {"run_id": rid, "run_uri": str(tmp_path / "runs" / rid), M.TEST_ACC: acc}
    assert update_champion(store, "mnist", "cnn", entry("r1", 0.90), 0.01)["moved"]
    assert not update_champion(store, "mnist", "cnn", entry("r2", 0.905), 0.01)["moved"]
    assert update_champion(store, "mnist", "cnn", entry("r3", 0.95), 0.01)["moved"]
    now = read_json(champion_uri(store, "mnist", "cnn"))
    assert now["run_id"] == "r3" and [p["run_id"] for p in now["previous"]] == ["r1"]
    assert rollback_champion(store, "mnist", "cnn")["run_id"] == "r1"
    assert read_json(champion_uri(store, "mnist", "cnn"))["run_id"] == "r1"
    with pytest.raises(DataError, match="no previous champion"):
        rollback_champion(store, "mnist", "cnn")


@pytest.fixture
def flaky_s3(s3_endpoint, monkeypatch):
    proxies = []

    def make(**kw) -> FlakyS3:
        proxy = FlakyS3(s3_endpoint, **kw)
        proxies.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no botocore retries: the tests count ours
        s3fs.S3FileSystem.clear_instance_cache()
        return proxy
    yield make
    for p in proxies:
        p.close()
    s3fs.S3FileSystem.clear_instance_cache()


def test_publish_to_s3_survives_an_endpoint_that_fails_twice(tiny_dataset, s3_bucket, flaky_s3):
    store, data = tiny_dataset
    records = [_branch(store, data, "bp")]
    proxy = flaky_s3(fail_first=2)
    run = f"{s3_bucket}/runs/run-t"
    _publish(run, records, {})
    assert proxy.failures == 2 and proxy.requests > 10
    assert "mnist/bp/weights.safetensors" in verify_run(run)["files"]


@pytest.mark.slow  # Prefect retries against an endpoint that goes down
def test_publish_to_s3_that_goes_down_lists_nothing(prefect_harness, tiny_dataset, s3_bucket,
                                                    flaky_s3):
    store, data = tiny_dataset
    records = [_branch(store, data, "bp")]
    comp = build("run-t", records, ["bp"], {}, {}, [])
    proxy = flaky_s3(down_after=6)
    run = f"{s3_bucket}/runs/run-t"
    stage = publish_task.with_options(retry_delay_seconds=0)
    state = stage(run, "run-t", records, comp, {}, {}, return_state=True)
    assert state.is_failed()
    assert proxy.failures > 3  # every attempt (Prefect retried the task) hit the outage
    proxy.down_after = None  # the endpoint is back: look at what the failed publish left
    s3fs.S3FileSystem.clear_instance_cache()
    fs, path = filesystem(run)
    assert fs.find(path) and not fs.exists(join(path, MANIFEST))
    with pytest.raises(DataError, match="no manifest.json"):
        verify_run(run)
