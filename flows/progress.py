"""Progress for long work: a rich bar on a terminal, a log line every 10% elsewhere (Prefect, CI)."""
from __future__ import annotations

import logging
import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

log = logging.getLogger("imgclf.progress")


class Bar:
    """Call with the number of items just finished; use as a context manager."""

    def __init__(self, description: str, total: int) -> None:
        self.description, self.total, self.done, self._next_log = description, total, 0, 0.1
        self._rich = None
        if sys.stderr.isatty():
            self._rich = Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), transient=True)
            self._task = self._rich.add_task(description, total=total)

    def __enter__(self) -> "Bar":
        if self._rich:
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich:
            self._rich.stop()

    def __call__(self, advance: int) -> None:
        self.done += advance
        if self._rich:
            self._rich.update(self._task, advance=advance)
        elif self.total and self.done / self.total >= self._next_log:
            log.info("%s: %d/%d (%.0f%%)", self.description, self.done, self.total,
                     100 * self.done / self.total)
            self._next_log = (int(10 * self.done / self.total) + 1) / 10


_console = None
_echo = False  # the CLI's console shows warnings only: progress lines are echoed to it


def echo_to_console(on: bool) -> None:
    """Set once by the CLI at its entry (flows/console.py setup_logging)."""
    global _echo
    _echo = on


def step(logger: logging.Logger, message: str, *args: object) -> None:
    """One line of a long run's progress: to the logs (the Prefect UI, the log file) and, when
    the CLI keeps the console to warnings, also to the terminal as a timestamped line."""
    global _console
    logger.info(message, *args)
    if not _echo:
        return
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False)
    stamp = time.strftime("%H:%M:%S")
    _console.print(f"[{stamp}] {message % args if args else message}", markup=False,
                   soft_wrap=True)


class NoErrorsOnConsole(logging.Filter):
    """Keeps errors and tracebacks off the quiet console: the CLI reports a failure in one
    line; the log file and the Prefect API keep the records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR and not record.exc_info
