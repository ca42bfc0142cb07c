"""The model families as plain nn.Modules, built for any C×H×W input and class count, and
their registry: a new family is a builder and one FAMILIES entry here; the config's choices,
the CLI, the Prefect form, tuning, the study and serving all derive from FAMILIES."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

from lightning_modules.deep_cnn import DeepCNN


class NetSpec(Protocol):
    """What a builder reads of the model config (lightning_modules.config.ModelConfig)."""

    activation: str
    dropout: float

    def resolved_widths(self) -> list[int]: ...


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.1), "elu": nn.ELU,
    "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}
Shape = tuple[int, int, int]


def _dense_stack(sizes: list[int], act: str, dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), ACTIVATIONS[act](), nn.Dropout(dropout)]
    return layers


def _flat_size(features: nn.Module, shape: Shape) -> int:
    """Width of the flattened feature map, found by one dry run (works for any H×W)."""
    with torch.no_grad():
        return int(features(torch.zeros(1, *shape)).flatten(1).shape[1])


def bp(shape: Shape, classes: int, cfg: NetSpec) -> nn.Module:
    """The BP network: one hidden layer."""
    c, h, w = shape
    hidden = cfg.resolved_widths()[0]
    return nn.Sequential(nn.Flatten(), *_dense_stack([c * h * w, hidden], cfg.activation,
                                                     cfg.dropout), nn.Linear(hidden, classes))


def dnn(shape: Shape, classes: int, cfg: NetSpec) -> nn.Module:
    """A deep MLP: one hidden layer per width."""
    c, h, w = shape
    sizes = [c * h * w, *cfg.resolved_widths()]
    return nn.Sequential(nn.Flatten(), *_dense_stack(sizes, cfg.activation, cfg.dropout),
                         nn.Linear(sizes[-1], classes))


def cnn(shape: Shape, classes: int, cfg: NetSpec) -> nn.Module:
    """LeNet-like: two conv + pool blocks and a fully connected head."""
    c1, c2, fc = cfg.resolved_widths()
    act = ACTIVATIONS[cfg.activation]
    features = nn.Sequential(
        nn.Conv2d(shape[0], c1, 5, padding=2), act(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2), act(), nn.MaxPool2d(2), nn.Flatten())
    flat = _flat_size(features, shape)
    return nn.Sequential(features, nn.Dropout(cfg.dropout),
                         *_dense_stack([flat, fc], cfg.activation, cfg.dropout),
                         nn.Linear(fc, classes))


def dcnn(shape: Shape, classes: int, cfg: NetSpec) -> nn.Module:
    """The airbench-class deep CNN (lightning_modules/deep_cnn.py)."""
    return DeepCNN(shape, classes, cfg.resolved_widths(), ACTIVATIONS[cfg.activation],
                   cfg.dropout)


@dataclass(frozen=True)
class Family:
    """One model family: its builder and its named structures. The meaning of each width is
    the builder's (see its docstring); `widths` bounds how many a free structure may give."""

    build: Callable[[Shape, int, NetSpec], nn.Module]
    presets: dict[str, list[int]]
    widths: tuple[int, int]
    about: str
    default_preset: str = "medium"
    gpu_presets: frozenset[str] = frozenset()  # too slow to sweep on CPUs (tuning, study skip)
    # Epochs its recipe trains for: a study judges a model trained when it reached them (or
    # stopped gaining). 10 for all: the Keras MLP reference's, and airbench94's 9.9.
    epochs: int = 10
    # Convolutions gain from channels_last and CPU bf16; dense layers measured no gain (README).
    convolutional: bool = False
    # A GPU share per one-worker run: the tiny families cannot keep a whole GPU busy.
    gpu_share: float = 1.0
    # Levers known to train this family well: the first trial of every tuning, so a small
    # search never does worse than the recipe (values as cluster.config.apply_levers takes).
    recipe: tuple[tuple[str, object], ...] = ()
    # The optimiser settings of the recipe that are not levers (OptimConfig's fields).
    optim: tuple[tuple[str, object], ...] = ()

    def cpu_presets(self) -> list[str]:
        return [p for p in self.presets if p not in self.gpu_presets]


FAMILIES: dict[str, Family] = {
    "bp": Family(bp, {"small": [64], "medium": [256], "large": [1024]}, (1, 1),
                 "BP network: one hidden layer [hidden]", gpu_share=0.25,
                 recipe=(("lr", 2e-3), ("batch_size", 128), ("structure", "medium"))),
    "dnn": Family(dnn, {"small": [256, 128], "medium": [512, 256, 128],
                        "large": [1024, 512, 256, 128]}, (1, 8),
                  "deep MLP: one hidden layer per width [hidden, ...]", gpu_share=0.25,
                  recipe=(("lr", 2e-3), ("batch_size", 128), ("structure", "medium"))),
    "cnn": Family(cnn, {"small": [6, 16, 120], "medium": [32, 64, 256],
                        "large": [64, 128, 512]}, (3, 3),
                  "LeNet-like CNN [conv1, conv2, fc]", convolutional=True, gpu_share=0.5,
                  recipe=(("lr", 2e-3), ("batch_size", 128), ("structure", "medium"))),
    # "large" is airbench94's net (64/256/256); "small" (a seventh of its FLOPs) the recipe's,
    # which leaves a 15-minute CPU run time for epochs; the `cifar` profile trains "large".
    "dcnn": Family(dcnn, {"small": [32, 64, 64], "medium": [64, 128, 128],
                          "large": [64, 256, 256], "wide": [128, 384, 512]}, (3, 3),
                   "airbench-class deep CNN: whitening stem, three conv groups with batch norm "
                   "[group1, group2, group3]",
                   default_preset="small", gpu_presets=frozenset({"wide"}),
                   convolutional=True,
                   # airbench94's hyperparameters for a mean (not summed) loss: lr and the
                   # per-step decay scale with the batch (1.5 and 0.002 at 1024 images).
                   recipe=(("lr", 0.375), ("batch_size", 256), ("structure", "small"),
                           ("activation", "gelu"), ("dropout", 0.0)),
                   optim=(("optimizer", "sgd"), ("momentum", 0.85), ("nesterov", True),
                          ("weight_decay", 5e-4), ("decoupled_weight_decay", True),
                          ("norm_lr_scale", 64.0), ("label_smoothing", 0.2),
                          ("schedule", "warmup_linear"), ("lookahead", True))),
}


def parameter_count(cfg: NetSpec, shape: Shape, classes: int) -> int:
    """The network's size, from a build on the meta device: no memory is allocated, so a
    size the machine cannot hold is found before it is tried."""
    with torch.device("meta"):
        net = build_net(cfg, shape, classes)
    return sum(p.numel() for p in net.parameters())


def forward_flops(cfg: NetSpec, shape: Shape, classes: int) -> int:
    """FLOPs of one image's forward pass (torch's counter), on the meta device: nothing is
    computed or allocated."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = build_net(cfg, shape, classes)
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, *shape))
    return int(counter.get_total_flops())


def build_net(cfg: NetSpec, shape: Shape, classes: int) -> nn.Module:
    """The registry's one entry point (cfg: a ModelConfig)."""
    if classes < 2:
        raise ValueError(f"need at least 2 classes, got {classes}")
    return FAMILIES[cfg.family].build(tuple(shape), classes, cfg)  # type: ignore[attr-defined]
