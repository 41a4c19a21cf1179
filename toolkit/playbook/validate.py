"""Validate a loaded playbook: typed model + cross-references, every problem reported at once with its position."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from toolkit.playbook import lint
from toolkit.playbook.diagnostics import Diagnostics, PlaybookError, Position
from toolkit.playbook.load import LoadedDocument, PathKey, load_playbook
from toolkit.playbook.model import EXCHANGE_ONLINE_SECTIONS, IMPERSONATION_ROLE, KNOWN_ROLES, SECTION_NOUNS, Playbook
from toolkit.render.quoting import INVISIBLE, find_unsafe_character


def validate_document(document: LoadedDocument, diagnostics: Diagnostics) -> Playbook | None:
    """Check a loaded document; return the model when it has no errors (warnings may remain)."""
    before = len(diagnostics.errors)
    _check_characters(document, diagnostics)
    playbook: Playbook | None = None
    try:
        playbook = Playbook.model_validate(document.data)
    except ValidationError as exc:
        report_model_errors(exc, document, diagnostics, Playbook)
    _check_references(document, diagnostics)
    if playbook is not None:
        lint.lint(playbook, document, diagnostics)
    return playbook if len(diagnostics.errors) == before else None


def load_document(path: str | Path, supplied_vars: Mapping[str, Any] | None, diagnostics: Diagnostics, *,
                  target: str | None = None,
                  placeholders: bool = False) -> tuple[Playbook | None, LoadedDocument | None]:
    """Load + validate one playbook file with one target's values: the model (None on errors) and the document
    (positions for later checks, None when unreadable)."""
    document = load_playbook(path, diagnostics, supplied_vars, target=target, placeholders=placeholders)
    if document is None:
        return None, None
    return validate_document(document, diagnostics), document


def load_and_validate(path: str | Path, supplied_vars: Mapping[str, Any] | None = None,
                      diagnostics: Diagnostics | None = None, *, target: str | None = None,
                      placeholders: bool = False) -> tuple[Playbook | None, Diagnostics]:
    """Load + validate one playbook file. Returns the model (None on errors) and all diagnostics."""
    diagnostics = diagnostics if diagnostics is not None else Diagnostics()
    playbook, _ = load_document(path, supplied_vars, diagnostics, target=target, placeholders=placeholders)
    return playbook, diagnostics


def require_document(path: str | Path, supplied_vars: Mapping[str, Any] | None = None, *,
                     target: str | None = None) -> tuple[Playbook, LoadedDocument, Diagnostics]:
    """Like :func:`load_document`, but raise :class:`PlaybookError` when there are errors."""
    diagnostics = Diagnostics()
    playbook, document = load_document(path, supplied_vars, diagnostics, target=target)
    if playbook is None or document is None:
        raise PlaybookError(diagnostics)
    return playbook, document, diagnostics


def require_playbook(path: str | Path, supplied_vars: Mapping[str, Any] | None = None, *,
                     target: str | None = None) -> tuple[Playbook, Diagnostics]:
    """Like :func:`load_and_validate`, but raise :class:`PlaybookError` when there are errors."""
    playbook, _, diagnostics = require_document(path, supplied_vars, target=target)
    return playbook, diagnostics


def _walk_strings(value: Any, path: PathKey) -> Iterator[tuple[PathKey, str]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _walk_strings(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _walk_strings(child, (*path, index))
    elif isinstance(value, str):
        yield path, value


def _check_characters(document: LoadedDocument, diagnostics: Diagnostics) -> None:
    for path, text in _walk_strings(document.data, ()):
        found = find_unsafe_character(text)
        if found is not None and text[found[0]] in INVISIBLE:
            shown = text.encode("unicode_escape").decode()
            diagnostics.error(
                "invisible-character", f"value contains the invisible character {found[1]} at character "
                f"{found[0] + 1} (shown escaped: {shown[:80]})", document.file, document.positions.of_value(path),
                "remove it: bidirectional controls and zero-width characters make a script read differently from "
                "what runs (\"Trojan Source\")")
        elif found is not None:
            diagnostics.error(
                "control-character", f"value contains the control character {found[1]}", document.file,
                document.positions.of_value(path),
                "values are written into PowerShell and may not contain control characters (line breaks, tabs, NUL)")


def _model_at(path: PathKey, root: type[BaseModel], data: Any = None) -> type[BaseModel] | None:
    """The pydantic model that describes the mapping at ``path`` (for did-you-mean on unknown keys); of a union of
    models (target kinds), the one the data's ``kind`` names."""
    model: type[BaseModel] | None = root
    parts = list(path)
    index = 0
    while index < len(parts) and model is not None:
        part = parts[index]
        index += 1
        data = _child(data, part)
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        if _is_mapping(field.annotation):
            if index < len(parts):
                data = _child(data, parts[index])
            index += 1  # the next part is a user's key (e.g. a target name), not a field
        model = _inner_model(field.annotation, data)
    return model


