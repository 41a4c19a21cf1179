"""Microsoft Graph, read-only: what Microsoft Entra ID grants the playbook's applications (verify's Entra check).

RBAC for Applications *adds* to Entra consent: an application permission on the app's service principal (an
``appRoleAssignment``, always tenant-wide) reaches every mailbox whatever an Exchange scope says. This reader uses
the Exchange Online connector's msal app (a token for Graph's ``.default`` scope), http session and retry policy, and
turns what it reads into snapshot facts (``toolkit/verify/snapshot.py``):

- the app's service principal: ``GET /v1.0/servicePrincipals?$filter=appId eq '…'``;
- its application permissions: ``GET /v1.0/servicePrincipals/{id}/appRoleAssignments`` (paged by
  ``@odata.nextLink``), resolved to names through each resource service principal's ``appRoles`` (Microsoft Graph,
  Office 365 Exchange Online, …): ``GET /v1.0/servicePrincipals/{resourceId}``;
- its delegated grants: ``GET /v1.0/servicePrincipals/{id}/oauth2PermissionGrants`` (information only).

The automation app needs Graph ``Application.Read.All`` (application permission, read-only) for the first two;
without it Graph answers 403 ``Authorization_RequestDenied`` and the Entra check is "not checked", with the reason.
Listing delegated grants needs ``Directory.Read.All``; a 403 there only notes that they were not read.
Sources (Microsoft Learn): "List appRoleAssignments granted to a service principal" (least privileged:
Application.Read.All), "servicePrincipal: List oauth2PermissionGrants" (least privileged: Directory.Read.All),
"Microsoft Graph error responses", "Microsoft Graph throttling guidance" (429 + Retry-After), "Paging Microsoft Graph
data" (follow ``@odata.nextLink`` as given), "Microsoft Graph national cloud deployments" (the roots in ``CLOUDS``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import requests

from toolkit.targets import http_rules
from toolkit.targets.base import Target, TargetError
from toolkit.targets.exchange_online import RETRY_STATUS, ExchangeOnlineTarget, _Transient, no_answer

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"  # Office 365 Exchange Online
DEFAULT_ACCESS = "00000000-0000-0000-0000-000000000000"  # appRoleId of "default access": no permission at all
READ_PERMISSION = "Application.Read.All"


class GraphDenied(Exception):
    """403 from Graph: the automation app lacks the permission the call needs."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class GraphReader:
    def __init__(self, target: ExchangeOnlineTarget) -> None:
        self.target = target
        self.root = target.cloud.graph
        self.calls = 0
        self._resources: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------------------------------- HTTP
    def get(self, url: str, label: str) -> dict[str, Any]:
        return self.target.retrying(f"Graph {label}", self._get_once, url, label)

    def _get_once(self, url: str, label: str, rejected: str | None = None) -> dict[str, Any]:
        self.target.throttle()
        token = self.target._token(resource=self.root, rejected=rejected)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                   "client-request-id": str(uuid.uuid4())}
        try:
            response = self.target.http.get(url, headers=headers, timeout=self.target.request_timeout())
        except requests.exceptions.RequestException as exc:
            raise no_answer(exc, self.root) from None
        self.calls += 1
        if response.status_code == 401 and rejected is None:
            return self._get_once(url, label, rejected=token)
        if response.status_code in RETRY_STATUS:
            wait = http_rules.retry_after_seconds(response.headers.get("Retry-After"))  # seconds or an HTTP-date
            raise _Transient(response.status_code, wait)
        try:
            data = json.loads(response.text) if response.text else {}
        except ValueError:
            raise TargetError(f"Microsoft Graph {label}: HTTP {response.status_code} with no JSON") from None
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        if response.status_code == 403:
            raise GraphDenied(str(error.get("code") or "Forbidden"), str(error.get("message") or "HTTP 403"))
        if response.status_code >= 400:
            raise TargetError(f"Microsoft Graph {label}: HTTP {response.status_code} "
                              f"{error.get('code') or ''}: {error.get('message') or ''}".rstrip(": "))
        return data

    def collection(self, url: str, label: str) -> list[dict[str, Any]]:
        """Every page: follow ``@odata.nextLink`` as Graph gives it, but only to the same Graph root (the token is
        never sent anywhere else)."""
        values: list[dict[str, Any]] = []
        while url:
            page = self.get(url, label)
            values += page.get("value") or []
            url = str(page.get("@odata.nextLink") or "")
            if url and not url.startswith(self.root + "/"):
                raise TargetError(f"Microsoft Graph {label}: a nextLink points outside {self.root}; not followed")
        return values

    # ------------------------------------------------------------------------------------------- reads
    def resource(self, object_id: str) -> dict[str, Any]:
        """A resource service principal (Microsoft Graph, Office 365 Exchange Online, …) with its appRoles, once."""
        if object_id not in self._resources:
            found = self.get(f"{self.root}/v1.0/servicePrincipals/{object_id}?$select=id,appId,displayName,appRoles",
                             "servicePrincipals/{id}")
            self._resources[object_id] = {
                "app_id": str(found.get("appId") or "").lower(), "name": str(found.get("displayName") or object_id),
                "roles": {str(r.get("id")).lower(): str(r.get("value")) for r in found.get("appRoles") or []}}
        return self._resources[object_id]

    def app_facts(self, app_id: str) -> list[dict[str, Any]]:
        query = quote(f"appId eq '{app_id}'")  # app_id is a validated GUID
        found = self.collection(f"{self.root}/v1.0/servicePrincipals?$filter={query}"
                                "&$select=id,appId,displayName", "servicePrincipals")
        if not found:
            return [{"type": "entra_app", "app_id": app_id, "found": False}]
        principal = found[0]
        object_id = str(principal.get("id"))
        facts: list[dict[str, Any]] = [{"type": "entra_app", "app_id": app_id, "found": True,
                                        "object_id": object_id.lower(),
                                        "display_name": str(principal.get("displayName") or "")}]
        for assignment in self.collection(f"{self.root}/v1.0/servicePrincipals/{object_id}/appRoleAssignments",
                                          "appRoleAssignments"):
            role_id = str(assignment.get("appRoleId") or "").lower()
            if role_id == DEFAULT_ACCESS:
                continue
            resource = self.resource(str(assignment.get("resourceId")))
            facts.append({"type": "entra_permission", "app_id": app_id, "resource": resource["name"],
                          "resource_app_id": resource["app_id"],
                          "permission": resource["roles"].get(role_id, role_id),
                          "granted": str(assignment.get("createdDateTime") or ""),
                          "assignment_id": str(assignment.get("id") or "")})
        try:
            grants = self.collection(f"{self.root}/v1.0/servicePrincipals/{object_id}/oauth2PermissionGrants",
                                     "oauth2PermissionGrants")
        except GraphDenied as exc:
            facts.append({"type": "entra_grants_unread", "app_id": app_id,
                          "reason": f"{exc.code}: reading delegated grants needs Directory.Read.All"})
            return facts
        for grant in grants:
            facts.append({"type": "entra_grant", "app_id": app_id,
                          "resource": self.resource(str(grant.get("resourceId")))["name"],
                          "scopes": str(grant.get("scope") or "").split(),
                          "consent_type": str(grant.get("consentType") or "")})
        return facts


