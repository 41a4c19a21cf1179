"""verify: prove the effective result, not just that objects exist.

Pure functions from a playbook and a target's :class:`~toolkit.snapshot.Snapshot` to checks, each naming the object
at fault. Exchange Server: effective users of each grant are exactly the declared members, each assignment carries the
declared write scope, every scope previews rooms only, and the declared principals hold no other ApplicationImpersonation
or FullAccess grant. Exchange Online: the service principals and scoped assignments exist, and
Test-ServicePrincipalAuthorization says a sample room is in scope and a sample user mailbox is not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from toolkit import opath
from toolkit.boundary import Boundary, canonical_name, check_reach
from toolkit.playbook.model import IMPERSONATION_ROLE, Playbook
from toolkit.verify.overlap import MAILBOX_PERMISSIONS, OVERLAP
from toolkit.verify.snapshot import Snapshot, beyond_resources, count_types


PASS, FAIL, WARNING, NOT_CHECKED, INFO = "pass", "fail", "warning", "not checked", "info"


@dataclass(frozen=True)
class Check:
    """One finding. ``ok`` is False for a failure and for a check that could not be done ("not checked" is never a
    pass); warnings and information are ok. ``area`` says where it was read: exchange, or entra (Microsoft Graph)."""

    subject: str
    ok: bool
    message: str
    status: str = ""  # pass | fail | warning | not checked | info; by default pass or fail from ok
    area: str = "exchange"

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", PASS if self.ok else FAIL)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_summary(checks: list[Check]) -> str:
    """'3 passed, 1 failed' plus, when there are any, not checked / warnings / information."""
    counts = {status: sum(c.status == status for c in checks) for status in (PASS, FAIL, NOT_CHECKED, WARNING, INFO)}
    text = f"{counts[PASS]} passed, {counts[FAIL]} failed"
    for status, label in ((NOT_CHECKED, "not checked"), (WARNING, "warning(s)"), (INFO, "note(s)")):
        if counts[status]:
            text += f", {counts[status]} {label}"
    return text


def entra_outcome(checks: list[Check]) -> str | None:
    """The Entra check's outcome for -o json: fail, not checked, pass, or None where Entra was not read."""
    entra = [c for c in checks if c.area == "entra"]
    if not entra:
        return None
    for status in (FAIL, NOT_CHECKED):
        if any(c.status == status for c in entra):
            return status
    return PASS


def _names(items: list[str]) -> str:
    return ", ".join(sorted(items)) or "(none)"


def _canonical(text: str) -> str:
    try:
        return opath.to_text(opath.parse(text))
    except opath.OpathError:
        return text


def verify(playbook: Playbook, snapshot: Snapshot) -> list[Check]:
    checks: list[Check] = []
    checks += _scopes(playbook, snapshot)
    declared_assignments: set[str] = set()
    principals: set[str] = set()
    for group in playbook.role_groups:
        checks += _role_group(group, playbook, snapshot, declared_assignments)
        principals |= {m.lower() for m in group.members}
    for assignment in playbook.role_assignments:
        checks += _role_assignment(assignment, playbook, snapshot, declared_assignments)
        if assignment.user:
            principals.add(assignment.user.lower())
    checks += _other_grants(playbook, snapshot, declared_assignments, principals)
    checks += effective_access(playbook, snapshot)
    checks += _applications(playbook, snapshot)
    checks += entra_checks(playbook, snapshot)
    return checks


MAILBOX_RIGHTS = (IMPERSONATION_ROLE, "FullAccess")


def effective_access(playbook: Playbook, snapshot: Snapshot) -> list[Check]:
    """Effective access now, from the access evaluator (toolkit/verify/access.py, the same code as scope preview and
    the access impact): every mailbox each declared principal reaches through any grant it holds — declared or not,
    direct or through groups, exclusive scopes taken into account. A mailbox outside the playbook's intent (its
    scopes' rooms / equipment) fails, naming the grant. Exchange Server (ApplicationImpersonation, FullAccess);
    Exchange Online apps are proven by Test-ServicePrincipalAuthorization and the Entra check."""
    from toolkit.verify import access, impact

    if playbook.platform != "exchange-server" or not snapshot.recipients:
        return []
    org = access.from_snapshot(snapshot)
    declared = impact.principals_of(org, playbook)
    reach, principals = access.evaluate(org, declared)
    intent = impact.intent_of(playbook)
    types = {r.address: r.type for r in org.recipients}
    recipients = {r.address: r for r in org.recipients}
    checks = []
    for (key, right), mailboxes in sorted(reach.items()):
        if key not in declared or right not in MAILBOX_RIGHTS:
            continue
        subject = f"principal {principals[key].label!r}"
        outside = sorted(m for m in mailboxes if intent.outside(recipients.get(m)))
        counts = count_types([{"type": types.get(m)} for m in (outside or mailboxes)])
        kinds = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no mailbox"
        if outside:
            grants = "; ".join(dict.fromkeys(reason for m in outside for reason in mailboxes[m]))
            checks.append(Check(subject, False, f"{right} reaches {kinds} outside the playbook's intent (e.g. "
                                                f"{', '.join(outside[:3])}) through {grants}"))
        else:
            checks.append(Check(subject, True, f"{right} reaches {kinds}, nothing else"))
    return checks


