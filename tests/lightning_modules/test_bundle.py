"""Bundles: safetensors round trip; tampered, incomplete or pickled-code inputs are refused."""
from __future__ import annotations

import json
import os

import pytest
import torch

from lightning_modules.bundle import (
    BundleError,
    load_bundle,
    net_state_from_checkpoint,
    write_bundle,
)
from lightning_modules.config import ModelConfig
from lightning_modules.nets import build_net
from tests.datagen import RunsCode

INFO = {"model": ModelConfig(family="cnn", widths=[4, 8, 16]).model_dump(), "shape": [1, 28, 28],
        "classes": [str(i) for i in range(10)], "mean": [0.13], "std": [0.31]}


def _write(tmp_path):
    net = build_net(ModelConfig(**INFO["model"]), (1, 28, 28), 10)
    write_bundle(str(tmp_path / "b"), net.state_dict(), dict(INFO))
    return net


def test_round_trip_predicts_the_same(tmp_path):
    net = _write(tmp_path)
    pred = load_bundle(str(tmp_path / "b"))
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    want = net.eval()((x.float() / 255 - 0.13) / 0.31).softmax(1)
    assert torch.allclose(pred.probs(x), want, atol=1e-6)


def test_tampered_weights(tmp_path):
    _write(tmp_path)
    path = tmp_path / "b" / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its SHA-256"):
        load_bundle(str(tmp_path / "b"))


def test_incomplete_bundle(tmp_path):
    _write(tmp_path)
    os.remove(tmp_path / "b" / "bundle.json")
    with pytest.raises(BundleError, match="no complete model bundle"):
        load_bundle(str(tmp_path / "b"))


def test_weights_that_do_not_fit(tmp_path):
    _write(tmp_path)
    info = json.loads((tmp_path / "b" / "bundle.json").read_text())
    info["model"]["widths"] = [4, 8, 32]
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match="do not fit the network"):
        load_bundle(str(tmp_path / "b"))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"net.w": torch.zeros(1)}, "x": RunsCode(marker)}, tmp_path / "c.ckpt")
    with pytest.raises(BundleError, match="not a loadable checkpoint"):
        net_state_from_checkpoint(str(tmp_path / "c.ckpt"))
    assert not marker.exists()


def test_colour_models_answer_with_test_time_augmentation_on_the_page_too(tmp_path):
    """A model trained on flipped and shifted photos is evaluated and served with the same
    augmentation: the bundle's probabilities and the page's are the averaged ones."""
    from PIL import Image

    from flows.serve.render import classify
    from lightning_modules.tta import tta_logits

    info = {**INFO, "model": ModelConfig(family="dcnn", widths=[4, 8, 8]).model_dump(),
            "shape": [3, 16, 16], "mean": [0.5] * 3, "std": [0.25] * 3}
    torch.manual_seed(0)
    net = build_net(ModelConfig(**info["model"]), (3, 16, 16), 10)
    write_bundle(str(tmp_path / "rgb"), net.state_dict(), dict(info))
    pred = load_bundle(str(tmp_path / "rgb"))
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    want = tta_logits(pred.net, pred.preprocess(x)).softmax(1)
    assert pred.tta and torch.allclose(pred.probs(x), want)
    assert not torch.allclose(pred.probs(x), pred.net(pred.preprocess(x)).softmax(1))
    img = Image.fromarray(x[0].permute(1, 2, 0).numpy())
    out = classify(pred, {"id": "c/dcnn@r", "dataset": "c"}, img, None)
    page = torch.tensor([out["probabilities"][c] for c in pred.classes])
    assert torch.allclose(page, pred.probs(x[:1])[0], atol=1e-5)
