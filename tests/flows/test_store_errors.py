"""Store URLs and S3 outages as a user meets them: `imgclf` run as a command against moto's S3
server on loopback, a dead port, and a proxy that takes the endpoint down mid-prepare. Each
case: exit 2, one line naming the problem, no traceback, and nothing written where it should
not be (no local `s3:` folder, no bucket created, no temporary prefix left after the rerun)."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import s3fs

from tests.conftest import BIN, _free_port
from tests.datagen import write_idx_set
from tests.s3proxy import FlakyS3

pytestmark = pytest.mark.slow  # the `imgclf` command against real endpoints (a process each)


def imgclf(*args: str, cwd=None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "imgclf"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, **env})


def one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with exit 2 and exactly one line on stderr holding every fragment."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


def buckets() -> set[str]:
    s3fs.S3FileSystem.clear_instance_cache()
    return set(s3fs.S3FileSystem().ls(""))


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return str(write_idx_set(tmp_path_factory.mktemp("idx")))


@pytest.mark.parametrize("command", ["prepare", "train", "evaluate", "tune", "study",
                                     "pipeline", "serve"])
def test_every_command_refuses_an_unknown_scheme(command, tmp_path):
    out = imgclf(command, "--store", "s4://bucket/x", cwd=tmp_path)
    one_line_error(out, "s4://bucket/x", "unknown scheme")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("store,fragment", [
    ("s3://", "no bucket named"),
    ("s3:///nobucket/x", "no bucket named"),
    ("s3://bad bucket/x", "bucket name 'bad bucket' is not valid"),
    ("s3://absent-bucket/x", "bucket 'absent-bucket' does not exist"),
])
def test_bad_s3_stores_write_nothing_anywhere(s3_endpoint, tmp_path, src, store, fragment):
    before = buckets()
    out = imgclf("prepare", "--source", src, "--store", store, cwd=tmp_path)
    one_line_error(out, store, fragment)
    assert not list(tmp_path.iterdir())  # no ./s3:/datasets/... folder
    assert buckets() == before  # no bucket created, nothing written into one


def test_an_unwritable_store_is_refused_before_any_work(tmp_path):
    # The source does not exist either: the store is checked first, so the store is named.
    out = imgclf("prepare", "--source", str(tmp_path / "nothing"), "--store", "/proc/imgclf")
    one_line_error(out, "store /proc/imgclf is not writable")


@pytest.mark.slow  # retries with backoff against a real endpoint
def test_a_dead_endpoint_is_retried_then_named(s3_endpoint, s3_bucket, src):
    dead = f"http://127.0.0.1:{_free_port()}"
    out = imgclf("prepare", "--source", src, "--store", f"{s3_bucket}/x",
                 AWS_ENDPOINT_URL=dead, IMGCLF_STORE_RETRIES="2", AWS_MAX_ATTEMPTS="1")
    one_line_error(out, f"{s3_bucket}/x", dead, "did not answer after 2 tries")


@pytest.mark.slow  # retries with backoff against a real endpoint
def test_missing_credentials_are_named(s3_endpoint, s3_bucket, src):
    out = imgclf("prepare", "--source", src, "--store", f"{s3_bucket}/x",
                 AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="", AWS_EC2_METADATA_DISABLED="true",
                 AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent")
    one_line_error(out, "no usable credentials")


def test_a_refused_http_source_is_not_called_missing(tmp_path):
    out = imgclf("prepare", "--source", f"http://127.0.0.1:{_free_port()}/mnist",
                 "--store", str(tmp_path), IMGCLF_STORE_RETRIES="2")
    line = one_line_error(out, "did not answer after 2 tries")
    assert "missing" not in line


def _state(fs: s3fs.S3FileSystem, store: str) -> tuple[list[str], list[str], dict | None]:
    """(temporary prefixes' files, manifests, latest.json) of the mnist dataset in a store."""
    fs.invalidate_cache()
    files = fs.find(store)  # paths without the scheme
    latest = f"{store[len('s3://'):]}/datasets/mnist/latest.json"
    return ([f for f in files if ".tmp-" in f or ".imgclf-probe-" in f],
            [f for f in files if f.endswith("/manifest.json") and ".tmp-" not in f],
            json.loads(fs.cat_file(latest)) if latest in files else None)


@pytest.mark.slow  # retries with backoff against a real endpoint
@pytest.mark.parametrize("cut", [3, 12, 24, 40, "PUT", "latest.json"])
def test_an_outage_mid_prepare_leaves_nothing_half_visible(s3_endpoint, s3_bucket, src, cut):
    """The endpoint goes down after `cut` requests (a clean prepare takes ~50), or from the
    first request that names `cut`: one line, exit 2; latest.json never points at a tree
    without its manifest; the next run of the same inputs, with the endpoint back, removes what
    the failed one left and publishes a consistent dataset."""
    store = f"{s3_bucket}/cut-{str(cut).replace('.', '-').lower()}"
    proxy = FlakyS3(s3_endpoint, **({"down_after": cut} if isinstance(cut, int)
                                    else {"down_from": cut}))
    try:
        out = imgclf("prepare", "--source", src, "--store", store, AWS_ENDPOINT_URL=proxy.url,
                     AWS_MAX_ATTEMPTS="1", IMGCLF_STORE_RETRIES="2")
    finally:
        proxy.close()
    one_line_error(out, proxy.url, "did not answer after 2 tries")
    fs = s3fs.S3FileSystem()
    _, manifests, latest = _state(fs, store)
    assert latest is None or f"{latest['uri'][5:]}/manifest.json" in manifests
    rerun = imgclf("prepare", "--source", src, "--store", store)
    assert rerun.returncode == 0, rerun.stderr
    leftovers, manifests, latest = _state(fs, store)
    assert leftovers == [] and latest == {"key": json.loads(rerun.stdout)["uri"].rsplit("/")[-1],
                                          "uri": json.loads(rerun.stdout)["uri"]}
    assert manifests == [f"{latest['uri'][5:]}/manifest.json"]


def test_a_local_temporary_prefix_of_a_killed_prepare_is_removed_by_the_next(tmp_path, src):
    """A prepare killed mid-write (SIGKILL: no clean-up of its own) leaves its temporary
    folder; the next run of the same inputs sees its writer is gone and removes it."""
    from flows.config import PrepConfig
    from flows.prep.build import dataset_key
    from flows.prep.idx import IDX_FILES
    from flows.prep.sources import content_fingerprint

    fp = content_fingerprint([f"{src}/{f}" for f in IDX_FILES.values()])
    key = dataset_key(fp, PrepConfig(dataset="mnist", source=src, store=str(tmp_path)))
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = tmp_path / "datasets" / "mnist" / f"{key}.tmp-{os.uname().nodename}~{dead.pid}~" \
        f"{int(time.time())}"
    left.mkdir(parents=True)
    (left / "train_x-00000.npy").write_bytes(b"half")
    out = imgclf("prepare", "--source", src, "--store", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert not left.exists() and (tmp_path / "datasets" / "mnist" / key / "manifest.json").exists()


def test_runs_side_by_side_probe_one_store_without_tripping_each_other(s3_bucket):
    """The pipeline's branches check the store at once, each in its own process; one may
    remove another's probe file first. Threads here, against moto's S3 on loopback."""
    from concurrent.futures import ThreadPoolExecutor

    from lightning_modules import store, store_check

    def probe_a_few(_: int) -> int:
        for _ in range(4):
            store_check._probe(f"{s3_bucket}/shared")
        return 1
    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(probe_a_few, range(8))) == 8
    fs, path = store.filesystem(f"{s3_bucket}/shared")
    fs.invalidate_cache()
    assert not fs.glob(store.join(path, store_check.PROBE + "*"))  # every probe gone in the end
