"""Errors the user can act on: the CLI prints them as one line, the flows fail with them."""


class UserError(Exception):
    """Bad input or options: the message names the problem; no traceback is shown."""


class DataError(UserError):
    """A source file is missing, corrupt, truncated, tampered with or unsafe."""
