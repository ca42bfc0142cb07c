"""Lookahead EMA as a Lightning callback (airbench's): every few steps the weights move to a
running average of themselves, whose decay grows with the cube of training progress, and the
last step ends on the average. The average travels in the checkpoint, so a resumed run goes on
with it."""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

EVERY = 5  # steps between updates
BASE_DECAY = 0.95 ** EVERY


class Lookahead(pl.Callback):
    def __init__(self) -> None:
        self.average: dict[str, torch.Tensor] = {}

    def _floats(self, module: pl.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = self._floats(pl_module)
        if self.average.keys() != state.keys():  # a fresh run (a resumed one loaded its own)
            self.average = {k: v.detach().clone() for k, v in state.items()}
        else:
            self.average = {k: v.to(state[k].device) for k, v in self.average.items()}

    @torch.no_grad()
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step, total = trainer.global_step, max(1, int(trainer.estimated_stepping_batches))
        if step >= total:
            decay = 1.0  # the last step: the weights become the average
        elif step % EVERY == 0:
            decay = BASE_DECAY * (step / total) ** 3
        else:
            return
        for k, v in self._floats(pl_module).items():
            avg = self.average[k]
            avg.lerp_(v.detach(), 1.0 - decay)
            v.copy_(avg)

    def state_dict(self) -> dict[str, Any]:
        return {"average": {k: v.cpu() for k, v in self.average.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.average = dict(state_dict.get("average", {}))
