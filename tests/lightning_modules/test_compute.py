"""How steps run on the hardware: bf16 autocast and channels_last for the convolutional
families where the device computes bf16 natively, and the training set resident on the device.
The GPU paths run on CPUs here: the same Lightning precision plugin and memory layout, and the
resident copy moved to a device that is not the host (PyTorch's `meta`)."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from lightning_modules.classifier import Classifier
from lightning_modules.config import ComputeConfig, ModelConfig, OptimConfig, native_bf16
from lightning_modules.datamodule import PreparedData, standardize
from lightning_modules.nets import FAMILIES, build_net


@pytest.mark.parametrize("family", list(FAMILIES))
def test_auto_picks_bf16_and_nhwc_for_convolutions_where_bf16_is_native(family):
    conv = FAMILIES[family].convolutional
    precision, channels_last = ComputeConfig().resolved(family, "cpu")
    assert precision == ("bf16-mixed" if conv and native_bf16("cpu") else "32-true")
    assert channels_last is conv
    forced = ComputeConfig(precision="32-true", channels_last=False).resolved(family, "cpu")
    assert forced == ("32-true", False)


def test_bf16_channels_last_training_on_cpu_gives_float32_weights_a_plain_net_loads(
        tiny_dataset):
    pl.seed_everything(0, verbose=False)
    dm = PreparedData(tiny_dataset[1], 16, eval_batch_size=64)
    cfg = ModelConfig(family="cnn", preset="small")
    module = Classifier(build_net(cfg, dm.shape, 10), 10, OptimConfig(lr=3e-3).model_dump(),
                        channels_last=True)
    conv = module.net[0][0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", devices=1, precision="bf16-mixed",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    assert conv.weight.dtype == torch.float32  # autocast: bf16 compute, float32 master weights
    # Generated images are noise: a net that trains still gets its loss under ln 10 = 2.303.
    assert float(trainer.callback_metrics["train/loss"]) < 2.3
    plain = build_net(cfg, dm.shape, 10).eval()
    plain.load_state_dict(module.net.state_dict())
    x = standardize(dm.split("test").x, dm.mean, dm.std)
    with torch.no_grad():
        assert torch.allclose(plain(x), module.eval()(x), atol=1e-5)


def test_resident_splits_move_to_the_device_and_batches_are_cut_there(tiny_dataset):
    dm = PreparedData(tiny_dataset[1], 32, resident=True)
    dm.to_device(torch.device("meta"))  # any device that is not the host
    for name in ("train", "val", "test"):
        assert dm.split(name).x.device.type == "meta"
    x, y = dm.split("train").__getitems__([0, 5, 7])
    assert x.device.type == "meta" and x.shape[0] == 3 and y.shape == (3,)