def _child(data: Any, part: str | int) -> Any:
    if isinstance(data, dict):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return data[part]
    return None


def _is_mapping(annotation: Any) -> bool:
    if typing.get_origin(annotation) is dict:
        return True
    return any(_is_mapping(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def _inner_model(annotation: Any, data: Any = None) -> type[BaseModel] | None:
    models = _models(annotation)
    kind = data.get("kind") if isinstance(data, dict) else None
    for model in models:
        field = model.model_fields.get("kind")
        if kind is not None and field is not None and kind in typing.get_args(field.annotation):
            return model
    return models[0] if models else None


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def _where(path: PathKey, root: type[BaseModel] = Playbook) -> str:
    """'role group #2' style description of the object at a path."""
    if len(path) >= 2 and path[0] in SECTION_NOUNS and isinstance(path[1], int):
        return f"{SECTION_NOUNS[str(path[0])]} #{path[1] + 1}"
    if len(path) >= 2 and path[0] == "vars":
        return f"variable {path[1]!r}"
    if len(path) >= 2 and path[0] == "targets":
        return f"target {path[1]!r}"
    if len(path) >= 4 and path[0] == "groups" and path[2] == "targets":
        return f"target {path[3]!r} of group {path[1]!r}"
    if len(path) >= 3 and path[0] == "groups":
        return f"the {path[2]} of group {path[1]!r}"
    return "the playbook" if root is Playbook else "the inventory"


def report_model_errors(exc: ValidationError, document: LoadedDocument, diagnostics: Diagnostics,
                        root: type[BaseModel], *, validated: Any = None,
                        relocate: Callable[[PathKey], PathKey] | None = None, partial: bool = False) -> None:
    """Turn pydantic's errors into positioned diagnostics (used for playbooks and inventories). ``validated``: the
    data the model saw, when it is not the document's own (an inventory's targets with their group's defaults
    merged in); ``relocate`` maps a path in it to where the value is written in the document."""
    for error in exc.errors():
        if partial and error["type"] == "missing":
            continue  # ``partial``: settings checked on their own (a group's defaults), not a whole target
        _report_model_error(error, document, diagnostics, root, validated, relocate)


# Hints for a missing key that say more than "add it": (model, key) → hint ({key}, {name}: the mapping's name).
_MISSING_HINTS = {
    ("ExchangeOnlineTargetSpec", "tenant"): "add 'tenant: …' here (the tenant id or its initial domain), or name the "
                                            "target by its initial domain ('{name}.onmicrosoft.com:'): that name is "
                                            "then its tenant",
}


def _report_model_error(error: Mapping[str, Any], document: LoadedDocument, diagnostics: Diagnostics,
                        root: type[BaseModel] = Playbook, validated: Any = None,
                        relocate: Callable[[PathKey], PathKey] | None = None) -> None:
    seen = document.data if validated is None else validated
    path: PathKey = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "list["))))
    # pydantic adds union branch names (e.g. 'str', 'list[str]') to the location; drop anything not in the data.
    checked = path = _existing_prefix(seen, path, error["type"])
    if relocate is not None:
        path = _existing_prefix(document.data, relocate(checked), error["type"])
    kind, file, positions = error["type"], document.file, document.positions
    if any(path[:len(u)] == u for u in document.unresolved):
        return
    if kind in ("extra_forbidden", "missing") and checked and (not path or path[-1] != checked[-1]):
        path = (*path, checked[-1])  # the key belongs to a mapping written empty (`name:` with nothing under it)
    if kind == "extra_forbidden":
        key = str(path[-1])
        model = _model_at(checked[:-1], root, seen)
        choices = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(key, choices, n=1)
        hint = f"did you mean {close[0]!r}?" if close else ("allowed keys: " + ", ".join(choices) if choices else "")
        diagnostics.error("unknown-key", f"unknown key {key!r} in {_where(path, root)}", file, positions.of_key(path), hint)
    elif kind == "missing":
        key = str(path[-1])
        model = _model_at(checked[:-1], root, seen)
        hint = _MISSING_HINTS.get((model.__name__ if model else "", key), "add '{key}: …' here").format(
            key=key, name=path[-2] if len(path) > 1 else "")
        diagnostics.error("missing-key", f"missing required key {key!r} in {_where(path, root)}", file,
                          _value_position(document, path[:-1]), hint)
    elif kind == "exkit":
        context = error.get("ctx") or {}
        position = positions.of_key(path) if error["loc"][-1:] == ("[key]",) else positions.of_value(path)
        offset = context.get("offset")
        if offset is not None:
            position = _offset_position(document, path, position, int(offset))
        diagnostics.error("invalid-value", str(context.get("message", error["msg"])), file, position,
                          str(context.get("hint", "")))
    elif kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected", "")
        shown = _describe_input(error["input"], secret=_is_secret(path))
        diagnostics.error("invalid-value", f"{_describe_key(path, root)} must be {expected}, not {shown}",
                          file, positions.of_value(path), f"use {expected}")
    elif kind == "too_short":
        diagnostics.error("empty-list", f"{_describe_key(path, root)} needs at least one entry", file,
                          positions.of_value(path), "list at least one value")
    else:
        message = error["msg"]
        expected = {"string_type": "text", "bool_type": "true or false", "bool_parsing": "true or false",
                    "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
                    "model_attributes_type": "a mapping",
                    "int_type": "a whole number", "int_parsing": "a whole number"}.get(kind)
        if expected:
            message = (f"{_describe_key(path, root)} must be {expected}, not "
                       f"{_describe_input(error.get('input'), secret=_is_secret(path))}")
        diagnostics.error("wrong-type", message, file, _value_position(document, path), _type_hint(kind))


