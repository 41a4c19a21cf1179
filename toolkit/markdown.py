"""Text from playbooks and targets inside Markdown (run reports, diff comments): shown as text, never as markup.

HTML is escaped (a scope named ``<img onerror=…>`` stays text in a pull-request comment or a rendered report), and the
characters that would end a table cell, open a link, emphasis or a code span are backslash-escaped; line breaks become
spaces."""

from __future__ import annotations

import html

def escape(value: object) -> str:
    text = html.escape(str(value), quote=False).replace("\r", " ").replace("\n", " ")
    return "".join("\\" + char if char in "\\`*_[]|" else char for char in text)


def cell(value: object) -> str:
    """A table cell: escaped, and never empty (an empty cell breaks some renderers)."""
    return escape(value) or " "
