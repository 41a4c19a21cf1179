"""Secret references: an inventory names where a secret is, never the secret itself.

``env:NAME`` (an environment variable), ``keyring:SERVICE/USER`` (the system keyring via the keyring library) or
``prompt`` (asked on the terminal, hidden). Resolved only when a connection is made; error messages name the
reference, never the value.
"""

from __future__ import annotations

import getpass
import os
import re
import sys

from toolkit.errors import ExkitError

_REFERENCE = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|keyring:[^/\s]+/\S+|prompt)$")
REFERENCE_HINT = "use env:NAME, keyring:SERVICE/USER or prompt"


class SecretError(ExkitError):
    pass


def is_reference(value: str) -> bool:
    return bool(_REFERENCE.match(value))


def resolve(reference: str, what: str) -> str:
    """Return the secret a reference points to. ``what`` names it in messages (e.g. "password of target lab")."""
    if reference.startswith("env:"):
        name = reference[4:]
        value = os.environ.get(name)
        if not value:
            raise SecretError(f"the {what} comes from the environment variable {name}, which is not set")
        return value
    if reference.startswith("keyring:"):
        service, _, user = reference[8:].partition("/")
        try:
            import keyring
            import keyring.errors

            value = keyring.get_password(service, user)
        except Exception as exc:  # keyring backends raise many kinds of errors
            raise SecretError(f"the {what} could not be read from the keyring ({type(exc).__name__})") from None
        if value is None:
            raise SecretError(f"the keyring has no entry for service {service!r} and user {user!r} ({what}); add it "
                              f"with: keyring set {service} {user}")
        return value
    if reference == "prompt":
        if not sys.stdin.isatty():
            raise SecretError(f"the {what} is to be prompted for, but there is no terminal: use env:NAME or keyring:")
        return getpass.getpass(f"{what[0].upper() + what[1:]}: ")
    raise SecretError(f"the {what} is not a secret reference; {REFERENCE_HINT}")
