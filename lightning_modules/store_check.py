"""A store checked before any work: its URL's form, its bucket (never created here), and, for
writing, a probe file written and removed (lightning_modules/store.py does the reads and
writes)."""
from __future__ import annotations

import uuid

from lightning_modules.errors import StoreError, first_line
from lightning_modules.store import (
    endpoint,
    filesystem,
    join,
    normalize,
    remove,
    retrying,
    url_problem,
    write_bytes,
)

_checked: set[tuple[str, bool]] = set()


def check_store(url: str, write: bool = True) -> str:
    """Check a store before any work: its URL's form, its bucket (never created here), and,
    for writing, a probe file written and removed. Returns the normalised URL."""
    problem = url_problem(url)
    if problem:
        raise StoreError(f"store {url!r}: {problem}")
    norm = normalize(url)
    if (norm, write) in _checked:
        return norm
    if norm.startswith("s3://"):
        _check_bucket(norm)
    if write:
        _probe(norm)
    _checked.add((norm, write))
    return norm


PROBE = ".imgclf-probe-"


def _probe(url: str) -> None:
    """Write and remove a small file; probes an outage kept from being removed go now. Runs
    side by side (the pipeline's branches) probe the same store at once: a probe that another
    run removed first is gone, as wanted, not an error."""
    fs, path = filesystem(url)
    try:
        write_bytes(join(url, f"{PROBE}{uuid.uuid4().hex[:8]}"), b"")
        for old in retrying(url, "listing", lambda: fs.glob(join(path, PROBE + "*"))):
            try:
                remove(url + old[len(path):])
            except FileNotFoundError:
                pass
    except StoreError:
        raise
    except Exception as e:
        raise StoreError(f"store {url} is not writable: {first_line(e, 200)}") from e


def _check_bucket(url: str) -> None:
    fs, _ = filesystem(url)
    bucket = url[len("s3://"):].split("/", 1)[0]
    try:
        retrying(url, "store", lambda: fs.call_s3("head_bucket", Bucket=bucket))
    except FileNotFoundError:
        raise StoreError(f"store {url}: bucket {bucket!r} does not exist at {endpoint(url)} "
                         "(it is never created for you: create it first, e.g. "
                         f"`aws s3 mb s3://{bucket}`)") from None
    except PermissionError as e:
        raise StoreError(f"store {url}: access to bucket {bucket!r} denied "
                         f"({first_line(e, 160)}); check the credentials") from None
    except StoreError:
        raise
    except Exception as e:
        if type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            raise StoreError(f"store {url}: no usable credentials for {endpoint(url)}; set "
                             "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE") from None
        raise
