"""The store's credentials never reach a log: a tuning on S3 whose secret key is a canary, then
every file Ray wrote for that run (its session folder: runtime-env agent, raylet, workers),
everything in the store and the console are searched for it."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import s3fs

from tests.conftest import BIN, shared_dataset
from tests.datagen import idx_subset


def _holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                found.append(str(p))
        except OSError:  # a socket, or a file Ray removed meanwhile
            pass
    return found


@pytest.mark.slow  # a tuning through the CLI, on its own Ray
def test_a_canary_secret_appears_in_no_log(s3_bucket, tmp_path):
    canary = f"canary-{uuid.uuid4().hex}"
    ray_tmp = Path(tempfile.mkdtemp(prefix="rays-", dir="/tmp"))  # short: AF_UNIX paths
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": canary, "TMPDIR": str(ray_tmp),
           "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    store = f"{s3_bucket}/secret"
    src = idx_subset(shared_dataset("mnist"), tmp_path / "digits", 300, 60)
    try:
        outs = []
        for args in (["prepare", "--dataset", "mnist", "--source", str(src)],
                     ["tune", "--model", "bp", "--num-samples", "2", "--max-epochs", "1",
                      "--batch-sizes", "32", "--presets", "small"]):
            out = subprocess.run([str(BIN / "imgclf"), *args, "--store", store], env=env,
                                 capture_output=True, timeout=600)
            assert out.returncode == 0, out.stderr.decode()[-3000:]
            outs.append(out.stdout + out.stderr)
        sessions = list(ray_tmp.rglob("session_*"))
        assert sessions, "the tuning left no Ray session folder to search"
        assert _holding(ray_tmp, canary.encode()) == []
        assert all(canary.encode() not in o for o in outs)
        fs = s3fs.S3FileSystem()
        fs.invalidate_cache()
        leaked = [p for p in fs.find(store) if canary.encode() in fs.cat_file(p)]
        assert leaked == []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
