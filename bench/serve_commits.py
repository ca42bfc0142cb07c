"""The page's latency at two commits on one machine, alternating: is a slower figure the code or
the machine? Each commit publishes its own store with its own bench/serve.py, serves it with its
own `python -m flows.cli serve`, and answers --requests sequential POST /predict per family on
one keep-alive connection.

    python bench/serve_commits.py --old 415a98d [--new HEAD] [--requests 300] [--repeats 2]

Writes bench/results/serve_commits.json (p50 ms per family, one per repeat)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench_results import command, write
from serve import answering, free_port

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("bp", "cnn")
# Run inside the commit's tree: its own publish(); the PNG maker moved between commits.
PUBLISH = """import json, sys
from pathlib import Path
sys.path[:0] = ["bench", "."]
import serve as B
from lightning_modules.splits import load_split
try:
    from fixtures import png
except ImportError:
    from tests.flows.conftest import png
store, data = B.publish(Path(sys.argv[1]))
Path(sys.argv[1], "digit.png").write_bytes(png(load_split(data, "test")[0][0, 0]))
print(json.dumps(store))
"""


def checkout(commit: str, into: Path) -> Path:
    """The commit's tree beside the shared datasets (its benches find them at ../shared)."""
    tree = into / "main"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree),
                    commit], check=True)
    (into / "shared").symlink_to(ROOT.parent / "shared")
    return tree


def publish(tree: Path, tmp: Path) -> str:
    out = subprocess.run([sys.executable, "-c", PUBLISH, str(tmp)], cwd=tree,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"publishing at {tree} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def serve(tree: Path, store: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree), "IMGCLF_CHILD": "1"}  # no guard: the CLI
    return answering(subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--store", store, "--port", str(port)],
        cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port)


def p50_ms(port: int, digit: bytes, family: str, n: int) -> float:
    url = f"http://127.0.0.1:{port}/predict?model=mnist/{family}"
    head = {"content-type": "image/png"}
    with httpx.Client() as c:
        for _ in range(20):
            c.post(url, content=digit, headers=head)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            r = c.post(url, content=digit, headers=head)
            times.append(time.perf_counter() - t)
            if r.status_code != 200:
                sys.exit(f"{url}: {r.status_code} {r.text[:200]}")
    return round(statistics.median(times) * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", default="HEAD")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-commits-"))
    commits = {c: subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", c],
                                 capture_output=True, text=True, check=True).stdout.strip()
               for c in (args.old, args.new)}
    trees = {sha: checkout(sha, work / sha) for sha in commits.values()}
    try:
        stores = {sha: publish(t, Path(tempfile.mkdtemp(dir=work))) for sha, t in trees.items()}
        p50: dict[str, dict[str, list[float]]] = {sha: {f: [] for f in FAMILIES} for sha in trees}
        for _ in range(args.repeats):
            for sha, tree in trees.items():
                digit = Path(stores[sha]).parent.joinpath("digit.png").read_bytes()
                proc, port = serve(tree, stores[sha])
                try:
                    for fam in FAMILIES:
                        p50[sha][fam].append(p50_ms(port, digit, fam, args.requests))
                finally:
                    proc.terminate()
                    proc.wait(30)
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
        shutil.rmtree(work, ignore_errors=True)
    print(write("serve_commits", {"command": command(), "requests": args.requests,
                                  "p50_ms": p50}))


if __name__ == "__main__":
    main()