def _scopes(playbook: Playbook, snapshot: Snapshot) -> list[Check]:
    checks = []
    for scope in playbook.scopes:
        subject = f"scope {scope.name!r}"
        found = snapshot.scopes.get(scope.name.lower())
        if found is None:
            checks.append(Check(subject, False, f"management scope {scope.name!r} does not exist"))
            continue
        wanted = opath.to_text(scope.filter_tree())
        if _canonical(str(found.get("filter", ""))) != wanted:
            checks.append(Check(subject, False, f"filter is {_canonical(str(found.get('filter', '')))!r}, declared "
                                                f"{wanted!r}"))
        root = str(found.get("recipient_root") or "")
        # Exchange prints RecipientRoot as the OU's canonical name; the playbook names it by DN.
        if canonical_name(root).lower() != canonical_name(scope.recipient_root or "").lower():
            checks.append(Check(subject, False, f"recipient root is {root or '(none)'!r}, declared "
                                                f"{scope.recipient_root or '(none)'!r}"))
        recipients = snapshot.live_previews.get(scope.name.lower(), [])
        outside = beyond_resources(recipients)
        if outside:
            counts = count_types(outside)
            sample = ", ".join(str(r.get("name")) for r in outside[:3])
            checks.append(Check(subject, False, "matches recipients that are not rooms: "
                                + ", ".join(f"{n} {k}" for k, n in counts.items()) + f" (e.g. {sample})"))
        else:
            checks.append(Check(subject, True, f"matches {len(recipients)} recipient(s), rooms and equipment only"))
    return checks


def _effective_users(snapshot: Snapshot, assignment_names: set[str]) -> set[str]:
    return {str(e.get("user") or e.get("user_name")).lower() for e in snapshot.effective
            if str(e.get("assignment", "")).lower() in assignment_names}


def _role_group(group: Any, playbook: Playbook, snapshot: Snapshot, declared: set[str]) -> list[Check]:
    subject = f"role group {group.name!r}"
    found = snapshot.groups.get(group.name.lower())
    if found is None:
        return [Check(subject, False, f"role group {group.name!r} does not exist")]
    checks = []
    assignments = [a for a in snapshot.assignments if str(a.get("assignee", "")).lower() == group.name.lower()]
    declared |= {str(a["name"]).lower() for a in assignments}
    wanted_members = {m.lower() for m in group.members}
    members = set(found["members"])
    if members != wanted_members:
        extra, missing = members - wanted_members, wanted_members - members
        text = []
        if extra:
            text.append(f"has members the playbook does not declare: {_names(list(extra))}")
        if missing:
            text.append(f"lacks declared members: {_names(list(missing))}")
        checks.append(Check(subject, False, "; ".join(text)))
    scope = playbook.scope_named(group.scope)
    for role in group.roles:
        of_role = [a for a in assignments if str(a.get("role", "")).lower() == role.lower()]
        if not of_role:
            checks.append(Check(subject, False, f"has no {role} assignment"))
            continue
        for assignment in of_role:
            have = str(assignment.get("scope") or "")
            want = scope.name if scope else ""
            if have.lower() != want.lower():
                checks.append(Check(subject, False, f"assignment {assignment['name']!r} has write scope "
                                    f"{have or 'Organization'!r}, declared {want or 'Organization'!r}"))
        if role == IMPERSONATION_ROLE:
            effective = _effective_users(snapshot, {str(a["name"]).lower() for a in of_role})
            if effective != wanted_members:
                checks.append(Check(subject, False, f"effective users of {role} are {_names(list(effective))}, "
                                    f"declared {_names(list(wanted_members))}"))
    extra_roles = sorted({str(a.get("role")) for a in assignments} - set(group.roles))
    if extra_roles:
        checks.append(Check(subject, False, f"has roles the playbook does not declare: {', '.join(extra_roles)}"))
    if not checks:
        checks.append(Check(subject, True, f"members {_names(list(wanted_members))}; "
                                           f"{', '.join(group.roles)} on {scope.name if scope else 'Organization'!r}"))
    return checks


