"""Least-privilege advice. Warnings (errors under --strict) and notes (never fail).

The room-booking account should reach room mailboxes and nothing else: impersonation limited by a scope that
provably matches only rooms, and impersonation rather than delegate FullAccess (which charges every room's traffic
to one account's throttling budget).
"""

from __future__ import annotations

from collections import defaultdict

from toolkit import opath
from toolkit.playbook.diagnostics import Diagnostics
from toolkit.playbook.load import LoadedDocument
from toolkit.playbook.model import IMPERSONATION_ROLE, Playbook

MANY_DELEGATE_MAILBOXES = 10


def lint(playbook: Playbook, document: LoadedDocument, diagnostics: Diagnostics) -> None:
    file, positions = document.file, document.positions
    for index, scope in enumerate(playbook.scopes):
        if not opath.matches_only_resources(scope.filter_tree()):
            diagnostics.warning(
                "scope-not-rooms-only",
                f"management scope {scope.name!r} can match recipients other than room and equipment mailboxes",
                file, positions.of_value(("scopes", index, "filter" if scope.filter else "name")),
                "add 'rooms: true' (or RecipientTypeDetails -eq 'RoomMailbox' -and …) so user and shared mailboxes "
                "stay out of reach")

    grants = [("role_groups", i, g.name, g.roles, g.scope, g.all_mailboxes) for i, g in enumerate(playbook.role_groups)]
    grants += [("role_assignments", i, a.assignment_name, [a.role], a.scope, a.all_mailboxes)
               for i, a in enumerate(playbook.role_assignments)]
    for section, index, name, roles, scope, all_mailboxes in grants:
        if IMPERSONATION_ROLE not in roles:
            continue
        noun = "role group" if section == "role_groups" else "role assignment"
        if all_mailboxes:
            diagnostics.note(
                "full-impersonation", f"{noun} {name!r} grants ApplicationImpersonation on every mailbox",
                file, positions.of_value((section, index, "all_mailboxes")),
                "features such as 'End Event Early' need this; without them, a scope limited to rooms is safer")
        elif scope is None:
            diagnostics.warning(
                "unscoped-impersonation",
                f"{noun} {name!r} grants ApplicationImpersonation organisation-wide (no scope)",
                file, positions.of_value((section, index, "name")),
                "add 'scope: <a scope with rooms: true>'; set 'all_mailboxes: true' only if every mailbox is meant")

    per_user: dict[str, int] = defaultdict(int)
    first_index: dict[str, int] = {}
    for index, delegate in enumerate(playbook.delegates):
        if "FullAccess" in delegate.access_rights:
            diagnostics.warning(
                "delegate-access",
                f"delegate FullAccess for {delegate.user!r} on {len(delegate.mailboxes)} mailbox(es)",
                file, positions.of_value(("delegates", index, "user")),
                "prefer ApplicationImpersonation limited to rooms: delegate access is charged to one account's "
                "throttling budget and gives full mailbox rights")
            per_user[delegate.user.lower()] += len(delegate.mailboxes)
            first_index.setdefault(delegate.user.lower(), index)
    for user, count in sorted(per_user.items()):
        if count > MANY_DELEGATE_MAILBOXES:
            diagnostics.warning(
                "many-delegate-mailboxes",
                f"{user!r} gets delegate FullAccess on {count} mailboxes (more than {MANY_DELEGATE_MAILBOXES})",
                file, positions.of_value(("delegates", first_index[user], "mailboxes")),
                "a delegate syncing many rooms hits EWS concurrency throttling (ErrorExceededConnectionCount, "
                "ErrorServerBusy); use impersonation instead")

    lint_applications(playbook, document, diagnostics)


def lint_applications(playbook: Playbook, document: LoadedDocument, diagnostics: Diagnostics) -> None:
    file, positions = document.file, document.positions
    for index, assignment in enumerate(playbook.application_role_assignments):
        name = assignment.assignment_name
        if assignment.role == "Application EWS.AccessAsApp":
            diagnostics.warning(
                "ews-retirement", f"application role assignment {name!r} grants EWS access",
                file, positions.of_value(("application_role_assignments", index, "role")),
                "EWS in Exchange Online is blocked from 1 October 2026 unless allow-listed and switched off on "
                "1 April 2027: use Microsoft Graph with 'Application Calendars.ReadWrite'")
        if assignment.all_mailboxes:
            diagnostics.note("tenant-wide-application", f"application role assignment {name!r} applies to every "
                             "mailbox", file, positions.of_value(("application_role_assignments", index,
                                                                  "all_mailboxes")),
                             "a scope with rooms: true limits the app to room mailboxes")
        elif assignment.scope is None:
            diagnostics.warning(
                "unscoped-application", f"application role assignment {name!r} has no scope (every mailbox)",
                file, positions.of_value(("application_role_assignments", index, "application")),
                "add 'scope: <a scope with rooms: true>'; set 'all_mailboxes: true' only if every mailbox is meant")
    with_roles = {a.application.lower() for a in playbook.application_role_assignments}
    for index, policy in enumerate(playbook.application_access_policies):
        if policy.application.lower() in with_roles:
            diagnostics.warning(
                "policy-and-rbac", f"application {policy.application!r} has both an Application Access Policy and "
                "RBAC-for-Applications roles", file,
                positions.of_value(("application_access_policies", index, "application")),
                "Microsoft advises not to combine them (RBAC for Applications replaces Application Access Policies): "
                "keep the scoped roles and drop the policy")
    if playbook.application_role_assignments:
        diagnostics.note(
            "application-consent", "RBAC for Applications adds to Entra consent: if the app also holds the same "
            "permission tenant-wide (admin-consented Graph Calendars.ReadWrite), the scope restricts nothing",
            file, positions.of_key(("application_role_assignments",)),
            "exkit verify checks this through Microsoft Graph on an Exchange Online target; remove the tenant-wide "
            "grant in Entra; changes take effect after a cache delay (30 minutes to 2 hours)")
