"""Serve what was trained: `imgclf train`, then `imgclf publish`, then `imgclf serve` lists the
model and classifies with it, as a user runs them one after another."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from lightning_modules import metrics as M
from lightning_modules.splits import load_split
from tests.conftest import BIN, stop_process_tree
from tests.flows.conftest import png, start_server


def imgclf(*args: str) -> dict:
    out = subprocess.run([str(BIN / "imgclf"), *args], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_trained_model_is_published_and_served(tiny_dataset):
    store, data = tiny_dataset
    trained = imgclf("train", "--store", store, "--model", "bp", "--epochs", "1",
                     "--batch-size", "32")
    first = imgclf("publish", "--store", store, "--model", "bp")
    assert first["model"] == f"mnist/bp@model-{trained['run_name']}"
    assert first["champion"]["moved"] and 0.0 <= first[M.TEST_ACC] <= 1.0
    again = imgclf("publish", "--store", store, "--model", "bp")  # the same model: no move
    assert again["run"] == first["run"] and not again["champion"]["moved"]
    proc, url = start_server(store)
    try:
        models = httpx.get(f"{url}/models", timeout=10).json()
        assert [m["id"] for m in models] == [first["model"]] and models[0]["champion"]
        digit = png(load_split(data, "test")[0][0, 0])
        r = httpx.post(f"{url}/predict?model=mnist/bp", content=digit,
                       headers={"content-type": "image/png"}, timeout=30)
        assert r.status_code == 200 and r.json()["model"] == first["model"]
        assert httpx.get(f"{url}/runs/latest", timeout=10).json()["run_id"] == \
            first["model"].split("@")[1]
    finally:
        stop_process_tree(proc)


@pytest.mark.slow
def test_publish_refuses_a_bundle_whose_weights_were_altered(tiny_dataset):
    """Publishing writes a manifest that vouches for the files it copies: tampered weights
    are refused (evaluated before or not), and nothing is published."""
    store, _ = tiny_dataset
    trained = imgclf("train", "--store", store, "--model", "bp", "--epochs", "1",
                     "--batch-size", "32")
    imgclf("evaluate", "--store", store, "--model", "bp")  # metrics.json: no re-evaluation
    weights = Path(trained["bundle"], "weights.safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    out = subprocess.run([str(BIN / "imgclf"), "publish", "--store", store, "--model", "bp"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"imgclf publish: error: {trained['bundle']}: weights.safetensors does not match its "
        "SHA-256 (corrupt or tampered)"]
    assert not Path(store, "runs").exists()


@pytest.mark.slow  # the `imgclf` command, as users run it
@pytest.mark.parametrize("args, error", [
    (["publish", "--model", "cnn"],
     "imgclf publish: error: no trained 'cnn' model for 'mnist' in {store}; run imgclf train "
     "first"),
    (["rollback", "--family", "cnn"],
     "imgclf rollback: error: mnist/cnn: no previous champion to roll back to")])
def test_nothing_to_publish_or_roll_back_is_one_line(tmp_path, args, error):
    out = subprocess.run([str(BIN / "imgclf"), *args, "--store", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [error.format(store=tmp_path)]
