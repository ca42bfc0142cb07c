"""Errors the user can act on: the CLI prints them as one line, the flows fail with them.

`describe(e)` is the one place that decides whether an exception is a known, explainable failure
(bad input, the store, the network, Ray start-up) and words it as one line; `is_transient(e)`
decides whether trying again may help."""
from __future__ import annotations

import errno
import re
from typing import Iterator, Optional


class UserError(Exception):
    """Bad input or options: the message names the problem; no traceback is shown."""


class DataError(UserError):
    """A source file is missing, corrupt, truncated, tampered with or unsafe."""


class StoreError(UserError):
    """The store URL is malformed, its bucket is missing, or it cannot be written or reached."""


# Error codes object stores answer when they are busy or briefly down (retrying helps).
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                    "RequestTimeTooSkewed", "500", "502", "503", "504", "Throttling"}
_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
                     errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPIPE}


def chain(e: BaseException) -> Iterator[BaseException]:
    """e, then what caused it (explicitly or while handling), then Ray's wrapped cause."""
    seen: set[int] = set()
    cur: Optional[BaseException] = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        nxt = cur.__cause__ or cur.__context__ or getattr(cur, "cause", None)
        cur = nxt if isinstance(nxt, BaseException) else None


def _is_transient_one(e: BaseException) -> bool:
    name = type(e).__name__
    if isinstance(e, UserError):
        return False
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    if name in {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                "ConnectionClosedError", "ClientConnectorError", "ServerDisconnectedError",
                "ClientOSError", "ClientPayloadError", "ConnectError", "ReadTimeout",
                "RemoteProtocolError", "ResponseStreamingError"}:
        return True
    code = str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) \
        if isinstance(getattr(e, "response", None), dict) else ""
    if code in _TRANSIENT_CODES:
        return True
    if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
        return True
    # s3fs turns unknown service errors into OSError(EIO, "...ServiceUnavailable...").
    return isinstance(e, OSError) and e.errno == errno.EIO and any(
        c in str(e) for c in ("ServiceUnavailable", "SlowDown", "503", "InternalError"))


def is_transient(e: BaseException) -> bool:
    """Could the same call succeed if tried again (a network or service hiccup)?"""
    return not isinstance(e, UserError) and any(_is_transient_one(x) for x in chain(e))


_PERMANENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}


def is_permanent(e: BaseException) -> bool:
    """Would the same call fail the same way again (bad input, a full or read-only disk, no
    permission)? Such failures are never retried."""
    return any(isinstance(x, UserError) or (isinstance(x, OSError)
                                            and x.errno in _PERMANENT_ERRNOS) for x in chain(e))


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def reason(e: BaseException) -> str:
    """One plain line for a failure that a report or a record keeps: the known cause's line,
    else the original error's (a Ray task error's cause, never its remote traceback)."""
    known = describe(e)
    if known is None:
        root = unwrapped(e)[0]
        known = f"{type(root).__name__}: {first_line(root)}"
    return _ANSI.sub("", known)


def unwrapped(e: BaseException) -> list[BaseException]:
    """e's chain without Ray's wrappers around a remote error (`RayTaskError(StoreError)` is
    also a StoreError, but its text is the remote traceback), or [e] if that is all."""
    return [x for x in chain(e) if not type(x).__name__.startswith(_WRAPPERS)] or [e]


_WRAPPERS = ("RayTaskError", "RayActorError", "TaskError")


def first_line(e: BaseException, limit: int = 300) -> str:
    return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:limit]


def describe(e: BaseException) -> Optional[str]:
    """One line for a known failure, or None for a bug (shown with its log file instead)."""
    causes = unwrapped(e)
    for x in causes:
        if isinstance(x, UserError):
            return first_line(x)
    for x in causes:
        name = type(x).__name__
        if name == "NoCredentialsError":
            return ("no credentials for the object store: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use --storage-block")
        if _is_transient_one(x):
            return f"network or store unavailable: {first_line(x)}"
        if isinstance(x, PermissionError):
            return f"permission denied: {first_line(x)}"
        if isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
            return f"cannot write: {first_line(x)}"
    return None
