"""Loopback Microsoft Entra ID directory behind a Microsoft Graph v1.0 endpoint, for tests.

Served by tests/servers/exchange_online.py under ``/graph`` on the same HTTPS server: tokens are issued per resource
(Exchange or Graph) and a Graph token carries the calling app's Graph application permissions (its ``roles`` claim,
fixed when the token is issued, as Entra does). Shapes as Microsoft Graph returns them (Microsoft Learn: "List
servicePrincipals" with ``$filter=appId eq '…'`` and ``$select``, "Get servicePrincipal" with ``appRoles``, "List
appRoleAssignments granted to a service principal" (least privileged: Application.Read.All; paged by
``@odata.nextLink``), "servicePrincipal: List oauth2PermissionGrants" (least privileged: Directory.Read.All),
"Microsoft Graph error responses" (``{"error": {"code", "message", "innerError": {"date", "request-id",
"client-request-id"}}}``; 403 ``Authorization_RequestDenied`` "Insufficient privileges to complete the operation.";
404 ``Request_ResourceNotFound``), "Microsoft Graph throttling guidance" (429 ``TooManyRequests`` + Retry-After).

Permission ids are the real ones: Microsoft Graph's from the Graph permissions reference ("permissions-ids" table),
Office 365 Exchange Online's from public dumps of that service principal's appRoles (full_access_as_app
dc890d15-…, Exchange.ManageAsApp dc50a0fb-…, also used by Microsoft's and vendors' setup scripts).
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
TENANT_ID = "72f988bf-0000-4000-8000-00000000c0de"

# (value, id, display name) of application permissions (appRoles, allowedMemberTypes ["Application"])
GRAPH_ROLES = [
    ("Application.Read.All", "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30", "Read all applications"),
    ("Application.ReadWrite.All", "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9", "Read and write all applications"),
    ("Directory.Read.All", "7ab1d382-f21e-4acd-a863-ba3e13f7da61", "Read directory data"),
    ("User.Read.All", "df021288-bdef-4463-88db-98f22de89214", "Read all users' full profiles"),
    ("Calendars.Read", "798ee544-9d2d-430c-a058-570e29e34338", "Read calendars in all mailboxes"),
    ("Calendars.ReadWrite", "ef54d2bf-783f-4e0f-bca1-3210c0444d99", "Read and write calendars in all mailboxes"),
    ("Mail.Read", "810c84a8-4a9e-49e6-bf7d-12d183f40d01", "Read mail in all mailboxes"),
    ("Mail.ReadBasic", "6be147d2-ea4f-4b5a-a3fa-3eab6f3c140a", "Read basic mail in all mailboxes"),
    ("Mail.ReadBasic.All", "693c5e45-0940-467d-9b8a-1022fb9d42ef", "Read basic mail in all mailboxes"),
    ("Mail.ReadWrite", "e2a3a72e-5f79-4c64-b1b1-878b674786c9", "Read and write mail in all mailboxes"),
    ("Mail.Send", "b633e1c5-b582-4048-a93e-9f11b44c7e96", "Send mail as any user"),
    ("MailboxSettings.Read", "40f97065-369a-49f4-947c-6a255697ae91", "Read all user mailbox settings"),
    ("MailboxSettings.ReadWrite", "6931bccd-447a-43d1-b442-00a195474933", "Read and write all user mailbox settings"),
    ("Contacts.Read", "089fe4d0-434a-44c5-8827-41ba8a0b17f5", "Read contacts in all mailboxes"),
    ("Contacts.ReadWrite", "6918b873-d17a-4dc1-b314-35f528134491", "Read and write contacts in all mailboxes"),
    ("Place.Read.All", "913b9306-0ce1-42b8-9137-6a7df690a760", "Read all company places"),
]
EXCHANGE_ROLES = [
    ("Exchange.ManageAsApp", "dc50a0fb-09a3-484d-be87-e023b12c6440", "Manage Exchange As Application"),
    ("full_access_as_app", "dc890d15-9560-4a4c-9b7f-a736ec74ec40",
     "Use Exchange Web Services with full access to all mailboxes"),
    ("Calendars.ReadWrite.All", "ef54d2bf-783f-4e0f-bca1-3210c0444d99", "Read and write calendars in all mailboxes"),
    ("Mail.Read", "810c84a8-4a9e-49e6-bf7d-12d183f40d01", "Read mail in all mailboxes"),
    ("MailboxSettings.Read", "d45fa9f8-36e5-4cd2-b601-b063c7cf9ac2", "Read all user mailbox settings"),
    ("SMTP.SendAsApp", "7146a1f0-8703-45b3-9eae-527a64c00995", "SMTP.SendAsApp"),
    ("IMAP.AccessAsApp", "5e5addcd-3e8d-4e90-baf5-964efab2b20a", "IMAP.AccessAsApp"),
]
# Graph application permissions that let an app read service principals and their app role assignments, and
# delegated grants (Microsoft Learn, the "Permissions" tables of the pages named above)
READ_APPLICATIONS = {"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
                     "Directory.ReadWrite.All"}
READ_GRANTS = {"Directory.Read.All", "Directory.ReadWrite.All", "DelegatedPermissionGrant.ReadWrite.All"}

# The enterprise application of the playbooks' room-booking app (playbooks/online-*.yaml)
ROOM_APP_ID = "6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11"
ROOM_SP_ID = "0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21"


@dataclass
class ServicePrincipal:
    id: str
    app_id: str
    display_name: str
    app_roles: list[tuple[str, str, str]] = field(default_factory=list)

    def as_graph(self) -> dict[str, Any]:
        return {"id": self.id, "deletedDateTime": None, "accountEnabled": True, "appId": self.app_id,
                "appDisplayName": self.display_name, "displayName": self.display_name,
                "appOwnerOrganizationId": TENANT_ID, "servicePrincipalType": "Application",
                "servicePrincipalNames": [self.app_id], "tags": [],
                "appRoles": [{"allowedMemberTypes": ["Application"], "description": f"Allows the app to {name}.",
                              "displayName": name, "id": role_id, "isEnabled": True, "origin": "Application",
                              "value": value} for value, role_id, name in self.app_roles]}


@dataclass
class AppRoleAssignment:
    id: str
    app_role_id: str
    principal: ServicePrincipal
    resource: ServicePrincipal
    created: str

    def as_graph(self) -> dict[str, Any]:
        return {"id": self.id, "deletedDateTime": None, "appRoleId": self.app_role_id, "createdDateTime": self.created,
                "principalDisplayName": self.principal.display_name, "principalId": self.principal.id,
                "principalType": "ServicePrincipal", "resourceDisplayName": self.resource.display_name,
                "resourceId": self.resource.id}


@dataclass
class PermissionGrant:
    id: str
    client: ServicePrincipal
    resource: ServicePrincipal
    scope: str
    consent_type: str = "AllPrincipals"

    def as_graph(self) -> dict[str, Any]:
        return {"clientId": self.client.id, "consentType": self.consent_type, "id": self.id,
                "principalId": None if self.consent_type == "AllPrincipals" else str(uuid.uuid4()),
                "resourceId": self.resource.id, "scope": self.scope}


@dataclass
class GraphSwitches:
    page_size: int = 100  # Graph's default page for these collections
    throttle_next: int = 0  # answer this many Graph calls with 429
    retry_after: str = "1"


class Directory:
    """The tenant's Entra ID: service principals, application permissions granted, delegated grants."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.principals: dict[str, ServicePrincipal] = {}
        self.assignments: list[AppRoleAssignment] = []
        self.grants: list[PermissionGrant] = []
        self.switches = GraphSwitches()
        self.requests: list[str] = []  # "GET /v1.0/…" per Graph request answered (throttled ones too)
        self.throttled = 0
        self.add_principal(GRAPH_APP_ID, "Microsoft Graph", GRAPH_ROLES, object_id="5f1f2c0e-7a3b-4c55-9d1e-0b6a8e1f2a01")
        self.add_principal(EXCHANGE_APP_ID, "Office 365 Exchange Online", EXCHANGE_ROLES,
                           object_id="8c2d7e41-3b6a-4f0d-a2c9-5e7f1b3d4c02")

    @classmethod
    def seeded(cls, automation_app_ids: list[str]) -> Directory:
        """The loopback tenant as seeded: exkit's automation app(s) with Exchange.ManageAsApp and Graph
        Application.Read.All; the room-booking app's enterprise application with no application permission and the
        usual delegated sign-in grant (User.Read)."""
        directory = cls()
        for app_id in automation_app_ids:
            directory.add_principal(app_id, "exkit automation")
            directory.grant(app_id, EXCHANGE_APP_ID, "Exchange.ManageAsApp")
            directory.grant(app_id, GRAPH_APP_ID, "Application.Read.All")
        directory.add_principal(ROOM_APP_ID, "Room booking app", object_id=ROOM_SP_ID)
        directory.grant_delegated(ROOM_APP_ID, GRAPH_APP_ID, "User.Read")
        return directory

    # ------------------------------------------------------------------------------------------- state
    def add_principal(self, app_id: str, name: str, roles: list[tuple[str, str, str]] | None = None,
                      object_id: str | None = None) -> ServicePrincipal:
        principal = ServicePrincipal(object_id or str(uuid.uuid4()), app_id, name, list(roles or []))
        self.principals[principal.id] = principal
        return principal

    def by_app_id(self, app_id: str) -> ServicePrincipal:
        return next(p for p in self.principals.values() if p.app_id == app_id)

    def grant(self, app_id: str, resource_app_id: str, value: str, created: str | None = None) -> AppRoleAssignment:
        """Admin consent of one application permission (an app role assignment on the app's service principal)."""
        resource = self.by_app_id(resource_app_id)
        role_id = next(r for v, r, _ in resource.app_roles if v == value)
        stamp = created or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        assignment = AppRoleAssignment(secrets.token_urlsafe(32)[:43], role_id, self.by_app_id(app_id), resource,
                                       stamp)
        with self.lock:
            self.assignments.append(assignment)
        return assignment

    def revoke(self, app_id: str, resource_app_id: str, value: str) -> None:
        resource = self.by_app_id(resource_app_id)
        role_id = next(r for v, r, _ in resource.app_roles if v == value)
        with self.lock:
            self.assignments = [a for a in self.assignments if not (
                a.principal.app_id == app_id and a.resource is resource and a.app_role_id == role_id)]

    def grant_delegated(self, app_id: str, resource_app_id: str, scope: str,
                        consent_type: str = "AllPrincipals") -> None:
        self.grants.append(PermissionGrant(secrets.token_urlsafe(32)[:43], self.by_app_id(app_id),
                                           self.by_app_id(resource_app_id), scope, consent_type))

    def graph_roles(self, app_id: str) -> set[str]:
        """The ``roles`` claim of a Graph token issued to the app now."""
        principal = next((p for p in self.principals.values() if p.app_id == app_id), None)
        graph = self.by_app_id(GRAPH_APP_ID)
        names = {r: v for v, r, _ in graph.app_roles}
        return {names[a.app_role_id] for a in self.assignments
                if a.principal is principal and a.resource is graph and a.app_role_id in names}

    # ------------------------------------------------------------------------------------------- Graph v1.0
    def handle(self, root: str, path: str, query: str, roles: set[str],
               client_request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One GET under ``root`` (…/graph); ``path`` starts with /v1.0/."""
        self.requests.append(f"GET {path}")
        if self.switches.throttle_next > 0:
            self.switches.throttle_next -= 1
            self.throttled += 1
            return 429, _error("TooManyRequests", "Too many requests, please try again later.", client_request_id), {
                "Retry-After": self.switches.retry_after}
        params = {k: v[0] for k, v in parse_qs(query).items()}
        base = f"{root}/v1.0"
        parts = path.removeprefix("/v1.0/").split("/")
        if parts[0] == "servicePrincipals":
            if not roles & READ_APPLICATIONS:
                return _denied(client_request_id)
            if len(parts) == 1:
                match = re.fullmatch(r"appId eq '([0-9a-fA-F-]{36})'", params.get("$filter", ""))
                if "$filter" in params and not match:
                    return 400, _error("Request_UnsupportedQuery", "Unsupported query.", client_request_id), {}
                found = [p.as_graph() for p in self.principals.values()
                         if not match or p.app_id.lower() == match.group(1).lower()]
                return self._page(f"{base}/servicePrincipals", found, params, f"{base}/$metadata#servicePrincipals")
            principal = self.principals.get(parts[1])
            if principal is None:
                return 404, _error("Request_ResourceNotFound", f"Resource '{parts[1]}' does not exist or one of its "
                                   "queried reference-property objects are not present.", client_request_id), {}
            if len(parts) == 2:
                data = _select(principal.as_graph(), params)
                return 200, {"@odata.context": f"{base}/$metadata#servicePrincipals/$entity", **data}, {}
            if parts[2] == "appRoleAssignments":
                with self.lock:
                    rows = [a.as_graph() for a in self.assignments if a.principal is principal]
                return self._page(f"{base}/servicePrincipals/{principal.id}/appRoleAssignments", rows, params,
                                  f"{base}/$metadata#servicePrincipals('{principal.id}')/appRoleAssignments")
            if parts[2] == "oauth2PermissionGrants":
                if not roles & READ_GRANTS:
                    return _denied(client_request_id)
                rows = [g.as_graph() for g in self.grants if g.client is principal]
                return self._page(f"{base}/servicePrincipals/{principal.id}/oauth2PermissionGrants", rows, params,
                                  f"{base}/$metadata#oauth2PermissionGrants")
        return 400, _error("BadRequest", f"Resource not found for the segment '{parts[0]}'.", client_request_id), {}

    def _page(self, url: str, rows: list[dict[str, Any]], params: dict[str, str],
              context: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        skip = int(params.get("$skiptoken", "0x0"), 16) if params.get("$skiptoken") else 0
        size = self.switches.page_size
        data: dict[str, Any] = {"@odata.context": context,
                                "value": [_select(r, params) for r in rows[skip:skip + size]]}
        if skip + size < len(rows):  # the nextLink keeps the request's query, as Graph's do
            kept = "".join(f"{k}={quote(v)}&" for k, v in params.items() if k != "$skiptoken")
            data["@odata.nextLink"] = f"{url}?{kept}$skiptoken={hex(skip + size)}"
        return 200, data, {}


def _select(row: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    wanted = params.get("$select")
    if not wanted:
        return row
    keys = {k.strip() for k in wanted.split(",")}
    return {k: v for k, v in row.items() if k in keys}


def _error(code: str, message: str, client_request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4()),
        "client-request-id": client_request_id}}}


def _denied(client_request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return 403, _error("Authorization_RequestDenied", "Insufficient privileges to complete the operation.",
                       client_request_id), {}