def _role_assignment(assignment: Any, playbook: Playbook, snapshot: Snapshot, declared: set[str]) -> list[Check]:
    name = assignment.assignment_name
    subject = f"role assignment {name!r}"
    found = next((a for a in snapshot.assignments if str(a.get("name", "")).lower() == name.lower()), None)
    if found is None:
        return [Check(subject, False, f"role assignment {name!r} does not exist")]
    declared.add(name.lower())
    checks = []
    scope = playbook.scope_named(assignment.scope)
    want = scope.name if scope else ""
    if str(found.get("scope") or "").lower() != want.lower():
        checks.append(Check(subject, False, f"write scope is {found.get('scope') or 'Organization'!r}, declared "
                                            f"{want or 'Organization'!r}"))
    if str(found.get("role", "")).lower() != assignment.role.lower():
        checks.append(Check(subject, False, f"role is {found.get('role')!r}, declared {assignment.role!r}"))
    if assignment.user:
        effective = _effective_users(snapshot, {name.lower()}) if assignment.role == IMPERSONATION_ROLE else {
            str(found.get("user", "")).lower()}
        if effective != {assignment.user.lower()}:
            checks.append(Check(subject, False, f"effective users are {_names(list(effective))}, declared "
                                                f"{assignment.user.lower()}"))
    return checks or [Check(subject, True, f"{assignment.role} for {assignment.assignee} on "
                                           f"{want or 'Organization'!r}")]


def _other_grants(playbook: Playbook, snapshot: Snapshot, declared: set[str], principals: set[str]) -> list[Check]:
    checks = []
    by_name = {str(a.get("name", "")).lower(): a for a in snapshot.assignments}
    for row in snapshot.effective:
        user = str(row.get("user") or row.get("user_name")).lower()
        assignment = str(row.get("assignment", "")).lower()
        if user in principals and assignment not in declared and row.get("role") == IMPERSONATION_ROLE:
            found = by_name.get(assignment, {})
            where = found.get("scope") or found.get("ou_scope") or "the whole organisation"
            checks.append(Check(f"principal {user!r}", False, f"also holds ApplicationImpersonation through "
                                f"assignment {row.get('assignment')!r} (scope: {where}), which the playbook does "
                                "not declare"))
    delegated = {(m.lower(), d.user.lower()) for d in playbook.delegates for m in d.mailboxes}
    for permission in snapshot.permissions:
        user = str(permission.get("user") or permission.get("user_name")).lower()
        mailbox = str(permission.get("mailbox", "")).lower()
        if user in principals | {d.user.lower() for d in playbook.delegates} and "FullAccess" in str(
                permission.get("rights")) and (mailbox, user) not in delegated:
            checks.append(Check(f"principal {user!r}", False, f"also holds FullAccess on {mailbox}, which the "
                                                             "playbook does not declare"))
    for delegate in playbook.delegates:
        for mailbox in delegate.mailboxes:
            held = any(str(p.get("mailbox", "")).lower() == mailbox.lower()
                       and str(p.get("user") or p.get("user_name")).lower() == delegate.user.lower()
                       and "FullAccess" in str(p.get("rights")) for p in snapshot.permissions)
            checks.append(Check(f"delegate {delegate.user.lower()!r}", held,
                                f"FullAccess on {mailbox.lower()}" + ("" if held else " is missing")))
    return checks


