"""The seed organisation: enough people, rooms and RBAC for a first run to show something real.

contoso.com (users in four offices, rooms and equipment, a room list, a mail-enabled security group of rooms,
the room-booking service account) and two hosted tenants under OU=Hosting,DC=hoster,DC=local.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.playbook.model import APPLICATION_ROLES, IMPERSONATION_ROLE, KNOWN_ROLES
from toolkit.sandbox.model import ManagementScope, Organisation, Recipient, RoleAssignment, RoleGroup

CONTOSO_USERS = "OU=Users,DC=contoso,DC=com"
CONTOSO_ROOMS = "OU=Rooms,DC=contoso,DC=com"
HOSTING = "OU=Hosting,DC=hoster,DC=local"
BERLIN_ROOM_LIST = f"CN=Berlin Rooms,{CONTOSO_ROOMS}"
BOOKABLE_ROOMS_GROUP = f"CN=Bookable Rooms,{CONTOSO_ROOMS}"

_FIRST = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Karla", "Leon",
          "Mia", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sven", "Tara", "Uwe", "Vera", "Willem", "Xenia"]
_LAST = ["Adler", "Becker", "Costa", "Dietrich", "Engel", "Fischer"]
_OFFICES = ["Berlin", "Munich", "London", "New York"]
_ROOMS = {"Berlin": 4, "Munich": 3, "London": 2, "New York": 2}


def _mailbox(name: str, address: str, kind: str, ou: str, office: str = "", **attributes: str) -> Recipient:
    return Recipient(name=name, alias=address.split("@")[0], primary_smtp_address=address.lower(),
                     recipient_type_details=kind, display_name=name, office=office,
                     distinguished_name=f"CN={name},{ou}", custom_attributes=attributes)


def platform_roles(platform: str) -> list[str]:
    """The built-in management roles of a platform (Exchange Online has no ApplicationImpersonation since 2025, and
    has the RBAC for Applications roles)."""
    if platform == "exchange-online":
        return sorted(set(KNOWN_ROLES) - {IMPERSONATION_ROLE}) + sorted(APPLICATION_ROLES)
    return sorted(KNOWN_ROLES)


def tenant_recipients(tenant: str, ou: str, domain: str, rooms: int = 3, users: int = 3) -> list[Recipient]:
    """A hosted tenant's mailboxes in its OU: its room-booking account svc-rooms@DOMAIN, users, rooms, a projector."""
    recipients = [_mailbox(f"{tenant} Room Booking", f"svc-rooms@{domain}", "UserMailbox", ou)]
    for index in range(users):
        first = _FIRST[index % len(_FIRST)] + ("" if index < len(_FIRST) else str(index // len(_FIRST) + 1))
        recipients.append(_mailbox(f"{first} ({tenant})", f"{first.lower()}@{domain}", "UserMailbox", ou))
    for number in range(1, rooms + 1):
        recipients.append(_mailbox(f"{tenant} Room {number}", f"room-{number}@{domain}", "RoomMailbox", ou))
    recipients.append(_mailbox(f"{tenant} Projector", f"projector@{domain}", "EquipmentMailbox", ou))
    return recipients


class TenantError(ValueError):
    """The tenant cannot be added as asked (its OU or an address is taken, or the organisation has no OUs)."""


def add_tenant(organisation: Organisation, tenant: str, ou: str, domain: str, rooms: int = 3,
               users: int = 3) -> list[Recipient]:
    """Add a hosted tenant (its OU and mailboxes) to an Exchange Server organisation; return its mailboxes."""
    if organisation.platform != "exchange-server":
        raise TenantError("an Exchange Online organisation has no OUs: hosted tenants live in Exchange Server "
                          "sandboxes")
    if any(existing.lower() == ou.lower() for existing in organisation.organizational_units):
        raise TenantError(f"the OU {ou} already exists")
    added = tenant_recipients(tenant, ou, domain.lower(), rooms, users)
    taken = {r.primary_smtp_address for r in organisation.recipients}
    clash = sorted(r.primary_smtp_address for r in added if r.primary_smtp_address in taken)
    if clash:
        raise TenantError(f"addresses already in use: {', '.join(clash[:3])}: choose another --domain")
    organisation.organizational_units.append(ou)
    organisation.recipients.extend(added)
    organisation.normalise()
    return added


def inventory_entry(tenant: str, ou: str, domain: str, state: Path) -> str:
    """The tenant as an inventory target (YAML, for a group's targets:): its values and its boundary."""
    import json

    values = {"tenant": tenant.lower(), "tenant_ou": ou, "service_account": f"svc-rooms@{domain}"}
    flow = ", ".join(f"{k}: {json.dumps(v)}" for k, v in values.items())
    return (f"{tenant.lower()}:\n  kind: sandbox\n  state: {json.dumps(str(state))}\n  vars: {{{flow}}}\n"
            f"  boundary: {{recipient_root: {json.dumps(ou)}, domains: [{json.dumps(domain)}]}}\n")


def seed_organisation(platform: str = "exchange-server") -> Organisation:
    recipients: list[Recipient] = []
    for index, first in enumerate(_FIRST):
        last = _LAST[index % len(_LAST)]
        recipients.append(_mailbox(f"{first} {last}", f"{first}.{last}@contoso.com".lower(), "UserMailbox",
                                   CONTOSO_USERS, _OFFICES[index % len(_OFFICES)]))
    recipients.append(_mailbox("Room Booking Service", "svc-rooms@contoso.com", "UserMailbox", CONTOSO_USERS,
                               "Berlin"))
    recipients.append(_mailbox("Exchange Admin", "admin@contoso.com", "UserMailbox", CONTOSO_USERS, "Berlin"))
    recipients.append(_mailbox("Reception Berlin", "reception@contoso.com", "SharedMailbox", CONTOSO_USERS, "Berlin"))
    recipients.append(_mailbox("Info", "info@contoso.com", "SharedMailbox", CONTOSO_USERS, "Munich"))
    for office, count in _ROOMS.items():
        slug = office.lower().replace(" ", "")
        for number in range(1, count + 1):
            room = _mailbox(f"Room {office} {number}", f"room-{slug}-{number}@contoso.com", "RoomMailbox",
                            CONTOSO_ROOMS, office, CustomAttribute1="bookable")
            room.member_of.append(BOOKABLE_ROOMS_GROUP)
            if office == "Berlin":
                room.member_of.append(BERLIN_ROOM_LIST)
            recipients.append(room)
    recipients.append(_mailbox("Projector Berlin 1", "projector-berlin-1@contoso.com", "EquipmentMailbox",
                               CONTOSO_ROOMS, "Berlin"))
    recipients.append(_mailbox("Pool Car Munich 1", "car-munich-1@contoso.com", "EquipmentMailbox", CONTOSO_ROOMS,
                               "Munich"))
    recipients.append(_mailbox("Berlin Rooms", "berlin-rooms@contoso.com", "RoomList", CONTOSO_ROOMS, "Berlin"))
    recipients.append(_mailbox("Bookable Rooms", "bookable-rooms@contoso.com", "MailUniversalSecurityGroup",
                               CONTOSO_ROOMS))
    recipients[-1].display_name = "Bookable rooms (all sites)"  # a display name that is not the name, as in real orgs
    # Security principals without any address: role-group members can be these (Add-RoleGroupMember -Member takes a
    # SecurityPrincipalIdParameter; /work/shared/reference/exchange.md "Role group members").
    recipients.append(Recipient(name="Room Sync Operator", recipient_type_details="User",
                                distinguished_name=f"CN=Room Sync Operator,{CONTOSO_USERS}"))
    recipients.append(Recipient(name="Room Admins", recipient_type_details="UniversalSecurityGroup",
                                distinguished_name=f"CN=Room Admins,{CONTOSO_USERS}"))
    for tenant, domain in (("Fabrikam", "fabrikam.example"), ("Tailspin", "tailspin.example")):
        recipients += tenant_recipients(tenant, f"OU={tenant},{HOSTING}", domain)

    online = platform == "exchange-online"
    if online:  # one tenant: no hosted OUs, no ApplicationImpersonation (removed in 2025), RBAC for Applications
        recipients = [r for r in recipients if "OU=Hosting" not in r.distinguished_name]
    roles = platform_roles(platform)
    organisation = Organisation(
        name="contoso.onmicrosoft.com" if online else "contoso",
        platform=platform,
        domain_controller="EURPR01A001DC01.eurprd01.prod.outlook.com" if online else "DC01.contoso.com",
        organizational_units=[] if online else [CONTOSO_USERS, CONTOSO_ROOMS, HOSTING, f"OU=Fabrikam,{HOSTING}",
                                                f"OU=Tailspin,{HOSTING}"],
        management_roles=roles,
        recipients=recipients,
        management_scopes=[] if online else [ManagementScope(name="Hosting tenants",
                                                             recipient_filter="RecipientType -ne $null",
                                                             recipient_root=HOSTING)],
        role_groups=[
            RoleGroup(name="Organization Management", description="Members of this management role group have "
                      "permissions to manage Exchange objects and their properties in the Exchange organization.",
                      members=["admin@contoso.com"]),
            RoleGroup(name="Recipient Management", description="Members of this management role group have rights "
                      "to create, manage, and remove Exchange recipient objects in the Exchange organization."),
            RoleGroup(name="View-Only Organization Management", description="Members of this management role group "
                      "can view recipient and configuration objects and their properties in the Exchange "
                      "organization."),
        ],
    )
    for role in ("Role Management", "Mail Recipients", "View-Only Configuration", "Mailbox Import Export"):
        organisation.role_assignments.append(RoleAssignment(
            name=f"{role}-Organization Management", role=role, role_assignee="Organization Management",
            role_assignee_type="RoleGroup"))
        organisation.role_assignments.append(RoleAssignment(
            name=f"{role}-Organization Management-Delegating", role=role, role_assignee="Organization Management",
            role_assignee_type="RoleGroup", delegating=True))
    organisation.role_assignments.append(RoleAssignment(
        name="Mail Recipients-Recipient Management", role="Mail Recipients", role_assignee="Recipient Management",
        role_assignee_type="RoleGroup"))
    organisation.role_assignments.append(RoleAssignment(
        name="View-Only Configuration-View-Only Organization Management", role="View-Only Configuration",
        role_assignee="View-Only Organization Management", role_assignee_type="RoleGroup"))
    organisation.normalise()
    return organisation
