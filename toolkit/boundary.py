"""Tenant boundaries: what one target of a shared organisation may reach, as a checked invariant.

An inventory declares a target's ``boundary:`` — its OU (``recipient_root``) and its accepted ``domains``. Two pure
checks use it:

- :func:`check_playbook`, before anything runs: every scope of the playbook lies inside the boundary OU, every
  member, user, delegate and mailbox is an address of the boundary's domains, and no grant is organisation-wide.
  Positions are the playbook's. ``facts`` (optional, read from the target by the caller) adds the checks that need
  the target: the RecipientRoot OU exists, and each named account's real distinguished name lies inside the OU.
- :func:`check_reach`, after the fact (``verify``, ``scope preview``): the recipients a tenant's grants actually
  reach, and the accounts actually holding them, stay inside its boundary; one inside another target's boundary of
  the same organisation names both tenants.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from toolkit.playbook.diagnostics import Diagnostics
from toolkit.playbook.load import LoadedDocument, PathKey
from toolkit.playbook.model import Playbook, check_distinguished_name


class Boundary(BaseModel):
    """What one tenant may reach. In a group, values may use ``{{ target }}`` (the target's name) and the
    inventory's variables, e.g. ``recipient_root: OU={{ target }},OU=Hosting,DC=hoster,DC=local``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    recipient_root: str | None = Field(None, description="The tenant's OU (a distinguished name): every scope lies "
                                                         "inside it.")
    domains: list[str] = Field(default_factory=list, description="The tenant's accepted domains: every member, user "
                                                                 "and mailbox is an address of one of them.")
    organisation: str | None = Field(None, description="Targets with the same value share one Exchange "
                                                       "organisation (default: the same sandbox state file, WinRM "
                                                       "host or Exchange Online tenant).")

    @field_validator("domains", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def describe(self) -> str:
        parts = ([self.recipient_root] if self.recipient_root else []) + (
            [f"domains {', '.join(self.domains)}"] if self.domains else [])
        return "; ".join(parts) or "(empty)"

    def checked(self) -> Boundary:
        """Raise a pydantic-style problem when the expanded values are malformed."""
        if self.recipient_root and "{{" not in self.recipient_root:
            check_distinguished_name(self.recipient_root, "boundary recipient_root")
        return self


@dataclass(frozen=True)
class BoundaryFacts:
    """What the plan may read from the target for the checks a playbook alone cannot answer. ``None``: not read."""

    organizational_units: frozenset[str] | None = None  # normalised DNs of the OUs that exist
    distinguished_names: Mapping[str, str] = field(default_factory=dict)  # lower-case address → its DN


def _dn_parts(dn: str) -> list[str]:
    return [re.sub(r"\s*=\s*", "=", part.strip()).lower() for part in re.split(r"(?<!\\),", dn) if part.strip()]


def canonical_name(dn: str) -> str:
    """An AD object reference as Exchange prints it: the canonical name (``OU=Fabrikam,OU=Hosting,DC=hoster,
    DC=local`` → ``hoster.local/Hosting/Fabrikam``), the form the cmdlet reference uses for -RecipientRoot."""
    if "=" not in dn:
        return dn  # already a canonical name
    parts = [p.split("=", 1) for p in dn.split(",") if "=" in p]
    domain = ".".join(v for k, v in parts if k.strip().upper() == "DC")
    path = [v for k, v in parts if k.strip().upper() != "DC"]
    return "/".join([domain, *reversed(path)])


def normalise_dn(dn: str) -> str:
    return ",".join(_dn_parts(dn))


def within(dn: str, root: str) -> bool:
    """``dn`` is ``root`` or lies below it (case and spacing around ``=`` and ``,`` ignored)."""
    inner, outer = _dn_parts(dn), _dn_parts(root)
    return bool(outer) and len(inner) >= len(outer) and inner[len(inner) - len(outer):] == outer


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ""


def contains_address(boundary: Boundary, address: str) -> bool | None:
    """True/False when the boundary has domains to decide by; None when it declares none."""
    if not boundary.domains or "@" not in address:
        return None
    return domain_of(address) in {d.lower() for d in boundary.domains}


def contains_dn(boundary: Boundary, dn: str) -> bool | None:
    if not boundary.recipient_root or not dn:
        return None
    return within(dn, boundary.recipient_root)


def owner(neighbours: Mapping[str, Boundary], *, address: str = "", dn: str = "") -> str | None:
    """The other target of the organisation whose boundary holds this address or DN."""
    for name, boundary in sorted(neighbours.items()):
        if (dn and contains_dn(boundary, dn)) or (address and contains_address(boundary, address)):
            return name
    return None


# ------------------------------------------------------------------------------------------------ before a run
def check_playbook(document: LoadedDocument, playbook: Playbook, boundary: Boundary, target: str,
                   neighbours: Mapping[str, Boundary] | None = None,
                   facts: BoundaryFacts | None = None) -> Diagnostics:
    """Everything the playbook would grant on ``target``, checked against its boundary (see the module doc)."""
    check = _PlaybookCheck(document, boundary, target, neighbours or {}, facts)
    for index, scope in enumerate(playbook.scopes):
        check.scope(index, scope.name, scope.recipient_root, scope.member_of)
    grants = [("role_groups", i, g.scope, g.all_mailboxes) for i, g in enumerate(playbook.role_groups)]
    grants += [("role_assignments", i, a.scope, a.all_mailboxes) for i, a in enumerate(playbook.role_assignments)]
    grants += [("application_role_assignments", i, a.scope, a.all_mailboxes)
               for i, a in enumerate(playbook.application_role_assignments)]
    for section, index, scope_name, all_mailboxes in grants:
        check.grant(section, index, scope_name, all_mailboxes)
    for index, group in enumerate(playbook.role_groups):
        for position, member in enumerate(group.members):
            check.address(("role_groups", index, "members", position), member, "member")
    for index, assignment in enumerate(playbook.role_assignments):
        if assignment.user:
            check.address(("role_assignments", index, "user"), assignment.user, "user")
    for index, delegate in enumerate(playbook.delegates):
        check.address(("delegates", index, "user"), delegate.user, "delegate")
        for position, mailbox in enumerate(delegate.mailboxes):
            check.address(("delegates", index, "mailboxes", position), mailbox, "mailbox")
    for index, policy in enumerate(playbook.application_access_policies):
        check.address(("application_access_policies", index, "group"), policy.group, "group")
    return check.diagnostics


class _PlaybookCheck:
    def __init__(self, document: LoadedDocument, boundary: Boundary, target: str,
                 neighbours: Mapping[str, Boundary], facts: BoundaryFacts | None) -> None:
        self.document, self.boundary, self.target = document, boundary, target
        self.neighbours, self.facts = neighbours, facts
        self.diagnostics = Diagnostics()
        self.hint = f"the boundary of target {target!r} is {boundary.describe()} (inventory boundary:)"

    def error(self, path: PathKey, message: str, key: bool = False, hint: str = "") -> None:
        positions = self.document.positions
        self.diagnostics.error("outside-boundary", message, self.document.file,
                               positions.of_key(path) if key else positions.of_value(path), hint or self.hint)

    def _elsewhere(self, **where: str) -> str:
        other = owner(self.neighbours, **where)
        return f" — it is inside the boundary of target {other!r}" if other else ""

    def scope(self, index: int, name: str, root: str | None, member_of: str | None) -> None:
        if not self.boundary.recipient_root:
            return
        if not root:
            self.error(("scopes", index, "name"), f"management scope {name!r} has no recipient_root: on target "
                       f"{self.target!r} it would reach every tenant of the organisation",
                       hint=f"add recipient_root: {self.boundary.recipient_root} (or an OU inside it)")
            return
        if not within(root, self.boundary.recipient_root):
            self.error(("scopes", index, "recipient_root"), f"recipient_root {root!r} of management scope {name!r} "
                       f"is outside the boundary of target {self.target!r}" + self._elsewhere(dn=root))
        elif self.facts and self.facts.organizational_units is not None and (
                normalise_dn(root) not in self.facts.organizational_units):
            self.error(("scopes", index, "recipient_root"), f"recipient_root {root!r} of management scope {name!r} "
                       f"does not exist on target {self.target!r}", hint="create the OU first, or correct the "
                                                                         "distinguished name")
        if member_of and not within(member_of, self.boundary.recipient_root):
            self.error(("scopes", index, "member_of"), f"member_of {member_of!r} of management scope {name!r} is "
                       f"outside the boundary of target {self.target!r}" + self._elsewhere(dn=member_of))

    def grant(self, section: str, index: int, scope_name: str | None, all_mailboxes: bool) -> None:
        if scope_name:
            return
        noun = section.removesuffix("s").replace("_", " ")
        if all_mailboxes:
            self.error((section, index, "all_mailboxes"), f"{noun} #{index + 1} is organisation-wide (all_mailboxes: "
                       f"true): on target {self.target!r} it reaches every tenant", key=True,
                       hint="give it a scope inside the tenant's boundary")
        else:
            self.error((section, index), f"{noun} #{index + 1} has no scope: on target {self.target!r} its roles "
                       "reach every tenant of the organisation", hint="give it a scope inside the tenant's boundary")

    def address(self, path: PathKey, address: str, what: str) -> None:
        inside = contains_address(self.boundary, address)
        if inside is False:
            self.error(path, f"{what} {address!r} is not an address of the domains of target {self.target!r}"
                       + self._elsewhere(address=address))
            return
        dn = (self.facts.distinguished_names.get(address.lower(), "") if self.facts else "")
        if dn and contains_dn(self.boundary, dn) is False:
            self.error(path, f"{what} {address!r} lives in {dn!r}, outside the boundary of target {self.target!r}"
                       + self._elsewhere(dn=dn))


# ------------------------------------------------------------------------------------------------ after the fact
@dataclass(frozen=True)
class Violation:
    """What one grant reaches (or who holds it) outside a tenant's boundary, per other tenant it belongs to."""

    subject: str  # "scope 'fabrikam room mailboxes' reaches" / "role group 'x' is held by"
    items: tuple[str, ...]  # recipients or accounts
    other: str | None  # the other target of the organisation whose boundary holds them

    def message(self, target: str, shown: int = 5) -> str:
        listed = ", ".join(self.items[:shown]) + (f" and {len(self.items) - shown} more" if len(self.items) > shown
                                                  else "")
        text = f"{self.subject} {listed}, outside the boundary of target {target!r}"
        return text + (f": inside the boundary of target {self.other!r}" if self.other else "")


def check_reach(boundary: Boundary, reached: Mapping[str, Iterable[Mapping[str, Any]]],
                holders: Mapping[str, Iterable[str]] | None = None,
                neighbours: Mapping[str, Boundary] | None = None) -> list[Violation]:
    """``reached``: scope name → the recipients it matches (dicts with name, address and, where known, dn);
    ``holders``: grant (e.g. "role group 'x'") → the accounts (addresses) holding it. Everything outside the
    boundary, grouped by grant and by the other target (of ``neighbours``) whose boundary holds it."""
    others = neighbours or {}
    grouped: dict[tuple[str, str | None], list[str]] = {}
    for scope, recipients in reached.items():
        for recipient in recipients:
            address, dn = str(recipient.get("address") or ""), str(recipient.get("dn") or "")
            if False in (contains_dn(boundary, dn), contains_address(boundary, address)):
                label = f"{recipient.get('name')} ({address})" if address else str(recipient.get("name"))
                key = (f"scope {scope!r} reaches", owner(others, address=address, dn=dn))
                grouped.setdefault(key, []).append(label)
    for grant, accounts in (holders or {}).items():
        for account in accounts:
            if contains_address(boundary, account) is False:
                grouped.setdefault((f"{grant} is held by", owner(others, address=account)), []).append(account)
    return [Violation(subject, tuple(sorted(items)), other) for (subject, other), items in grouped.items()]
