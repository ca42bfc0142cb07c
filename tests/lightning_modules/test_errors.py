"""How failures are worded and whether they are tried again: a full disk or a refused
permission is never retried; what a report keeps is one plain line, never a remote traceback."""
from __future__ import annotations

import errno

import pytest

from flows.retry import transient_only
from lightning_modules.errors import DataError, StoreError, is_permanent, reason


class _State:
    def __init__(self, e: BaseException) -> None:
        self.e = e

    def result(self):
        raise self.e


@pytest.mark.parametrize("err,retried", [
    (OSError(errno.ENOSPC, "No space left on device"), False),
    (PermissionError(errno.EACCES, "Permission denied"), False),
    (OSError(errno.EROFS, "Read-only file system"), False),
    (DataError("bad file"), False),
    (ConnectionResetError(errno.ECONNRESET, "reset by peer"), True),
    (RuntimeError("a bug"), True),
])
def test_permanent_failures_are_not_retried(err, retried):
    assert transient_only(None, None, _State(err)) is retried
    assert is_permanent(err) is not retried


def test_a_remote_error_is_kept_as_its_cause_in_one_plain_line():
    from ray.exceptions import RayTaskError

    remote = "\x1b[36mray::tune_model()\x1b[39m (pid=1, ip=10.0.0.1)\n  File ..."
    for cause, said in [(ValueError("\x1b[31mshape mismatch\x1b[0m\n  more detail"),
                         "ValueError: shape mismatch"),
                        (StoreError("store s3://b/x: no usable credentials"),
                         "store s3://b/x: no usable credentials")]:
        # What ray.get raises: an instance of the cause's class whose text is the traceback.
        e = RayTaskError("tune_model", remote, cause).as_instanceof_cause()
        assert reason(e) == said
    full = OSError(errno.ENOSPC, "No space left on device")
    assert reason(full) == "cannot write: [Errno 28] No space left on device"
