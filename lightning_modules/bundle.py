"""The model bundle: safetensors weights + bundle.json (config, classes, normalisation), no pickle."""
from __future__ import annotations

import hashlib
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from lightning_modules.config import ModelConfig
from lightning_modules.datamodule import augments, standardize
from lightning_modules.errors import DataError
from lightning_modules.nets import build_net
from lightning_modules.tta import tta_logits
from lightning_modules.store import filesystem, join, read_json, write_bytes, write_json

WEIGHTS = "weights.safetensors"
INFO = "bundle.json"
FORMAT = 1


class BundleError(DataError, ValueError):
    """A bundle or checkpoint that is missing, incomplete, corrupt or tampered with."""


def load_checkpoint(path: str) -> dict:
    """A Lightning checkpoint as plain data, loaded without running pickled code."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe files
        raise BundleError(f"{path}: not a loadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict):
        raise BundleError(f"{path}: checkpoint is not a dict")
    return ckpt


def net_state_from_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint."""
    state = load_checkpoint(path).get("state_dict")
    if not isinstance(state, dict):
        raise BundleError(f"{path}: checkpoint holds no state_dict")
    return {k[len("net."):]: v.contiguous() for k, v in state.items() if k.startswith("net.")}


def write_bundle(url: str, state: dict[str, torch.Tensor], info: dict[str, Any]) -> dict:
    """Weights first, bundle.json (with their SHA-256) last: a bundle without it is incomplete."""
    meta = write_bytes(join(url, WEIGHTS), st_save(state))
    info = {**info, "format": FORMAT, "weights": {WEIGHTS: meta}}
    write_json(join(url, INFO), info)
    return info


class Predictor:
    """A loaded bundle: uint8 or float images in, class probabilities out."""

    def __init__(self, net: nn.Module, info: dict[str, Any]) -> None:
        self.net, self.info = net.eval(), info
        self.mean = torch.tensor(info["mean"])
        self.std = torch.tensor(info["std"])
        self.classes: list[str] = info["classes"]
        self.shape: tuple[int, int, int] = tuple(info["shape"])
        self.tta = augments(self.shape)


    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return standardize(x, self.mean, self.std)

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        return tta_logits(self.net, x) if self.tta else self.net(x)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(dim=1)


def verified_weights(url: str) -> tuple[dict[str, Any], bytes]:
    """bundle.json and the weights' bytes, checked against the hash bundle.json records."""
    info = read_json(join(url, INFO))
    if info is None:
        raise BundleError(f"{url}: no complete model bundle (bundle.json is missing)")
    try:
        want = info["weights"][WEIGHTS]["sha256"]
    except (KeyError, TypeError) as e:
        raise BundleError(f"{url}: bundle.json is malformed ({e})") from None
    fs, path = filesystem(url)
    try:
        data = fs.cat_file(join(path, WEIGHTS))
    except FileNotFoundError:
        raise BundleError(f"{url}: {WEIGHTS} is missing") from None
    if hashlib.sha256(data).hexdigest() != want:
        raise BundleError(f"{url}: {WEIGHTS} does not match its SHA-256 (corrupt or tampered)")
    return info, data


def load_bundle(url: str) -> Predictor:
    """Rebuild the network from bundle.json and check the weights against their recorded hash."""
    info, data = verified_weights(url)
    try:
        cfg = ModelConfig(**info["model"])
        shape, classes = tuple(info["shape"]), list(info["classes"])
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{url}: bundle.json is malformed ({e})") from None
    net = build_net(cfg, shape, len(classes))
    try:
        net.load_state_dict(st_load(data), strict=True)
    except RuntimeError as e:
        raise BundleError(f"{url}: weights do not fit the network ({e})") from None
    return Predictor(net, info)

