"""The prototype page's API on a published run (real bundles, real MNIST test digits, a real
store): predictions agree with the evaluation, and every bad input is a clear 4xx."""
from __future__ import annotations

import concurrent.futures as cf
import io
import statistics
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from flows.serve import MAX_BYTES, MAX_PIXELS, create_app
from lightning_modules import metrics as M
from lightning_modules.splits import load_split
from lightning_modules.store import join, read_npy
from tests.flows.conftest import png as _png


@pytest.fixture(scope="module")
def client(published):
    return TestClient(create_app(published[0]))


def test_models_lists_published_models_with_champions(client):
    models = client.get("/models").json()
    assert {m["id"] for m in models} == {"mnist/bp@run-s", "mnist/cnn@run-s"}
    assert all(m["champion"] and 0 <= m[M.TEST_ACC] <= 1 for m in models)


@pytest.mark.parametrize("family", ["bp", "cnn"])
def test_predict_agrees_with_the_evaluation_on_real_test_digits(client, published, family):
    _, data, run = published
    x, y = load_split(data, "test")
    evaluated = read_npy(join(run, "mnist", family, "test_predictions.npy"))
    for i in range(20):
        r = client.post(f"/predict?model=mnist/{family}&centre=false", content=_png(x[i, 0]),
                        headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["label_index"] == int(evaluated[i])
        assert out["label"] == str(int(evaluated[i])) and len(out["probabilities"]) == 10
        assert abs(sum(out["probabilities"].values()) - 1) < 1e-3
    kinds = {l["kind"] for l in out["layers"]}
    assert kinds == ({"conv", "dense"} if family == "cnn" else {"dense"})
    for i, layer in enumerate(out["layers"], 1):  # the title says what the layer is
        what = "convolution" if layer["kind"] == "conv" else "dense"
        assert layer["name"].startswith(f"layer {i}: {what} + relu, "), layer["name"]
        if layer["kind"] == "conv":  # every map shown (≤ 64), as many as the title says
            c, h, w = layer["shape"]
            grid = Image.open(io.BytesIO(__import__("base64").b64decode(layer["png"])))
            cols = min(8, c)
            assert f"{c} feature maps of {h}×{w}" in layer["name"] and layer["maps"] == c
            assert grid.size == (cols * (w + 1), -(-c // cols) * (h + 1))
    seen = np.asarray(Image.open(io.BytesIO(__import__("base64").b64decode(out["input"]["png"]))))
    assert seen.shape == (28, 28) and (seen == x[19, 0]).all()  # the input as the net saw it
    assert int(y[19]) in range(10)


def test_multipart_upload_and_a_dark_on_light_drawing(client, published):
    _, data, _ = published
    digit = load_split(data, "test")[0][3, 0]
    raw = client.post("/predict?model=mnist/cnn", content=_png(digit),
                      headers={"content-type": "image/png"}).json()
    # The same digit drawn dark on a white page, bigger and off-centre, uploaded as a form.
    page = np.full((200, 300), 255, dtype=np.uint8)
    big = np.asarray(Image.fromarray(255 - digit).resize((112, 112)))
    page[20:132, 150:262] = big
    r = client.post("/predict?model=mnist/cnn", files={"image": ("d.png", _png(page), "image/png")})
    assert r.status_code == 200
    seen = np.asarray(Image.open(io.BytesIO(__import__("base64").b64decode(r.json()["input"]["png"]))))
    cy, cx = np.argwhere(seen > 50).mean(axis=0)
    assert abs(cy - 13.5) < 3 and abs(cx - 13.5) < 3  # centred, light on dark, as in MNIST
    assert raw["label"] and r.json()["model"] == "mnist/cnn@run-s"


@pytest.mark.parametrize("body,ctype,status,message", [
    (b"", "image/png", 400, "empty body"),
    (b"this is not a picture", "image/png", 400, "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png", 400, "not an image"),
    (_png(np.zeros((8, 8), np.uint8)), "text/plain", 415, "not accepted"),
    (_png(np.zeros((8, 8), np.uint8)), "", 415, "not accepted"),
    (b"--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nhi\r\n--x--\r\n",
     "multipart/form-data; boundary=x", 400, "no file part"),
])
def test_bad_uploads_get_a_clear_4xx(client, body, ctype, status, message):
    r = client.post("/predict?model=mnist/cnn", content=body, headers={"content-type": ctype})
    assert r.status_code == status and message in r.json()["detail"]
    assert "Traceback" not in r.text


def test_truncated_oversized_and_unknown_are_refused(client):
    good = _png((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    r = client.post("/predict?model=mnist/cnn", content=good[: len(good) // 2],
                    headers={"content-type": "image/png"})
    assert r.status_code == 400 and "corrupt or truncated" in r.json()["detail"]
    r = client.post("/predict?model=mnist/cnn", content=b"\0" * (MAX_BYTES + 1),
                    headers={"content-type": "image/png"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    side = int(MAX_PIXELS ** 0.5) + 16  # a small file that decodes to too many pixels
    bomb = io.BytesIO()
    Image.new("L", (side, side)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < MAX_BYTES
    r = client.post("/predict?model=mnist/cnn", content=bomb.getvalue(),
                    headers={"content-type": "image/png"})
    assert r.status_code == 413 and "pixels" in r.json()["detail"]
    for model, status in (("mnist/dcnn", 404), ("../../etc/passwd", 404), ("mnist/cnn@nope", 404),
                          ("mnist/cnn@latest.json", 404)):  # a file where a run folder goes
        r = client.post(f"/predict?model={model}", content=good, headers={"content-type": "image/png"})
        assert r.status_code == status, (model, r.text)
    assert client.get("/models").status_code == 200  # still serving


def test_openapi_describes_predict(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "image/*" in body and "multipart/form-data" in body


def test_runs_pages_read_the_store(client):
    assert client.get("/runs/latest").json()["run_id"] == "run-s"
    assert "<img" in client.get("/runs/latest/comparison.html").text
    assert client.get("/models/mnist/cnn/confusion.png").content[:4] == b"\x89PNG"
    assert "test/acc" in client.get("/models/mnist/cnn/metrics").json()


@pytest.mark.slow  # a live server on loopback
def test_bounded_load_on_loopback(live, published):
    """200 requests, 8 at once, over real HTTP: all succeed; p50/p99 printed for the record."""
    import httpx

    digit = _png(load_split(published[1], "test")[0][0, 0])

    def one(_: int) -> float:
        t = time.perf_counter()
        r = httpx.post(f"{live}/predict?model=mnist/cnn", content=digit,
                       headers={"content-type": "image/png"}, timeout=30)
        assert r.status_code == 200, r.text
        return (time.perf_counter() - t) * 1000
    start = time.perf_counter()
    with cf.ThreadPoolExecutor(8) as pool:
        lat = sorted(pool.map(one, range(200)))
    wall = time.perf_counter() - start
    print(f"\n200 requests, 8 at once: p50 {statistics.median(lat):.1f} ms, "
          f"p99 {lat[int(0.99 * len(lat)) - 1]:.1f} ms, {200 / wall:.0f} req/s, errors 0")
    assert len(lat) == 200


def test_a_tampered_model_is_503_without_the_servers_paths(published, tmp_path):
    import json
    import shutil

    store = tmp_path / "store"
    shutil.copytree(published[0], store)
    run = store / "runs" / "run-s"
    (store / "runs" / "latest.json").write_text(json.dumps({"run_id": "run-s", "uri": str(run)}))
    weights = run / "mnist" / "bp" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    app = TestClient(create_app(str(store)))
    digit = _png(np.zeros((28, 28), np.uint8))
    r = app.post("/predict?model=mnist/bp@run-s", content=digit,
                 headers={"content-type": "image/png"})
    assert r.status_code == 503 and "does not match" in r.json()["detail"], r.text
    (run / "manifest.json").write_text('{"run_id": "run-s", "files": ')  # cut short
    r = app.post("/predict?model=mnist/cnn@run-s", content=digit,
                 headers={"content-type": "image/png"})
    assert r.status_code in (400, 503), r.text
    assert str(tmp_path) not in r.text, r.text


@pytest.mark.slow  # the `imgclf serve` command, as users run it
@pytest.mark.parametrize("kind,says", [("file", "a file, not a folder or a bucket"),
                                       ("missing", "no such folder")])
def test_serve_refuses_a_store_that_is_not_a_folder(tmp_path, kind, says):
    import subprocess

    from tests.conftest import BIN

    store = tmp_path / "x"
    if kind == "file":
        store.write_text("not a store")
    out = subprocess.run([str(BIN / "imgclf"), "serve", "--store", str(store), "--port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"imgclf serve: error: --store {store}: {says}"] \
        or says in out.stderr, out.stderr


def test_pointers_cut_short_are_rebuilt_not_fatal(published, tmp_path, caplog):
    """runs/latest.json and a champion pointer cut short (as a torn write leaves them): the
    page still lists the models and the latest run, from the run manifests."""
    import json
    import shutil

    store = tmp_path / "store"
    shutil.copytree(published[0], store)
    run = store / "runs" / "run-s"
    (store / "runs" / "latest.json").write_text(json.dumps({"run_id": "run-s", "uri": str(run)}))
    for rel in ("runs/latest.json", "champions/mnist/bp.json"):
        (store / rel).write_text((store / rel).read_text()[:7])
    app = TestClient(create_app(str(store)))
    r = app.get("/models")
    assert r.status_code == 200, r.text
    assert {m["id"] for m in r.json()} == {"mnist/bp@run-s", "mnist/cnn@run-s"}
    assert app.get("/runs/latest").json()["run_id"] == "run-s"
    assert "unreadable" in caplog.text


def test_layer_titles_say_how_much_of_a_wide_layer_is_shown():
    import torch

    from flows.serve.render import describe_layer

    conv = describe_layer(3, "gelu", torch.rand(256, 4, 4))
    assert conv["name"] == "layer 3: convolution + gelu, 64 of 256 feature maps of 4×4"
    assert conv["maps"] == 64
    dense = describe_layer(5, "tanh", torch.rand(1024))
    assert dense["name"] == "layer 5: dense + tanh, the first 128 of 1024 units"
    assert len(dense["values"]) == 128