def _applications(playbook: Playbook, snapshot: Snapshot) -> list[Check]:
    checks = []
    for app in playbook.applications:
        principal = snapshot.principal(app.app_id)
        subject = f"application {app.name!r}"
        if principal is None:
            checks.append(Check(subject, False, f"no service principal for app {app.app_id}"))
        elif str(principal.get("object_id", "")).lower() != app.object_id:
            checks.append(Check(subject, False, f"service principal object id is {principal.get('object_id')}, "
                                                f"declared {app.object_id}"))
    for assignment in playbook.application_role_assignments:
        name = assignment.assignment_name
        subject = f"application role assignment {name!r}"
        found = next((a for a in snapshot.assignments if str(a.get("name", "")).lower() == name.lower()), None)
        scope = playbook.scope_named(assignment.scope)
        if found is None:
            checks.append(Check(subject, False, f"application role assignment {name!r} does not exist"))
            continue
        if str(found.get("resource_scope") or "").lower() != (scope.name.lower() if scope else ""):
            checks.append(Check(subject, False, f"resource scope is {found.get('resource_scope') or 'Organization'!r}"
                                                f", declared {scope.name if scope else 'Organization'!r}"))
            continue
        app = playbook.application_named(assignment.application)
        rows = [r for r in snapshot.authorizations if app and str(r.get("app_id")).lower() == app.app_id
                and str(r.get("role", "")).lower() == assignment.role.lower()]
        if scope is not None and not rows:
            checks.append(Check(subject, False, "Test-ServicePrincipalAuthorization returned nothing for the app"))
        for row in rows:
            resource = str(row.get("resource"))
            in_scope = str(row.get("in_scope")).lower() == "true"
            is_room = any(str(r.get("address", "")).lower() == resource.lower()
                          for r in snapshot.previews.get(scope.name.lower() if scope else "", []))
            ok = in_scope == is_room
            what = "a room in the scope" if is_room else "a mailbox outside the scope"
            checks.append(Check(subject, ok, f"Test-ServicePrincipalAuthorization: {resource} ({what}) is "
                                             f"{'in' if in_scope else 'not in'} scope"))
    declared = {a.assignment_name.lower() for a in playbook.application_role_assignments}
    for app in playbook.applications:
        for assignment in _app_assignments(app, snapshot):
            if str(assignment.get("name", "")).lower() not in declared:
                checks.append(Check(f"application {app.name!r}", False, f"also holds {assignment.get('role')} through "
                                    f"assignment {assignment.get('name')!r} (scope: "
                                    f"{assignment.get('resource_scope') or 'the whole organisation'}), which the "
                                    "playbook does not declare"))
    for policy in playbook.application_access_policies:
        app = playbook.application_named(policy.application)
        found = any(app and str(p.get("app_id", "")).lower() == app.app_id for p in snapshot.policies)
        checks.append(Check(f"application access policy {policy.application!r}", bool(found),
                            f"{policy.access_right} to members of {policy.group}" + ("" if found else " is missing")))
    for app in playbook.applications:
        policies = [p for p in snapshot.policies if str(p.get("app_id", "")).lower() == app.app_id]
        roles = sorted({str(a.get("role")) for a in _app_assignments(app, snapshot)})
        if policies and roles:
            checks.append(Check(f"application {app.name!r}", True, "has both an Application Access Policy ("
                                + ", ".join(f"{p.get('access_right')} to {p.get('scope_name')}" for p in policies)
                                + f") and RBAC-for-Applications roles ({', '.join(roles)}): Microsoft advises not "
                                "to combine them (RBAC for Applications replaces Application Access Policies); keep "
                                "the scoped roles and remove the policy", WARNING))
    return checks


def _app_assignments(app: Any, snapshot: Snapshot) -> list[dict[str, Any]]:
    """The Exchange role assignments held by an application's service principal, found by RoleAssignee (the service
    principal's object id, as Microsoft365DSC reads it): the name Exchange shows is not the display name."""
    principal = snapshot.principal(app.app_id)
    object_id = str(principal.get("object_id", "")).lower() if principal else app.object_id.lower()
    return [a for a in snapshot.assignments if str(a.get("assignee_id", "")).lower() == object_id]


