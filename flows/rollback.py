"""Stage: point a champion back at the previous one. Run: `imgclf rollback --dataset mnist
--family cnn`, or the flow `rollback-champion` from the UI. The page serves the previous model
at once; with MLflow tracking the registered model's `champion` alias moves back too."""
from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.config import RollbackConfig
from flows.publish import rollback_champion
from lightning_modules import metrics as M
from lightning_modules import tracking


@flow(name="rollback-champion")
def rollback(cfg: RollbackConfig = RollbackConfig()) -> dict[str, Any]:
    """Point the (dataset, family) champion back at the previous one.

    Args:
        cfg: which champion (dataset, family), the store, and MLflow tracking (its alias
            `champion` moves back too when a tracking URI is set).
    """
    last = rollback_champion(cfg.store, cfg.dataset, cfg.family, tracking.from_env(cfg.tracking))
    out = {"model": f"{cfg.dataset}/{cfg.family}", "champion": last["run_id"],
           "uri": last["uri"], M.TEST_ACC: last.get(M.TEST_ACC)}
    create_markdown_artifact(key="champion-gate", description=f"rolled back {out['model']}",
                             markdown=f"# Champion rolled back\n\n{out['model']} is served "
                             f"from run `{last['run_id']}` again (test accuracy "
                             f"{last.get(M.TEST_ACC, float('nan')):.4f}).\n")
    return out
