"""The classifier module: epoch metrics cover every batch; each optimiser and schedule trains."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from lightning_modules import metrics as M
from lightning_modules.classifier import Classifier
from lightning_modules.config import ModelConfig, OptimConfig
from lightning_modules.datamodule import PreparedData, standardize
from lightning_modules.nets import build_net


def _fit(uri, optim: OptimConfig, epochs=1):
    pl.seed_everything(0, verbose=False)
    dm = PreparedData(uri, optim.batch_size, eval_batch_size=16)
    module = Classifier(build_net(ModelConfig(family="bp", preset="small"), dm.shape, 10), 10,
                        optim.model_dump())
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    return trainer, module, dm


def test_epoch_metrics_cover_every_batch(tiny_dataset):
    trainer, module, dm = _fit(tiny_dataset[1], OptimConfig(batch_size=32))
    val = dm.split("val")
    assert len(val) > 16  # several validation batches
    with torch.no_grad():
        preds = module.eval()(standardize(val.x, dm.mean, dm.std)).argmax(1)
    want = float((preds == val.y).float().mean())
    assert float(trainer.callback_metrics[M.VAL_ACC]) == pytest.approx(want, abs=1e-6)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(
            module(standardize(val.x, dm.mean, dm.std)), val.y)
    assert float(trainer.callback_metrics[M.VAL_LOSS]) == pytest.approx(float(loss), rel=1e-5)
    assert {M.TRAIN_LOSS, M.TRAIN_ACC, M.VAL_LOSS} <= set(trainer.callback_metrics)


@pytest.mark.parametrize("optimizer,schedule", [("sgd", "onecycle"), ("adam", "cosine"),
                                                ("adamw", "none")])
def test_optimisers_and_schedules_reduce_the_loss(tiny_dataset, optimizer, schedule):
    optim = OptimConfig(optimizer=optimizer, schedule=schedule, batch_size=16, lr=0.05
                        if optimizer == "sgd" else 3e-3, label_smoothing=0.1)
    trainer, _, _ = _fit(tiny_dataset[1], optim, epochs=3)
    # generated data is random noise: the training loss must still fall below log(10)
    assert float(trainer.callback_metrics[M.TRAIN_LOSS]) < 2.3
