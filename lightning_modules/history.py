"""Per-epoch metrics kept in the checkpoint, so training curves survive a resume."""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

HISTORY_KEY = "EpochHistory"  # the callback's state key inside a Lightning checkpoint


class EpochHistory(pl.Callback):
    """Records the epoch's logged scalars (validation ran already when a training epoch ends);
    its state rides in every checkpoint, and a resumed run carries on from it."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    @property
    def state_key(self) -> str:
        return HISTORY_KEY

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row = {k: float(v) for k, v in trainer.callback_metrics.items()
               if "/" in k and getattr(v, "numel", lambda: 1)() == 1}
        self.history.append({"epoch": trainer.current_epoch + 1, **row})

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def history_from_checkpoint(ckpt: dict) -> list[dict[str, float]]:
    return list(((ckpt.get("callbacks") or {}).get(HISTORY_KEY) or {}).get("history", []))
