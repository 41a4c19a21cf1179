""".NET members the sandbox interpreter knows: the few that exkit's WinRM bootstrap calls (read standard input,
decode Base64 and UTF-8, create and run a script block, build a PSCredential), with the semantics their
documentation gives. Anything else is outside the subset: the interpreter refuses it before the script runs.

Sources (learn.microsoft.com):
- Console.In / TextReader.ReadToEnd: /dotnet/api/system.console.in, /dotnet/api/system.io.textreader.readtoend
- String.Split(params char[]): /dotnet/api/system.string.split — splits on any of the characters, keeps empty
  entries; no characters given → white space.
- Convert.FromBase64String: /dotnet/api/system.convert.frombase64string — white space (space, tab, CR, LF) is
  ignored; a length (without it) not a multiple of 4, or any other non-Base64 character, is a FormatException.
- Encoding.UTF8 / Encoding.GetString: /dotnet/api/system.text.encoding.utf8 — the replacement fallback: invalid
  bytes become U+FFFD; GetString does not strip a byte-order mark.
- ScriptBlock.Create: /dotnet/api/system.management.automation.scriptblock.create — parses the text (a parse error
  is thrown there, before anything runs); ``& $block`` runs it in a child scope (about_Operators, about_Scopes).
- NetworkCredential(string, string).SecurePassword: /dotnet/api/system.net.networkcredential.securepassword.
- PSCredential(string, SecureString): /dotnet/api/system.management.automation.pscredential.-ctor — an empty
  user name is an argument error; the password must be a SecureString (a string is not converted).
- A .NET exception from a method call surfaces in PowerShell as ``Exception calling "Name" with "N" argument(s):
  "message"`` (a MethodInvocationException; about_Try_Catch_Finally).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from toolkit.sandbox.values import PSObject, to_string

# Type names as written in a type literal, lower case, without the 'System.' prefix PowerShell lets one omit.
_ALIASES = {"scriptblock": "system.management.automation.scriptblock",
            "pscredential": "system.management.automation.pscredential"}
KNOWN_TYPES = {"system.console", "system.convert", "system.text.encoding", "system.management.automation.scriptblock",
               "system.management.automation.pscredential", "system.net.networkcredential"}


class DotNetError(Exception):
    """A .NET exception thrown by a member: PowerShell wraps it as a terminating MethodInvocationException."""

    def __init__(self, message: str, category: str = "NotSpecified") -> None:
        super().__init__(message)
        self.message = message
        self.category = category


def type_name(written: str) -> str | None:
    """The full type name a type literal means, or None when the sandbox does not know it."""
    name = written.strip("[]").strip().lower()
    name = _ALIASES.get(name, name)
    if name not in KNOWN_TYPES and "system." + name in KNOWN_TYPES:
        name = "system." + name
    return name if name in KNOWN_TYPES else None


@dataclass
class TextReader:
    """Console.In: the process's standard input (on WinRM, what the client sent with Send)."""

    text: str
    position: int = 0

    def __str__(self) -> str:
        return "System.IO.SyncTextReader"


@dataclass(frozen=True)
class Encoding:
    name: str

    def __str__(self) -> str:
        return "System.Text.UTF8Encoding"


