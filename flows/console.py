"""The CLI's console: what it shows (warnings, progress lines, results; everything with -v),
the log file that keeps the rest, and the one error boundary (flows/cli.py calls both)."""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from flows.cli_options import one_line
from flows.progress import NoErrorsOnConsole, echo_to_console
from lightning_modules.errors import describe, first_line


def setup_logging(command: str, verbose: bool) -> Path:
    """The console shows warnings, progress lines and the result (everything with -v); the log
    file keeps everything at INFO, full tracebacks included. Returns the log file's path."""
    # Prefect's telemetry hit "database is locked" on its temporary server at every start.
    # Prefect reads its settings from the environment only (every re-setup of its logging too).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    echo_to_console(not verbose)
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    import prefect  # noqa: F401  (its logging config is applied on import; ours goes on top)

    logs = Path(os.environ.get("IMGCLF_LOG_DIR", "~/.cache/imgclf/logs")).expanduser()
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if not root.handlers[:-1]:  # no console handler yet (Prefect normally adds one)
        console = logging.StreamHandler()
        console.setLevel(logging.DEBUG if verbose else logging.WARNING)
        root.addHandler(console)
    if not verbose:  # a failure gets one line from report(), not the records of every layer
        for h in root.handlers:
            if h is not handler:
                h.addFilter(NoErrorsOnConsole())
    for name in ("flows", "cluster", "lightning_modules", "imgclf"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore"):  # one line per Prefect API request
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    return path


def report(command: str, e: Exception, verbose: bool, log_path: Path) -> int:
    """The CLI's one error boundary. Known failures (bad input, the store, the network, Ray
    start-up): one line, exit 2. Anything else is a bug: one line naming the log file, exit 1.
    The log file always keeps the traceback; -v also prints it here."""
    logging.getLogger("flows.cli").info("%s failed", command, exc_info=e)
    if verbose:
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    known = one_line(e) if isinstance(e, ValidationError) else describe(e)
    if known is not None:
        print(f"imgclf {command}: error: {known}", file=sys.stderr)
        return 2
    print(f"imgclf {command}: error: {type(e).__name__}: {first_line(e)} (traceback in "
          f"{log_path}; -v shows it here)", file=sys.stderr)
    return 1
