"""One LightningModule for every family: loss, optimiser, schedule and per-split metrics."""
from __future__ import annotations

from typing import Any, Callable

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import Metric

from lightning_modules import metrics as M
from lightning_modules.config import OptimConfig
from lightning_modules.deep_cnn import norm_shifts
from lightning_modules.lookahead import Lookahead


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

    def on_fit_start(self) -> None:
        """A whitening stem is fitted to the training images before the first step (a resumed
        run's was restored with its weights)."""
        whiten = getattr(self.net, "whiten", None)
        dm = getattr(self.trainer, "datamodule", None)
        if whiten is not None and not bool(whiten.fitted) and hasattr(dm, "whitening_sample"):
            whiten.fit(dm.whitening_sample().to(whiten.weight.device))

    def configure_callbacks(self) -> list[pl.Callback]:
        return [Lookahead()] if self.optim.lookahead else []

    def _param_groups(self) -> list[dict[str, Any]]:
        """Batch-norm shifts at norm_lr_scale × lr; with decoupled weight decay, torch's
        coefficient divided by each group's lr, so the decay per step is the config's."""
        o = self.optim
        shifts = {id(p) for p in norm_shifts(self.net)} if o.norm_lr_scale != 1.0 else set()
        trained = [p for p in self.parameters() if p.requires_grad]
        groups = [(o.lr, [p for p in trained if id(p) not in shifts]),
                  (o.lr * o.norm_lr_scale, [p for p in trained if id(p) in shifts])]
        return [{"params": ps, "lr": lr,
                 "weight_decay": o.weight_decay / lr if o.decoupled_weight_decay else
                 o.weight_decay} for lr, ps in groups if ps]

    def configure_optimizers(self) -> Any:
        o = self.optim
        groups = self._param_groups()
        if o.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0)
        else:
            cls = torch.optim.Adam if o.optimizer == "adam" else torch.optim.AdamW
            opt = cls(groups, lr=o.lr)
        steps = int(self.trainer.estimated_stepping_batches)
        if o.schedule == "none" or steps < 8:  # too few steps to shape a schedule over
            return opt
        if o.schedule == "onecycle":
            sched: Any = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.25)
        elif o.schedule == "warmup_linear":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_linear(steps))
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def warmup_linear(total: int, warm: float = 0.23, start: float = 0.2, end: float = 0.07
                  ) -> Callable[[int], float]:
    """airbench's schedule as an lr multiplier per step."""
    up = max(1, int(total * warm))

    def factor(step: int) -> float:
        if step < up:
            return start + (1.0 - start) * step / up
        return 1.0 + (end - 1.0) * min(1.0, (step - up) / max(1, total - up))
    return factor