def read_entra(target: Target, app_ids: list[str]) -> list[dict[str, Any]]:
    """Facts about each app in Entra, headed by one ``entra`` fact: status ``read`` or ``not checked`` (+ reason).
    Only an Exchange Online tenant has an Entra directory to read: for other targets (the sandbox) there is nothing.

    Nothing here fails the whole verify: what stops the read (no permission, Graph unreachable or still throttled
    after the retries) becomes the reason the Entra check was not done."""
    if not app_ids or not isinstance(target, ExchangeOnlineTarget):
        return []
    if not target.cloud.graph:
        return [{"type": "entra", "status": "not checked",
                 "reason": "the target has no graph_endpoint (cloud: custom): add it to read Entra consent"}]
    reader = GraphReader(target)
    retried = len(target.retries)
    try:
        facts = [fact for app_id in app_ids for fact in reader.app_facts(app_id)]
    except GraphDenied as exc:
        return [{"type": "entra", "status": "not checked", "calls": reader.calls,
                 "reason": f"Microsoft Graph refused to list service principals ({exc.code}): the automation app "
                           f"{target.spec.client_id} lacks the application permission {READ_PERMISSION} (read-only); "
                           "grant it with admin consent"}]
    except TargetError as exc:
        return [{"type": "entra", "status": "not checked", "calls": reader.calls,
                 "reason": f"reading Microsoft Graph failed: {exc}"}]
    return [{"type": "entra", "status": "read", "calls": reader.calls,
             "retried": len(target.retries) - retried}] + facts