class SecureString:
    """A password that prints as its type name, never as its text (as PowerShell shows a SecureString)."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "System.Security.SecureString"

    __repr__ = __str__


@dataclass
class NetworkCredential:
    user: str
    password: SecureString = field(repr=False)

    def __str__(self) -> str:
        return "System.Net.NetworkCredential"


@dataclass
class ScriptBlock:
    text: str
    script: Any  # the checked script (interpreter.Script), checked against the subset when created

    def __str__(self) -> str:
        return self.text


def static_member(full_type: str, name: str, stdin: TextReader) -> Any:
    key = (full_type, name.lower())
    if key == ("system.console", "in"):
        return stdin
    if key == ("system.text.encoding", "utf8"):
        return Encoding("utf-8")
    raise DotNetError(f"The property '{name}' cannot be found on type [{full_type}].", "InvalidOperation")


def static_call(full_type: str, name: str, arguments: list[Any], create_script_block: Any) -> Any:
    key = (full_type, name.lower())
    if key == ("system.convert", "frombase64string"):
        _arity(name, arguments, 1)
        return from_base64(arguments[0])
    if key == ("system.management.automation.scriptblock", "create"):
        _arity(name, arguments, 1)
        return create_script_block(_string(arguments[0]))
    if key == ("system.net.networkcredential", "new"):
        _arity(name, arguments, 2)
        return NetworkCredential(_string(arguments[0]), SecureString(_string(arguments[1])))
    if key == ("system.management.automation.pscredential", "new"):
        _arity(name, arguments, 2)
        user, password = arguments
        if not isinstance(password, SecureString):
            # PowerShell does not convert a string to a SecureString; the value is not repeated here (a password).
            raise DotNetError('Cannot convert argument "password" for "PSCredential" to type '
                              '"System.Security.SecureString".', "MethodException")
        if not _string(user):
            raise DotNetError(_calling("new", 2, "Cannot process argument because the value of argument "
                                                 '"userName" is not valid.'), "MethodInvocationException")
        return PSObject("System.Management.Automation.PSCredential", {"UserName": _string(user),
                                                                       "Password": password})
    raise DotNetError(f"Method invocation failed because [{full_type}] does not contain a method named "
                      f"'{name}'.", "InvalidOperation")


def instance_member(target: Any, name: str) -> tuple[bool, Any]:
    """(found, value) of a .NET property of a value this module made."""
    if isinstance(target, NetworkCredential) and name.lower() == "securepassword":
        return True, target.password
    if isinstance(target, NetworkCredential) and name.lower() == "username":
        return True, target.user
    return False, None


def instance_call(target: Any, name: str, arguments: list[Any]) -> Any:
    lowered = name.lower()
    if isinstance(target, TextReader) and lowered == "readtoend":
        _arity(name, arguments, 0)
        rest, target.position = target.text[target.position:], len(target.text)
        return rest
    if isinstance(target, Encoding) and lowered == "getstring":
        _arity(name, arguments, 1)
        data = arguments[0]
        if not isinstance(data, (bytes, bytearray)):
            raise DotNetError('Cannot convert argument "bytes" to type "System.Byte[]".', "MethodException")
        return bytes(data).decode("utf-8", "replace")
    if isinstance(target, str) and lowered == "split":
        separators = "".join(_string(a) for a in arguments)
        if not separators:
            return target.split()
        return re.split("[" + re.escape(separators) + "]", target)
    typename = type(target).__name__ if not isinstance(target, PSObject) else target.type_name
    raise DotNetError(f"Method invocation failed because [{typename}] does not contain a method named '{name}'.",
                      "InvalidOperation")


def from_base64(value: Any) -> bytes:
    text = re.sub(r"[ \t\r\n]", "", _string(value))
    if len(text) % 4:
        raise DotNetError(_calling("FromBase64String", 1, "Invalid length for a Base-64 char array or string."),
                          "FormatException")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise DotNetError(_calling("FromBase64String", 1, "The input is not a valid Base-64 string as it contains "
                                   "a non-base 64 character, more than two padding characters, or an illegal "
                                   "character among the padding characters."), "FormatException") from None


def _calling(name: str, count: int, message: str) -> str:
    return f'Exception calling "{name}" with "{count}" argument(s): "{message}"'


def _arity(name: str, arguments: list[Any], count: int) -> None:
    if len(arguments) != count:
        raise DotNetError(f'Cannot find an overload for "{name}" and the argument count: "{len(arguments)}".',
                          "MethodException")


def _string(value: Any) -> str:
    return to_string(value)
