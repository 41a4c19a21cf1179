"""exkit migrate: an Exchange Server playbook (ApplicationImpersonation) → its Exchange Online equivalent.

ApplicationImpersonation was removed from Exchange Online in February 2025. The equivalent is an Entra application
registered as a service principal with 'Application Calendars.ReadWrite' limited by the same management scope
(RBAC for Applications). The YAML is edited as a round trip, so comments and layout are kept; every change carries a
comment saying what was done.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from toolkit.errors import ExkitError
from toolkit.playbook.bounded_yaml import yaml_loader
from toolkit.playbook.model import IMPERSONATION_ROLE

APPLICATION_NAME = "Room booking app"
# What replaces ApplicationImpersonation, by the API the product uses: Microsoft Graph calendars (the default), or EWS,
# which Exchange Online blocks from 1 October 2026 unless allow-listed and turns off on 1 April 2027 (MC1227454);
# Microsoft's Export-RBAC script maps EWS apps to 'Application EWS.AccessAsApp'.
APPLICATION_ROLES = {"graph": "Application Calendars.ReadWrite", "ews": "Application EWS.AccessAsApp"}
APPLICATION_ROLE = APPLICATION_ROLES["graph"]
EWS_WARNING = ("EWS in Exchange Online is blocked from 1 October 2026 unless the tenant allow-lists the app, and is "
               "switched off on 1 April 2027: move the product to Microsoft Graph (exkit migrate --api graph)")
PLACEHOLDER_APP_ID = "00000000-0000-0000-0000-000000000001"
PLACEHOLDER_OBJECT_ID = "00000000-0000-0000-0000-000000000002"


class MigrateError(ExkitError):
    pass


def _yaml() -> YAML:
    yaml = yaml_loader()  # bounded: the playbook may come from anyone
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 120
    return yaml


def _is_impersonation(role: Any) -> bool:
    return isinstance(role, str) and role.lower() == IMPERSONATION_ROLE.lower()


def migrate_text(text: str, api: str = "graph") -> str:
    """``api``: what the product calls — ``graph`` (Calendars.ReadWrite) or ``ews`` (EWS.AccessAsApp)."""
    if api not in APPLICATION_ROLES:
        raise MigrateError(f"unknown API {api!r}: choose graph or ews")
    role = APPLICATION_ROLES[api]
    yaml = _yaml()
    data = yaml.load(text)
    if not isinstance(data, CommentedMap):
        raise MigrateError("the playbook is not a YAML mapping")
    scopes_used: list[str | None] = []
    replaced: list[str] = []

    groups = data.get("role_groups")
    if isinstance(groups, CommentedSeq):
        for index in reversed(range(len(groups))):
            group = groups[index]
            roles = group.get("roles") if isinstance(group, CommentedMap) else None
            if not isinstance(roles, list) or not any(_is_impersonation(r) for r in roles):
                continue
            scopes_used.append(group.get("scope"))
            replaced.append(f"role group {group.get('name')!r}")
            remaining = [r for r in roles if not _is_impersonation(r)]
            if remaining:
                for role_index in reversed(range(len(roles))):
                    if _is_impersonation(roles[role_index]):
                        del roles[role_index]
                group.yaml_set_comment_before_after_key(
                    "roles", before="exkit migrate: ApplicationImpersonation removed (retired in Exchange Online)",
                    indent=4)
            else:
                del groups[index]
        if not groups:
            del data["role_groups"]

    assignments = data.get("role_assignments")
    if isinstance(assignments, CommentedSeq):
        for index in reversed(range(len(assignments))):
            item = assignments[index]
            if isinstance(item, CommentedMap) and _is_impersonation(item.get("role")):
                scopes_used.append(item.get("scope"))
                replaced.append(f"role assignment {item.get('name') or item.get('user') or item.get('role_group')!r}")
                del assignments[index]
        if not assignments:
            del data["role_assignments"]

    scopes = data.get("scopes")
    if isinstance(scopes, CommentedSeq):
        for scope in scopes:
            if isinstance(scope, CommentedMap) and "recipient_root" in scope:
                del scope["recipient_root"]
                scope.yaml_add_eol_comment("exkit migrate: recipient_root dropped (Exchange Online has no OUs)",
                                           "name")

    position = list(data).index("exkit") + 1 if "exkit" in data else 0
    if "platform" in data:
        data["platform"] = "exchange-online"
    else:
        data.insert(position, "platform", "exchange-online")
    data.yaml_set_comment_before_after_key(
        "platform", before="exkit migrate: ApplicationImpersonation does not exist in Exchange Online (removed "
                           "February 2025);\nits equivalent is an Entra app limited to rooms with RBAC for "
                           "Applications.")

    if scopes_used:
        variables = data.get("vars")
        if not isinstance(variables, CommentedMap):
            variables = CommentedMap()
            data.insert(list(data).index("platform") + 1, "vars", variables)
        variables["app_id"] = PLACEHOLDER_APP_ID
        variables["sp_object_id"] = PLACEHOLDER_OBJECT_ID
        variables.yaml_add_eol_comment("replace: the app registration's application (client) id", "app_id")
        variables.yaml_add_eol_comment("replace: the enterprise application's (service principal's) object id",
                                       "sp_object_id")
        application = CommentedMap([("name", APPLICATION_NAME), ("app_id", "{{ app_id }}"),
                                    ("object_id", "{{ sp_object_id }}")])
        data["applications"] = CommentedSeq([application])
        data.yaml_set_comment_before_after_key(
            "applications", before=("exkit migrate: the room-booking product's Entra app, with the Graph application "
                                    "permission Calendars.ReadWrite" if api == "graph" else
                                    "exkit migrate: the room-booking product's Entra app, with the EWS application "
                                    "permission full_access_as_app.\nWARNING: " + EWS_WARNING)
            + "\n(and no tenant-wide admin consent for it, or the scope below restricts nothing)")
        granted = CommentedSeq()
        for scope in dict.fromkeys(scopes_used):
            entry = CommentedMap([("application", APPLICATION_NAME), ("role", role)])
            if scope:
                entry["scope"] = scope
            else:
                entry["all_mailboxes"] = True
            granted.append(entry)
        data["application_role_assignments"] = granted
        data.yaml_set_comment_before_after_key(
            "application_role_assignments", before="exkit migrate: replaces the ApplicationImpersonation of "
                                                   + ", ".join(reversed(replaced)))
    return _dump(yaml, data)


def _dump(yaml: YAML, data: Any) -> str:
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()
