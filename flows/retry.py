"""When a task is tried again: network and storage hiccups, never bad input."""
from __future__ import annotations

from typing import Any

from lightning_modules.errors import UserError


def transient_only(task_: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry_condition_fn: retry unless the failure is bad input (it would fail the
    same way again)."""
    try:
        state.result()
    except UserError:
        return False
    except Exception:
        return True
    return False
