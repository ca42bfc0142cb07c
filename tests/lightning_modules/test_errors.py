"""How failures are worded and whether they are tried again: a full disk or a refused
permission is never retried; what a report keeps is one plain line, never a remote traceback."""
from __future__ import annotations

import errno

import pytest

from flows.retry import transient_only
from lightning_modules.errors import DataError, is_permanent, reason


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
    class RayTaskError(Exception):  # Ray's wrapper: its text is the remote traceback
        pass

    try:
        try:
            raise ValueError("\x1b[31mshape mismatch\x1b[0m\n  more detail")
        except ValueError as inner:
            raise RayTaskError("Traceback (most recent call last):\n  File ...") from inner
    except RayTaskError as e:
        assert reason(e) == "ValueError: shape mismatch"
    full = OSError(errno.ENOSPC, "No space left on device")
    assert reason(full) == "cannot write: [Errno 28] No space left on device"
