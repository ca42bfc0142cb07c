"""The four families on any input shape, and each study lever changing the network it names."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from lightning_modules.config import ModelConfig, OptimConfig
from lightning_modules.nets import build_net

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 20, 36)]


@pytest.mark.parametrize("family", ["bp", "dnn", "cnn", "dcnn"])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_on_any_shape(family, shape):
    net = build_net(ModelConfig(family=family), shape, 7)
    out = net(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("family", ["bp", "dnn", "cnn", "dcnn"])
@pytest.mark.parametrize("act,cls", [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU),
                                     ("elu", nn.ELU), ("gelu", nn.GELU), ("tanh", nn.Tanh),
                                     ("sigmoid", nn.Sigmoid)])
def test_activation_lever(family, act, cls):
    net = build_net(ModelConfig(family=family, activation=act), (1, 28, 28), 10)
    kinds = {type(m) for m in net.modules()}
    assert cls in kinds
    assert not ({nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid} - {cls}) & kinds


@pytest.mark.parametrize("family", ["bp", "dnn", "cnn", "dcnn"])
def test_dropout_lever(family):
    net = build_net(ModelConfig(family=family, dropout=0.37), (1, 28, 28), 10)
    drops = [m.p for m in net.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(p == 0.37 for p in drops)


def _linear_widths(net):
    return [m.out_features for m in net.modules() if isinstance(m, nn.Linear)]


def test_structure_lever_depth_and_width():
    shallow = build_net(ModelConfig(family="dnn", widths=[64]), (1, 28, 28), 10)
    deep = build_net(ModelConfig(family="dnn", widths=[64, 48, 32]), (1, 28, 28), 10)
    assert _linear_widths(shallow) == [64, 10] and _linear_widths(deep) == [64, 48, 32, 10]
    assert _linear_widths(build_net(ModelConfig(family="bp", preset="large"), (1, 8, 8), 3)) == [1024, 3]
    cnn = build_net(ModelConfig(family="cnn", widths=[4, 8, 16]), (1, 28, 28), 10)
    assert [m.out_channels for m in cnn.modules() if isinstance(m, nn.Conv2d)] == [4, 8]
    small = build_net(ModelConfig(family="dcnn", preset="small"), (3, 32, 32), 10)
    wide = build_net(ModelConfig(family="dcnn", preset="wide"), (3, 32, 32), 10)
    count = lambda n: sum(p.numel() for p in n.parameters())  # noqa: E731
    assert count(wide) > 10 * count(small)
    assert any(isinstance(m, nn.BatchNorm2d) for m in small.modules())
    free = build_net(ModelConfig(family="dcnn", widths=[8, 16, 24]), (1, 28, 28), 10)
    assert [m.out_channels for m in free.modules() if isinstance(m, nn.Conv2d)] == \
        [8, 8, 8, 16, 16, 24, 24]  # the whitening stem (2 × 1 × 2 × 2) then the groups


@pytest.mark.parametrize("kwargs,match", [
    ({"activation": "swish"}, "activation"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"family": "rnn"}, "family"),
    ({"family": "cnn", "widths": [8, 8]}, "needs 3..3 positive widths"),
    ({"family": "bp", "preset": "wide"}, "preset 'wide' is not one of"),
    ({"family": "dcnn", "widths": [8, 8, 8, 8]}, "needs 3..3 positive widths"),
])
def test_bad_model_options(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"lr": 0}, {"lr": -1e-3}, {"batch_size": 0}])
def test_bad_optimiser_options(kwargs):
    with pytest.raises(ValidationError):
        OptimConfig(**kwargs)
