"""The `imgclf` entry point: runs the command (flows/cli.py) in a child process of its own
session and stands guard. Ctrl-C, SIGTERM or SIGHUP (the terminal closed) stops the whole run
within seconds: the child is asked to stop, then it and every process it started (the local
Ray's GCS, raylet, dashboard and workers included) are killed, so nothing is left running.
Ray Train's own SIGINT handler waits on its controller, which is what kept a stuck run alive
before. If the guard itself is killed (SIGKILL to its process group), the child notices that
its parent is gone and ends itself and everything it started the same way.

Only the standard library and psutil are imported here, so the guard costs little."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

CHILD_ENV = "IMGCLF_CHILD"
ASK_S = 4.0   # how long the child may take to stop by itself
KILL_S = 4.0  # then: how long killed processes may take to go


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _group(pgid: int) -> list[psutil.Process]:
    """Processes still in the child's process group (the ones that were re-parented)."""
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_started(pid: int) -> None:
    """Kill every process `pid` started (its descendants, and those of its process group that
    were re-parented), not `pid` itself."""
    _kill({p.pid: p for p in _tree(psutil.Process(pid))[1:] + _group(pid) if p.pid != pid})


def _kill(procs: dict[int, psutil.Process]) -> None:
    """SIGKILL each, then wait (at most KILL_S) for them to go."""
    for p in procs.values():
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(procs.values()), timeout=KILL_S)


def watch_guard() -> None:
    """In the child: once the guard that started it is gone, end the run (a daemon thread)."""
    import threading

    guard = os.getppid()

    def watch() -> None:
        while os.getppid() == guard:
            time.sleep(0.5)
        kill_started(os.getpid())
        os._exit(128 + signal.SIGKILL)
    threading.Thread(target=watch, name="imgclf-guard-watch", daemon=True).start()


def watch_guard_if_guarded() -> None:
    """In `python -m flows.cli`: when a guard started this process, watch it."""
    if os.environ.get(CHILD_ENV) == str(os.getppid()):
        watch_guard()


def stop_tree(pid: int) -> None:
    """Ask the child to stop, then kill what is left of it and everything it started."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    seen = {p.pid: p for p in _tree(root)}  # before the child dies and orphans its children
    try:
        # SIGINT, not SIGTERM: a Ray driver's native failure handler prints a stack dump for
        # SIGTERM on the user's console.
        root.send_signal(signal.SIGINT)
    except psutil.NoSuchProcess:
        pass
    deadline = time.monotonic() + ASK_S
    while time.monotonic() < deadline and _alive(root):
        seen.update({p.pid: p for p in _tree(root)})
        time.sleep(0.1)
    seen.update({p.pid: p for p in _group(pid)})
    _kill(seen)


def main() -> int:
    if os.environ.get(CHILD_ENV):  # already guarded (or a test calling the CLI directly)
        from flows.cli import main as cli_main

        return cli_main()
    env = {**os.environ, CHILD_ENV: str(os.getpid())}
    child = subprocess.Popen([sys.executable, "-m", "flows.cli", *sys.argv[1:]],
                             env=env, start_new_session=True)
    got: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        got.append(signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    while not got:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
    name = signal.Signals(got[0]).name
    print(f"imgclf: {name}: stopping the run and every process it started", file=sys.stderr)
    stop_tree(child.pid)
    child.wait()
    return 128 + got[0]


if __name__ == "__main__":
    sys.exit(main())