def _existing_prefix(data: Any, path: PathKey, kind: str) -> PathKey:
    """The part of an error location that exists in the data (pydantic adds union tags and branch names)."""
    out: list[str | int] = []
    node = data
    for index, part in enumerate(path):
        last = index == len(path) - 1
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif last and kind in ("missing", "extra_forbidden") and isinstance(node, dict) and isinstance(part, str):
            out.append(part)
        elif not isinstance(node, (dict, list)):
            break
    return tuple(out)


def _describe_key(path: PathKey, root: type[BaseModel] = Playbook) -> str:
    names = [str(p) for p in path if isinstance(p, str)]
    if (len(path) == 2 and path[0] == "targets") or (len(path) == 4 and path[0] == "groups" and path[2] == "targets"):
        return _where(path, root)  # the target itself
    return f"'{names[-1]}' in {_where(path, root)}" if names else _where((), root)


def _value_position(document: LoadedDocument, path: PathKey) -> Position:
    """Where the value at ``path`` is written; for a key written with nothing after it, the key (the empty value's
    own mark is where the next line starts)."""
    node: Any = document.data
    for part in path:
        node = _child(node, part)
    if node is None and tuple(path) in document.positions.keys:
        return document.positions.of_key(path)
    return document.positions.of_value(path)


_SECRET_WORDS = ("password", "secret", "token", "key", "credential")


def _is_secret(path: PathKey) -> bool:
    """A key whose value may be a secret (password, client_secret, cert_key_pem…): its value is never echoed."""
    return any(isinstance(part, str) and any(word in part.lower() for word in _SECRET_WORDS) for part in path[-1:])


def _describe_input(value: Any, secret: bool = False) -> str:
    if secret and value is not None:
        return f"a value of type {type(value).__name__} (not shown: this key may hold a secret)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    return repr(value)