def entra_checks(playbook: Playbook, snapshot: Snapshot) -> list[Check]:
    """What Entra ID grants each declared application, against the roles the playbook scopes (the overlap table
    in toolkit/verify/overlap.py): a tenant-wide application permission to mailbox data voids every scope."""
    if snapshot.entra is None or not playbook.applications:
        return []
    if snapshot.entra.get("status") != "read":
        return [Check("Entra consent", False, f"not checked: {snapshot.entra.get('reason')}", NOT_CHECKED, "entra")]
    restricted = {str(p.get("app_id", "")).lower(): p for p in snapshot.policies
                  if str(p.get("access_right", "")) == "RestrictAccess"}
    checks: list[Check] = []
    for app in playbook.applications:
        subject = f"Entra consent of {app.name!r}"
        found = snapshot.entra_apps.get(app.app_id)
        if not found or not found.get("found"):
            checks.append(Check(subject, False, f"Entra ID has no service principal (enterprise application) for app "
                                                f"{app.app_id}: check app_id, or add the app to the tenant", area="entra"))
            continue
        if found.get("object_id") != app.object_id:
            checks.append(Check(subject, False, f"the enterprise application's object id is {found.get('object_id')}"
                                                f", declared {app.object_id} (object_id is the service principal's, "
                                                "not the app registration's)", area="entra"))
        held = [p for p in snapshot.entra_permissions if str(p.get("app_id")).lower() == app.app_id]
        mailbox = [p for p in held if (p.get("resource_app_id"), p.get("permission")) in MAILBOX_PERMISSIONS]
        roles = [a.role for a in playbook.application_role_assignments
                 if a.scope and a.application.lower() == app.name.lower()]
        display = found.get("display_name") or app.name
        failures = []
        for permission in mailbox:
            name = f"{permission.get('resource')} application permission {permission.get('permission')}"
            granted = _date(str(permission.get("granted", "")))
            fix = (f"fix: remove that admin consent in Entra (Enterprise applications → {display} → Permissions → "
                   f"{permission.get('permission')} → Revoke permission)")
            policy = restricted.get(app.app_id)
            if policy is not None:
                checks.append(Check(subject, True, f"{name} (granted {granted}) is limited by the Application Access "
                                                   f"Policy to members of {policy.get('scope_name')}", INFO, "entra"))
                continue
            overlapping = [r for r in roles if (permission.get("resource_app_id"), permission.get("permission"))
                           in OVERLAP.get(r, frozenset())]
            if overlapping:
                failures.append(f"{name} is granted tenant-wide (admin consent, {granted}): it reaches every mailbox, "
                                f"so the scope of {', '.join(overlapping)} restricts nothing; {fix} — the scoped "
                                "Exchange role keeps the access the app needs")
            elif roles:
                failures.append(f"{name} is granted tenant-wide (admin consent, {granted}): it reaches every mailbox, "
                                f"which none of the declared roles ({', '.join(roles)}) allows; {fix}")
        checks += [Check(subject, False, text, area="entra") for text in failures]
        if not failures and roles:
            names = ", ".join(f"{p.get('resource')} {p.get('permission')}" for p in held) or "none"
            retried = int(snapshot.entra.get("retried") or 0)
            checks.append(Check(subject, True, f"no tenant-wide application permission reaches mailboxes, so the "
                                               f"scope of {', '.join(roles)} holds (application permissions in Entra: "
                                               f"{names})" + (f"; {retried} Graph call(s) retried after throttling"
                                                              if retried else ""), area="entra"))
        if not mailbox and not _app_assignments(app, snapshot):
            checks.append(Check(subject, True, "the app holds neither an Exchange application role nor an Entra "
                                               "application permission to mailbox data: the integration cannot "
                                               "reach any mailbox", WARNING, "entra"))
        for grant in snapshot.entra_grants:
            if str(grant.get("app_id")).lower() == app.app_id:
                who = "all users (admin consent)" if grant.get("consent_type") == "AllPrincipals" else "one user"
                checks.append(Check(subject, True, f"delegated grant {grant.get('resource')} "
                                                   f"{' '.join(grant.get('scopes') or [])} for {who}: it acts only for "
                                                   "a signed-in user, within that user's own access", INFO, "entra"))
        if app.app_id in snapshot.entra_grants_unread:
            checks.append(Check(subject, True, f"delegated grants not read ({snapshot.entra_grants_unread[app.app_id]}"
                                               "; optional, they are information only)", INFO, "entra"))
    return checks


def _date(value: str) -> str:
    """Graph's createdDateTime (2026-11-30T13:05:07.1234567Z) as '2026-11-30 13:05 UTC'."""
    return f"{value[:10]} {value[11:16]} UTC" if len(value) >= 16 else (value or "date unknown")


def boundary_checks(playbook: Playbook, snapshot: Snapshot, target: str, boundary: Boundary,
                    neighbours: dict[str, Boundary]) -> list[Check]:
    """What the tenant's grants actually reach on the target (each scope's stored filter and root) and who actually
    holds them, against its boundary; something inside another tenant's boundary names both tenants."""
    reached = {s.name: snapshot.live_previews.get(s.name.lower(), []) for s in playbook.scopes}
    holders: dict[str, list[str]] = {}
    for group in playbook.role_groups:
        found = snapshot.groups.get(group.name.lower())
        names = {str(a["name"]).lower() for a in snapshot.assignments
                 if str(a.get("assignee", "")).lower() == group.name.lower()}
        holders[f"role group {group.name!r}"] = sorted(set(found["members"] if found else [])
                                                       | _effective_users(snapshot, names))
    for assignment in playbook.role_assignments:
        holders[f"role assignment {assignment.assignment_name!r}"] = sorted(
            _effective_users(snapshot, {assignment.assignment_name.lower()}))
    violations = check_reach(boundary, reached, holders, neighbours)
    if violations:
        return [Check("boundary", False, v.message(target)) for v in violations]
    count = len({str(r.get("address") or r.get("name")) for recipients in reached.values() for r in recipients})
    return [Check("boundary", True, f"boundary ok: the grants reach {count} recipient(s), all inside "
                                    f"{boundary.describe()}")]
