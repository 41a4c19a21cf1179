"""Commands the sandbox knows: their parameters (bound like PowerShell binds them) and what they do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from toolkit.sandbox.values import Hashtable, PSObject, as_list, to_string

ParamType = Literal["string", "string[]", "switch", "bool", "int", "object"]

COMMON_PARAMETERS: dict[str, ParamType] = {
    "ErrorAction": "string", "WarningAction": "string", "Verbose": "switch", "Debug": "switch",
    "ErrorVariable": "string", "OutVariable": "string", "InformationAction": "string",
}
SHOULD_PROCESS_PARAMETERS: dict[str, ParamType] = {"Confirm": "switch", "WhatIf": "switch"}


class CmdletError(Exception):
    """An error a command writes (non-terminating: -ErrorAction decides what happens)."""

    def __init__(self, message: str, category: str = "NotSpecified", error_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.error_id = error_id


class BindingError(Exception):
    """A parameter-binding failure: always terminating, as in PowerShell."""


@dataclass(frozen=True)
class Command:
    name: str
    parameters: dict[str, ParamType]
    run: Callable[[dict[str, Any], list[Any]], list[Any]]
    positional: tuple[str, ...] = ()
    should_process: bool = False
    mandatory: tuple[str, ...] = ()
    remaining: str | None = None  # the parameter that takes all positional arguments (ValueFromRemainingArguments)
    module_function: bool = False  # a script module's function: blind to a script-scope $ErrorActionPreference
    all_parameters: dict[str, ParamType] = field(init=False, compare=False)
    _lowered: dict[str, str] = field(init=False, compare=False, repr=False)  # lower-case name → name

    def __post_init__(self) -> None:
        merged, lowered = _parameter_tables(self.should_process, tuple(self.parameters.items()))
        object.__setattr__(self, "all_parameters", merged)
        object.__setattr__(self, "_lowered", lowered)

    def resolve_parameter(self, written: str) -> str:
        """Match a parameter as written (case-insensitive, unambiguous prefixes allowed) to its name."""
        lowered = written.lower()
        exact = self._lowered.get(lowered)
        if exact is not None:
            return exact
        candidates = [p for low, p in self._lowered.items() if low.startswith(lowered)]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise BindingError(f"{self.name}: Parameter cannot be processed because the parameter name "
                               f"'{written}' is ambiguous. Possible matches include: "
                               + " ".join("-" + c for c in sorted(candidates)) + ".")
        raise BindingError(f"{self.name}: A parameter cannot be found that matches parameter name '{written}'.")

    def is_switch(self, name: str) -> bool:
        return self.all_parameters[name] == "switch"

    def with_run(self, run: Callable[[dict[str, Any], list[Any]], list[Any]]) -> Command:
        """The same command (name, parameters, binding) doing ``run``: dataclasses.replace without building the
        parameter tables again (~10 µs; a plan and a REST run each wrap a whole cmdlet table)."""
        wrapped = object.__new__(Command)
        wrapped.__dict__.update(self.__dict__, run=run)
        return wrapped


@lru_cache(maxsize=512)
def _parameter_tables(should_process: bool, parameters: tuple[tuple[str, ParamType], ...]) -> tuple[
        dict[str, ParamType], dict[str, str]]:
    """A command's parameters with the common ones, and its lower-case name → name index; shared (read only) by
    the commands of every interpreter (each run builds its command table anew)."""
    merged = {**COMMON_PARAMETERS, **(SHOULD_PROCESS_PARAMETERS if should_process else {}), **dict(parameters)}
    lowered: dict[str, str] = {}
    for name in merged:
        lowered.setdefault(name.lower(), name)  # the first one, as the list it replaces
    return merged, lowered


def convert(command: str, name: str, kind: ParamType, value: Any) -> Any:
    """Convert a bound argument to the parameter's type, or fail like PowerShell's binder."""
    if kind == "object":
        return value
    if kind == "switch":
        return True if value is None else _to_bool(command, name, value)
    if kind == "bool":
        return _to_bool(command, name, value)
    if kind == "string[]":
        return [to_string(v) for v in as_list(value)]
    if kind == "int":
        try:
            return int(to_string(value))
        except ValueError:
            raise BindingError(f"{command}: Cannot bind parameter '{name}'. Cannot convert value "
                               f"\"{to_string(value)}\" to type \"System.Int32\".") from None
    if isinstance(value, list):
        if len(value) == 1:
            return to_string(value[0])
        raise BindingError(f"{command}: Cannot convert 'System.Object[]' to the type 'System.String' required by "
                           f"parameter '{name}'. Specified method is not supported.")
    if isinstance(value, Hashtable):
        raise BindingError(f"{command}: Cannot convert a hashtable to the type 'System.String' required by "
                           f"parameter '{name}'.")
    if isinstance(value, PSObject):
        return to_string(value)
    return None if value is None else to_string(value)


def _to_bool(command: str, name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    raise BindingError(f"{command}: Cannot process argument transformation on parameter '{name}'. Cannot convert "
                       f"value \"{to_string(value)}\" to type \"System.Boolean\". Boolean parameters accept only "
                       "Boolean values and numbers, such as $True, $False, 1 or 0.")
