"""Errors a user can cause or fix. The CLI prints them as one line and exits with ``exit_code``; no traceback."""


class ExkitError(Exception):
    exit_code = 1
