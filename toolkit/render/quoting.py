"""The only way a value becomes PowerShell text.

Every value a template emits passes through :func:`ps_literal` (the Jinja2 environment installs it as the
``finalize`` hook), so a template cannot place a raw string into a script.

Strings become single-quoted (verbatim) literals: PowerShell expands nothing inside them. The only character
that can end such a literal is a single quote, and PowerShell treats four Unicode characters as single quotes
too (U+2018 ‘, U+2019 ’, U+201A ‚, U+201B ‛). Each of them is doubled, which PowerShell reads back as the one
character. Control characters cannot be represented safely (a newline would end a comment line, NUL truncates
native arguments) and are rejected.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

SINGLE_QUOTES = frozenset("'\u2018\u2019\u201a\u201b")

# Line and paragraph separators are not category Cc but PowerShell treats U+0085, U+2028 and U+2029 as newlines.
_EXTRA_FORBIDDEN = frozenset("\u2028\u2029")
# Bidirectional controls and zero-width characters make a script read differently from what runs ("Trojan Source",
# CVE-2021-42574): a reviewer must see every character. Validation refuses them with a position (playbook/load.py);
# this is the last line of defence for values reaching a script any other way.
INVISIBLE = frozenset("\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062"
                      "\u2063\u2064\u2066\u2067\u2068\u2069\ufeff")


class UnsafeValueError(ValueError):
    """A value cannot be written as a PowerShell literal."""


class PowerShell(str):
    """Text that already is PowerShell (a rendered block, a literal made by this module).

    Only this module and the render engine create instances; templates receive them, never make them.
    """

    __slots__ = ()


def find_unsafe_character(text: str) -> tuple[int, str] | None:
    """Return (index, description) of the first character that may not appear in a literal, or None."""
    if text.isascii() and text.isprintable():  # the usual value: no ASCII control character, nothing else to find
        return None
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if category == "Cc" or char in _EXTRA_FORBIDDEN or char in INVISIBLE:
            return index, f"U+{ord(char):04X} ({unicodedata.name(char, 'control character')})"
        if category == "Cs":  # e.g. YAML's "\ud83d": half of a UTF-16 pair, no character, cannot be encoded
            return index, f"U+{ord(char):04X} (a lone surrogate, not a character)"
    return None


def quote_string(text: str) -> str:
    """Return ``text`` as a single-quoted PowerShell literal."""
    problem = find_unsafe_character(text)
    if problem is not None:
        index, what = problem
        raise UnsafeValueError(f"control character {what} at position {index + 1} cannot be used in a value")
    if not any(quote in text for quote in SINGLE_QUOTES):
        return "".join(("'", text, "'"))  # nothing to double (most values): no walk character by character (and
        # a plain str, as the walk gives, whatever subclass of str ``text`` is: Jinja's Markup adds with escaping)
    return "'" + "".join(c + c if c in SINGLE_QUOTES else c for c in text) + "'"


def ps_literal(value: object) -> PowerShell:
    """Turn a Python value into a PowerShell expression that evaluates to that value."""
    if isinstance(value, PowerShell):
        return value
    if value is None:
        return PowerShell("$null")
    if isinstance(value, bool):
        return PowerShell("$true" if value else "$false")
    if isinstance(value, int):
        return PowerShell(str(value))
    if isinstance(value, str):
        return PowerShell(quote_string(value))
    if isinstance(value, Mapping):
        items = "; ".join(f"{quote_string(str(k))} = {ps_literal(v)}" for k, v in value.items())
        return PowerShell("@{" + items + "}")
    if isinstance(value, Sequence):
        return PowerShell("@(" + ", ".join(ps_literal(v) for v in value) + ")")
    raise UnsafeValueError(f"cannot write a {type(value).__name__} as a PowerShell literal")


def unquote_verbatim(literal: str) -> str:
    """Read a single-quoted literal back the way PowerShell does (the inverse of :func:`quote_string`)."""
    if len(literal) < 2 or literal[0] not in SINGLE_QUOTES or literal[-1] not in SINGLE_QUOTES:
        raise ValueError(f"not a single-quoted literal: {literal!r}")
    body, out, i = literal[1:-1], [], 0
    if not any(quote in body for quote in SINGLE_QUOTES):
        return "".join((body,))  # nothing doubled (most literals): no walk character by character; a plain str
    while i < len(body):
        char = body[i]
        if char in SINGLE_QUOTES:
            if i + 1 >= len(body) or body[i + 1] not in SINGLE_QUOTES:
                raise ValueError(f"unescaped quote inside literal: {literal!r}")
            out.append(body[i + 1])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)
