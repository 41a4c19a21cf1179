"""export: write a playbook for what a target already has around a principal or a role.

Applied to the same target, the exported playbook plans as a no-op: filters are written as Exchange stores them,
members as their primary SMTP addresses, and each role group's write scope as found. Comments say what was found.
"""

from __future__ import annotations

import io
import re

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from toolkit.errors import ExkitError
from toolkit.playbook.model import IMPERSONATION_ROLE
from toolkit.verify.snapshot import Snapshot


class ExportError(ExkitError):
    pass


def export_playbook(snapshot: Snapshot, platform: str, *, principal: str | None = None, role: str | None = None,
                    target: str = "") -> str:
    if (principal is None) == (role is None):
        raise ExportError("choose what to export: --principal NAME or --role ROLE")
    wanted = (principal or role or "").lower()
    data = CommentedMap()
    data["exkit"] = 1
    if platform != "exchange-server":
        data["platform"] = platform
    slug = re.sub(r"[^a-z0-9]+", "-", wanted).strip("-") or "export"
    data["name"] = f"export-{slug}"
    data["description"] = (f"Exported from target {target} around "
                           + (f"principal {principal}" if principal else f"role {role}"))
    used_scopes: list[str] = []
    base_keys = len(data)
    if platform == "exchange-online":
        _online(snapshot, data, wanted, principal is not None, used_scopes)
    else:
        _server(snapshot, data, wanted, principal is not None, used_scopes)
    if len(data) == base_keys:
        raise ExportError(f"nothing found for {principal or role!r} on target {target}")
    scopes = CommentedSeq()
    for name in dict.fromkeys(used_scopes):
        found = snapshot.scopes.get(name.lower())
        if found is None:
            continue
        entry = CommentedMap([("name", found["name"]), ("filter", found.get("filter") or "")])
        if found.get("recipient_root"):  # the playbook names the OU by DN; Exchange prints its canonical name
            entry["recipient_root"] = found.get("recipient_root_dn") or found["recipient_root"]
        scopes.append(entry)
    if scopes:
        data.insert(base_keys, "scopes", scopes)
        data.yaml_set_comment_before_after_key("scopes", before="found: the management scopes these grants use, "
                                                                "with their filters as Exchange stores them")
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 120
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


def _server(snapshot: Snapshot, data: CommentedMap, wanted: str, by_principal: bool, used: list[str]) -> None:
    groups = CommentedSeq()
    direct = CommentedSeq()
    principals: set[str] = set()
    for group in snapshot.groups.values():
        assignments = [a for a in snapshot.assignments if str(a.get("assignee", "")).lower() == group["name"].lower()]
        roles = sorted({str(a["role"]) for a in assignments})
        if (wanted not in group["members"]) if by_principal else (wanted not in {r.lower() for r in roles}):
            continue
        entry = CommentedMap([("name", group["name"])])
        if group.get("description"):
            entry["description"] = group["description"]
        entry["roles"] = roles
        entry["members"] = list(group["members"])
        principals |= set(group["members"])
        scopes = sorted({str(a.get("scope") or "") for a in assignments})
        if len(scopes) == 1 and scopes[0]:
            entry["scope"] = scopes[0]
            used.append(scopes[0])
        elif len(scopes) == 1:
            if IMPERSONATION_ROLE in roles:
                entry["all_mailboxes"] = True
            entry.yaml_add_eol_comment("found: organisation-wide (no write scope)", "roles")
        else:
            entry.yaml_add_eol_comment(f"found: mixed write scopes {', '.join(s or 'Organization' for s in scopes)}; "
                                       "exkit gives every role of a group one scope", "roles")
        groups.append(entry)
    for assignment in snapshot.assignments:
        if assignment.get("assignee_type") != "User" or not assignment.get("user"):
            continue
        user = str(assignment["user"]).lower()
        if (user != wanted) if by_principal else (str(assignment.get("role", "")).lower() != wanted):
            continue
        entry = CommentedMap([("name", assignment["name"]), ("role", assignment["role"]), ("user", user)])
        principals.add(user)
        if assignment.get("scope"):
            entry["scope"] = assignment["scope"]
            used.append(str(assignment["scope"]))
        elif assignment.get("role") == IMPERSONATION_ROLE:
            entry["all_mailboxes"] = True
            entry.yaml_add_eol_comment("found: organisation-wide (no write scope)", "role")
        direct.append(entry)
    if groups:
        data["role_groups"] = groups
        data.yaml_set_comment_before_after_key("role_groups", before="found: role groups "
                                               + ("the principal is a member of" if by_principal else "holding the role"))
    if direct:
        data["role_assignments"] = direct
        data.yaml_set_comment_before_after_key("role_assignments", before="found: direct role assignments")
    if by_principal:
        principals.add(wanted)
    delegates: dict[str, list[str]] = {}
    for permission in snapshot.permissions:
        user = str(permission.get("user") or "").lower()
        if user in principals and "FullAccess" in str(permission.get("rights")):
            delegates.setdefault(user, []).append(str(permission["mailbox"]).lower())
    if delegates:
        data["delegates"] = CommentedSeq(CommentedMap([("user", u), ("mailboxes", sorted(m))])
                                         for u, m in sorted(delegates.items()))
        data.yaml_set_comment_before_after_key("delegates", before="found: explicit FullAccess grants (delegate "
                                                                   "access) held by these principals")


def _online(snapshot: Snapshot, data: CommentedMap, wanted: str, by_principal: bool, used: list[str]) -> None:
    applications = CommentedSeq()
    grants = CommentedSeq()
    for principal in snapshot.principals:
        names = {str(principal.get(k, "")).lower() for k in ("app_id", "object_id", "display_name")}
        assignments = [a for a in snapshot.assignments  # by RoleAssignee: the service principal's object id
                       if str(a.get("assignee_id", "")).lower() == str(principal.get("object_id", "")).lower()]
        if (wanted not in names) if by_principal else not any(
                str(a.get("role", "")).lower() == wanted for a in assignments):
            continue
        name = str(principal.get("display_name"))
        applications.append(CommentedMap([("name", name), ("app_id", principal["app_id"]),
                                          ("object_id", principal["object_id"])]))
        for assignment in assignments:
            entry = CommentedMap([("name", assignment["name"]), ("application", name), ("role", assignment["role"])])
            if assignment.get("resource_scope"):
                entry["scope"] = assignment["resource_scope"]
                used.append(str(assignment["resource_scope"]))
            else:
                entry["all_mailboxes"] = True
            grants.append(entry)
    if applications:
        data["applications"] = applications
        data.yaml_set_comment_before_after_key("applications", before="found: service principals registered in "
                                                                      "Exchange Online")
    if grants:
        data["application_role_assignments"] = grants
