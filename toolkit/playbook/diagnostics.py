"""Diagnostics: every problem found in a file, with its position and a hint, reported together."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, order=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str
    file: str
    position: Position
    hint: str = ""
    code: str = ""

    def format(self) -> str:
        text = f"{self.file}:{self.position.line}:{self.position.column}: {self.severity.value}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file, "line": self.position.line, "column": self.position.column,
            "severity": self.severity.value, "code": self.code, "message": self.message, "hint": self.hint,
        }


@dataclass
class Diagnostics:
    """Collects diagnostics for one or more files; never raises on the first problem."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, severity: Severity, code: str, message: str, file: str, position: Position, hint: str = "") -> None:
        diagnostic = Diagnostic(severity, message, file, position, hint, code)
        if diagnostic not in self.items:
            self.items.append(diagnostic)

    def error(self, code: str, message: str, file: str, position: Position, hint: str = "") -> None:
        self.add(Severity.ERROR, code, message, file, position, hint)

    def warning(self, code: str, message: str, file: str, position: Position, hint: str = "") -> None:
        self.add(Severity.WARNING, code, message, file, position, hint)

    def note(self, code: str, message: str, file: str, position: Position, hint: str = "") -> None:
        self.add(Severity.NOTE, code, message, file, position, hint)

    def extend(self, other: Diagnostics) -> None:
        for item in other.items:
            if item not in self.items:
                self.items.append(item)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.WARNING]

    def failed(self, strict: bool = False) -> bool:
        return bool(self.errors) or (strict and bool(self.warnings))

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=lambda d: (d.file, d.position, d.severity.value, d.message))


class PlaybookError(Exception):
    """Raised by a stage that cannot go on; carries the diagnostics that explain why."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        super().__init__("\n".join(d.format() for d in diagnostics.sorted()))
        self.diagnostics = diagnostics
