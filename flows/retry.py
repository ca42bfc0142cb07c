"""When a task is tried again: network and storage hiccups, never bad input."""
from __future__ import annotations

from typing import Any

from lightning_modules.errors import is_permanent


def transient_only(task_: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry_condition_fn: retry unless the failure would happen the same way again
    (bad input, a full or read-only disk, no permission)."""
    try:
        state.result()
    except Exception as e:
        return not is_permanent(e)
    return False