def _type_hint(kind: str) -> str:
    return {
        "bool_type": "write true or false without quotes", "bool_parsing": "write true or false without quotes",
        "list_type": "write a YAML list: one '- item' per line, or [a, b]",
        "dict_type": "write key: value pairs indented under this key", "model_type": "write key: value pairs",
        "model_attributes_type": "write key: value pairs indented under this key",
        "string_type": "quote the value to make it text",
    }.get(kind, "")


def _offset_position(document: LoadedDocument, path: PathKey, position: Position, offset: int) -> Position:
    """Point into a one-line scalar: the column of character ``offset`` of its value."""
    line_text = document.source.splitlines()[position.line - 1] if document.source else ""
    rest = line_text[position.column - 1:]
    if rest.startswith(("|", ">")):
        return position
    shift = 1 if path in document.positions.quoted else 0
    return Position(position.line, position.column + shift + offset)


def _entries(data: Mapping[str, Any], section: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = data.get(section)
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield index, item


def _check_references(document: LoadedDocument, diagnostics: Diagnostics) -> None:
    data, file, positions = document.data, document.file, document.positions
    if not isinstance(data, dict):
        return
    declared: dict[str, dict[str, int]] = {}
    for section in ("scopes", "role_groups", "role_assignments", "applications", "application_role_assignments"):
        seen: dict[str, int] = {}
        for index, item in _entries(data, section):
            name = item.get("name")
            if section == "role_assignments" and not name:
                role, who = item.get("role"), item.get("user") or item.get("security_group") or item.get("role_group")
                name = f"{role}-{who}" if isinstance(role, str) and isinstance(who, str) else None
            if section == "application_role_assignments" and not name:
                role, app = item.get("role"), item.get("application")
                name = (f"{role.removeprefix('Application ')}-{app}" if isinstance(role, str) and isinstance(app, str)
                        else None)
            if not isinstance(name, str):
                continue
            if name.lower() in seen:
                diagnostics.error(
                    "duplicate-name", f"duplicate {SECTION_NOUNS[section]} name {name!r}", file,
                    positions.of_value((section, index, "name") if "name" in item else (section, index)),
                    f"already declared as {SECTION_NOUNS[section]} #{seen[name.lower()] + 1}; names must be unique "
                    "(Exchange compares them case-insensitively)")
            else:
                seen[name.lower()] = index
        declared[section] = seen
    _check_platform(document, diagnostics)
    application_names = [a["name"] for _, a in _entries(data, "applications") if isinstance(a.get("name"), str)]
    for section in ("application_role_assignments", "application_access_policies"):
        for index, item in _entries(data, section):
            _check_reference(item, "application", declared["applications"], application_names, "application",
                             (section, index), document, diagnostics)
            if section == "application_role_assignments":
                _check_reference(item, "scope", declared["scopes"],
                                 [s["name"] for _, s in _entries(data, "scopes") if isinstance(s.get("name"), str)],
                                 "management scope", (section, index), document, diagnostics)
    scope_names = [s["name"] for _, s in _entries(data, "scopes") if isinstance(s.get("name"), str)]
    group_names = [g["name"] for _, g in _entries(data, "role_groups") if isinstance(g.get("name"), str)]
    for section in ("role_groups", "role_assignments"):
        for index, item in _entries(data, section):
            _check_reference(item, "scope", declared["scopes"], scope_names, "management scope",
                             (section, index), document, diagnostics)
            if section == "role_assignments":
                _check_reference(item, "role_group", declared["role_groups"], group_names, "role group",
                                 (section, index), document, diagnostics)
            roles = item.get("roles") if section == "role_groups" else [item.get("role")]
            roles = [roles] if isinstance(roles, str) else roles
            for role_index, role in enumerate(roles if isinstance(roles, list) else []):
                role_path = (section, index, "roles", role_index) if section == "role_groups" else (
                    section, index, "role")
                if data.get("platform") != "exchange-online":
                    _check_role(role, role_path, document, diagnostics)
            members = item.get("members")
            if isinstance(members, list):
                lowered = [m.lower() for m in members if isinstance(m, str)]
                for member_index, member in enumerate(members):
                    if isinstance(member, str) and lowered.index(member.lower()) != member_index:
                        diagnostics.warning("duplicate-member", f"member {member!r} is listed twice", file,
                                            positions.of_value((section, index, "members", member_index)),
                                            "remove the repeated entry")


RETIREMENT_HINT = """use RBAC for Applications instead (or run: exkit migrate PLAYBOOK):
        applications:
          - {name: Room booking app, app_id: <application (client) id>, object_id: <enterprise app object id>}
        application_role_assignments:
          - {application: Room booking app, role: Application Calendars.ReadWrite, scope: <a scope with rooms: true>}"""


def _check_platform(document: LoadedDocument, diagnostics: Diagnostics) -> None:
    """Exchange Online has no ApplicationImpersonation (removed February 2025) and no OUs; the RBAC-for-Applications
    sections exist only there."""
    data, file, positions = document.data, document.file, document.positions
    online = data.get("platform") == "exchange-online"
    if not online:
        for section in EXCHANGE_ONLINE_SECTIONS:
            if data.get(section):
                diagnostics.error("exchange-online-only", f"'{section}' exists only in Exchange Online", file,
                                  positions.of_key((section,)), "add 'platform: exchange-online' to the playbook")
        return
    for index, item in _entries(data, "role_groups"):
        roles = item.get("roles")
        roles = [roles] if isinstance(roles, str) else roles if isinstance(roles, list) else []
        for role_index, role in enumerate(roles):
            if isinstance(role, str) and role.lower() == IMPERSONATION_ROLE.lower():
                _retired(document, diagnostics, ("role_groups", index, "roles", role_index))
    for index, item in _entries(data, "role_assignments"):
        if isinstance(item.get("role"), str) and item["role"].lower() == IMPERSONATION_ROLE.lower():
            _retired(document, diagnostics, ("role_assignments", index, "role"))
    for index, item in _entries(data, "scopes"):
        if "recipient_root" in item:
            diagnostics.error("no-recipient-root-online", "Exchange Online has no organizational units: "
                              "recipient_root cannot be used", file, positions.of_key(("scopes", index,
                                                                                        "recipient_root")),
                              "limit the scope with its filter (rooms: true, office, custom_attributes, member_of)")


def _retired(document: LoadedDocument, diagnostics: Diagnostics, path: PathKey) -> None:
    diagnostics.error(
        "impersonation-retired",
        "ApplicationImpersonation was removed from Exchange Online in February 2025 (message center MC718754); "
        "a room-booking app there uses an Entra app limited to rooms with RBAC for Applications",
        document.file, document.positions.of_value(path), RETIREMENT_HINT)


def _check_reference(item: Mapping[str, Any], key: str, declared: Mapping[str, int], names: list[str], noun: str,
                     path: PathKey, document: LoadedDocument, diagnostics: Diagnostics) -> None:
    value = item.get(key)
    if not isinstance(value, str) or value.lower() in declared:
        return
    close = difflib.get_close_matches(value, names, n=1)
    if close:
        hint = f"did you mean {close[0]!r}?"
    elif names:
        hint = f"declared {noun}s: " + ", ".join(repr(n) for n in names)
    else:
        hint = f"declare the {noun} in this playbook"
    diagnostics.error("unknown-reference", f"{_where(path)} refers to {noun} {value!r}, which is not declared",
                      document.file, document.positions.of_value((*path, key)), hint)


def _check_role(role: Any, path: PathKey, document: LoadedDocument, diagnostics: Diagnostics) -> None:
    if not isinstance(role, str) or role in KNOWN_ROLES:
        return
    close = difflib.get_close_matches(role, KNOWN_ROLES, n=1, cutoff=0.8)
    exact_case = next((r for r in KNOWN_ROLES if r.lower() == role.lower()), None)
    if exact_case or close:
        diagnostics.error("unknown-role", f"unknown management role {role!r}", document.file,
                          document.positions.of_value(path), f"did you mean {(exact_case or close[0])!r}?")
    else:
        diagnostics.warning("custom-role", f"{role!r} is not a built-in Exchange Server role", document.file,
                            document.positions.of_value(path),
                            "a custom role of that name must exist in the organisation before apply")
