"""Which Microsoft Entra application permissions each RBAC-for-Applications role corresponds to. Data, in one place.

Source: Microsoft Learn, "Role Based Access Control for Applications in Exchange Online"
(https://learn.microsoft.com/exchange/permissions-exo/application-rbac), table "Supported Application Roles": each
role's protocol and "Permission List" (Application Mail.Read → Mail.Read, …, Application Mail Full Access →
Mail.ReadWrite + Mail.Send, Application Exchange Full Access → Mail.ReadWrite, Mail.Send, MailboxSettings.ReadWrite,
Calendars.ReadWrite, Contacts.ReadWrite; Application EWS.AccessAsApp → EWS). The same page says these grants add to
what the app holds in Entra: an application permission admin-consented tenant-wide reaches every mailbox whatever
the role's scope, so "remove the Entra consent, keep the scoped role".

A role is *overlapped* by any tenant-wide permission that reaches the same mailbox data, not only the identical name:
a read permission voids a read-write role's limit on reading, a read-write permission voids a read role entirely, and
EWS ``full_access_as_app`` (Office 365 Exchange Online) reaches everything. The Office 365 Exchange Online resource
also carries legacy Outlook REST permissions with the same names (Mail.Read, Calendars.ReadWrite.All, …); they reach
every mailbox too. Permission names as the resources' ``appRoles`` spell them (Microsoft Graph permissions reference;
public dumps of the Office 365 Exchange Online service principal's appRoles). Roles Microsoft's table gives no
permission list for (MailboxItem.*, MailboxFolder.*, MailboxConfigItem.*, MailTips.ReadBasic.All,
Mail-Advanced.ReadWrite.All, SMTP.SendAsApp) are not listed: no Entra permission is known to correspond to them.
"""

from __future__ import annotations

GRAPH = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph
EXCHANGE = "00000002-0000-0ff1-ce00-000000000000"  # Office 365 Exchange Online

RESOURCE_NAMES = {GRAPH: "Microsoft Graph", EXCHANGE: "Office 365 Exchange Online"}

_EWS = ((EXCHANGE, "full_access_as_app"),)
_MAIL_READ = ((GRAPH, "Mail.Read"), (GRAPH, "Mail.ReadBasic"), (GRAPH, "Mail.ReadBasic.All"),
              (GRAPH, "Mail.ReadWrite"), (EXCHANGE, "Mail.Read"), (EXCHANGE, "Mail.ReadWrite")) + _EWS
_MAIL_SEND = ((GRAPH, "Mail.Send"), (EXCHANGE, "Mail.Send")) + _EWS
_SETTINGS = ((GRAPH, "MailboxSettings.Read"), (GRAPH, "MailboxSettings.ReadWrite"),
             (EXCHANGE, "MailboxSettings.Read"), (EXCHANGE, "MailboxSettings.ReadWrite")) + _EWS
_CALENDARS = ((GRAPH, "Calendars.Read"), (GRAPH, "Calendars.ReadBasic.All"), (GRAPH, "Calendars.ReadWrite"),
              (EXCHANGE, "Calendars.Read"), (EXCHANGE, "Calendars.Read.All"),
              (EXCHANGE, "Calendars.ReadWrite.All")) + _EWS
_CONTACTS = ((GRAPH, "Contacts.Read"), (GRAPH, "Contacts.ReadWrite"), (EXCHANGE, "Contacts.Read"),
             (EXCHANGE, "Contacts.ReadWrite")) + _EWS

# role → the tenant-wide application permissions (resource app id, permission) that void its scope
OVERLAP: dict[str, frozenset[tuple[str, str]]] = {
    "Application Mail.Read": frozenset(_MAIL_READ),
    "Application Mail.ReadBasic": frozenset(_MAIL_READ),
    "Application Mail.ReadWrite": frozenset(_MAIL_READ),
    "Application Mail.Send": frozenset(_MAIL_SEND),
    "Application MailboxSettings.Read": frozenset(_SETTINGS),
    "Application MailboxSettings.ReadWrite": frozenset(_SETTINGS),
    "Application Calendars.Read": frozenset(_CALENDARS),
    "Application Calendars.ReadWrite": frozenset(_CALENDARS),
    "Application Contacts.Read": frozenset(_CONTACTS),
    "Application Contacts.ReadWrite": frozenset(_CONTACTS),
    "Application Mail Full Access": frozenset(_MAIL_READ + _MAIL_SEND),
    "Application Exchange Full Access": frozenset(_MAIL_READ + _MAIL_SEND + _SETTINGS + _CALENDARS + _CONTACTS),
    "Application EWS.AccessAsApp": frozenset(_EWS),
}

# every tenant-wide application permission that reaches mailbox data (of any role above)
MAILBOX_PERMISSIONS: frozenset[tuple[str, str]] = frozenset().union(*OVERLAP.values())

SOURCE = "Microsoft Learn, \"Role Based Access Control for Applications in Exchange Online\""
