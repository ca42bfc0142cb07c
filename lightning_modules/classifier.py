"""One LightningModule for every family: loss, optimiser, schedule and per-split metrics."""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import Metric

from lightning_modules import metrics as M
from lightning_modules.config import OptimConfig


class Ratio(Metric):
    """sum(num) / sum(den) over an epoch (and over DDP ranks): a running accuracy or mean loss
    in two additions per step. torchmetrics' MulticlassAccuracy and MeanMetric check and reshape
    their inputs on every update, which showed on the 2 ms steps of the dense families."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("num", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("den", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, num: torch.Tensor, den: int) -> None:
        self.num += num
        self.den += den

    def compute(self) -> torch.Tensor:
        return self.num / self.den


# Attribute values nn.Module.__setattr__ would store plainly anyway.
_PLAIN = (str, bool, int, float, type(None))


class Classifier(pl.LightningModule):
    """Wraps a plain network; `hparams` carry the whole config into every checkpoint."""

    def __init__(self, net: nn.Module, num_classes: int, optim: dict, config: dict | None = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        # NHWC lets oneDNN and cuDNN pick their fast convolution kernels (README, Throughput).
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        self.optim = OptimConfig(**optim)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.optim.label_smoothing)
        # ModuleDict keys may not shadow nn.Module attributes such as `train`.
        self.acc = nn.ModuleDict({f"{s}_": Ratio() for s in ("train", "val", "test")})
        self.mean_loss = nn.ModuleDict({f"{s}_": Ratio() for s in ("train", "val", "test")})

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets bookkeeping attributes (`_current_fx_name`, ...) on the module around
        # each of its ~20 hooks a step; nn.Module's __setattr__ checks every one against
        # parameters, buffers and submodules. A plain value under a name that is none of those
        # is stored as nn.Module would store it, without the checks.
        d = self.__dict__
        if (type(value) in _PLAIN and name not in d.get("_parameters", ())
                and name not in d.get("_buffers", ()) and name not in d.get("_modules", ())):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str, batch_idx: int
              ) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        n = len(y)
        self.mean_loss[f"{split}_"].update(loss.detach() * n, n)
        self.acc[f"{split}_"].update((logits.detach().argmax(1) == y).sum(), n)
        if batch_idx == 0:
            # Lightning computes a logged Metric object at epoch end from all of its updates
            # (and syncs it across DDP ranks), so registering it once per epoch is enough; a
            # self.log per step was costly: bp 11.7k → 21.1k img/s under plain Lightning (one
            # epoch, 12k MNIST images; a scratch profiling script, not committed).
            self.log(M.key(split, "loss"), self.mean_loss[f"{split}_"], on_step=False,
                     on_epoch=True)
            self.log(M.key(split, "acc"), self.acc[f"{split}_"], on_step=False, on_epoch=True,
                     prog_bar=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val", batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test", batch_idx)

    def configure_optimizers(self) -> Any:
        o = self.optim
        params = self.parameters()
        if o.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov
                                  and o.momentum > 0, weight_decay=o.weight_decay)
        else:
            cls = torch.optim.Adam if o.optimizer == "adam" else torch.optim.AdamW
            opt = cls(params, lr=o.lr, weight_decay=o.weight_decay)
        steps = int(self.trainer.estimated_stepping_batches)
        if o.schedule == "none" or steps < 8:  # too few steps to shape a schedule over
            return opt
        if o.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=steps,
                                                        pct_start=0.25)
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

