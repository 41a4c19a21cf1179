"""Run a rendered script against an Exchange Online tenant whose only door is the admin REST endpoint.

That endpoint runs one cmdlet per call (InvokeCommand), so exkit runs the script itself, in its PowerShell
interpreter, and sends each Exchange cmdlet the script calls to the tenant:

- **collection reads** — the Get-* cmdlets that list a whole collection when called without parameters — are read
  once, whole, on first use, and the script's calls (by identity, by assignee, …) are answered from that copy with
  Exchange's own matching (the sandbox's cmdlet semantics): one round trip per collection, not one per object;
- **other reads** (a group's members, a mailbox's permissions, a recipient by identity, authorization tests) go to
  the tenant one call each, and what they return is remembered in the copy;
- **changes** go to the tenant (unless the run only plans) and are made in the copy too, so later reads in the same
  script see them.

Before the script runs, the collections it names are read concurrently (at most ``concurrent_reads`` at once for
the tenant): a script's first reads then cost about one round trip, not one per collection. It is the same read the
first use would send, only earlier; a change the script makes afterwards is made in the tenant and in the copy alike,
so what the script reads stays what the tenant holds.

The script is the one that was rendered (and reviewed): what was approved is what runs.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from toolkit.sandbox.cmdlets import ExchangeCmdlets
from toolkit.sandbox.commands import CmdletError, Command
from toolkit.sandbox.interpreter import Interpreter, RunOutcome
from toolkit.sandbox.mirror import add_objects
from toolkit.sandbox.model import Organisation
from toolkit.sandbox.seed import platform_roles
from toolkit.sandbox.values import PSObject, to_string

# Get-* cmdlets that, called without parameters, list the whole collection (Exchange Online cmdlet reference), and
# the type of object each lists.
COLLECTIONS = {"Get-ManagementScope": "ManagementScope", "Get-RoleGroup": "RoleGroup",
               "Get-ManagementRoleAssignment": "RoleAssignment", "Get-ServicePrincipal": "ServicePrincipal",
               "Get-ApplicationAccessPolicy": "ApplicationAccessPolicy"}
# Reads without a collection form worth reading whole: one call each; what they return is kept.
PER_CALL = {"Get-Recipient": "Recipient", "Get-User": "Recipient", "Get-Group": "Recipient",
            "Get-RoleGroupMember": "RoleGroupMember", "Get-MailboxPermission": "MailboxPermission",
            "Test-ServicePrincipalAuthorization": ""}
# The connector signed in already: the script's own connection commands do nothing here.
LOCAL = {"Connect-ExchangeOnline", "Disconnect-ExchangeOnline", "New-PSSession", "Import-PSSession",
         "Remove-PSSession"}

Invoke = Callable[[str, dict[str, Any]], list[dict[str, Any]]]


class CallFailed(Exception):
    """A cmdlet the tenant refused: ``reason`` is Exchange's exception type (ManagementObjectNotFoundException, …)."""

    def __init__(self, message: str, reason: str = "", category: str = "NotSpecified") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.category = category


class TenantScriptRunner:
    """Runs scripts against one tenant through ``invoke`` (one cmdlet per call, raising :class:`CallFailed`)."""

    def __init__(self, invoke: Invoke, *, send_changes: bool, concurrent_reads: int = 1) -> None:
        self.invoke = invoke
        self.send_changes = send_changes
        self.concurrent_reads = concurrent_reads
        self.org = Organisation(name="tenant", platform="exchange-online",
                                management_roles=platform_roles("exchange-online"), domain_controller="(the tenant)")
        self.read: set[str] = set()
        self.failed: dict[str, CmdletError] = {}  # collections whose read ahead was refused
        self.calls = 0
        self.notes: list[str] = []

    def run(self, script: str, on_output: Callable[[str], None] | None = None) -> RunOutcome:
        self.read_ahead(script)
        interpreter = Interpreter({})
        interpreter.on_output = on_output
        local = ExchangeCmdlets(self.org).commands()
        interpreter.commands.update({name.lower(): self._command(command) for name, command in local.items()})
        return interpreter.run(script)

    # ------------------------------------------------------------------------------------------- commands
    def _command(self, command: Command) -> Command:
        name = command.name
        if name in LOCAL:
            return command
        if name in COLLECTIONS:
            run = self._collection_read(command)
        elif name in PER_CALL or not command.should_process:
            run = self._forwarded_read(command)
        else:
            run = self._change(command)
        return command.with_run(run)

    def _send(self, cmdlet: str, bound: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls += 1
        try:
            return self.invoke(cmdlet, {k: _json(v) for k, v in bound.items()})
        except CallFailed as exc:
            raise CmdletError(exc.message, exc.category, exc.reason) from None

    def _collection_read(self, command: Command) -> Callable[[dict[str, Any], list[Any]], list[Any]]:
        def run(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
            if command.name in self.failed:  # read ahead and refused: the script meets that error, once
                raise self.failed.pop(command.name)
            if command.name not in self.read:
                listed = self._send(command.name, {})
                add_objects(self.org, [{**item, "type": COLLECTIONS[command.name]} for item in listed])
                self.read.add(command.name)
            if bound.get("RoleAssignee"):
                self._know_principal(to_string(bound["RoleAssignee"]))
            return command.run(bound, pipeline)

        return run

    def read_ahead(self, script: str) -> None:
        """Read the collections ``script`` names, ``concurrent_reads`` at a time, before it runs."""
        named = _collections_named(script)
        wanted = [name for name in COLLECTIONS if name not in self.read and name in named]
        if len(wanted) < 2 or self.concurrent_reads < 2:
            return  # nothing to overlap: the first use reads it

        def read(name: str) -> list[dict[str, Any]] | CmdletError:
            try:
                return self._send(name, {})
            except CmdletError as exc:  # kept for the script's first use of the collection: not sent again
                return exc

        answers: list[list[dict[str, Any]] | CmdletError] = []
        for first in range(0, len(wanted), self.concurrent_reads):  # at most concurrent_reads at once: this thread
            batch = wanted[first:first + self.concurrent_reads]     # reads one, the process's readers the others
            others = [_readers().submit(read, name) for name in batch[1:]]
            answers.append(read(batch[0]))
            answers += [future.result() for future in others]
        for name, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, CmdletError):
                self.failed[name] = answer
                continue
            add_objects(self.org, [{**item, "type": COLLECTIONS[name]} for item in answer])
            self.read.add(name)

    def _know_principal(self, identity: str) -> None:
        """Exchange matches -RoleAssignee against the principal behind the name: the copy must hold it too (one
        read of it, once; an identity that is a role group or a service principal is known already)."""
        known = (self.org.recipient(identity) or self.org.role_group(identity)
                 or any(identity.lower() in (p.app_id, p.object_id) for p in self.org.service_principals))
        if known or identity.lower() in self.read:
            return
        self.read.add(identity.lower())
        try:
            found = self._send("Get-Recipient", {"Identity": identity})
        except CmdletError as exc:
            if exc.error_id != "ManagementObjectNotFoundException":
                raise
            return
        add_objects(self.org, [{**item, "type": "Recipient"} for item in found])

    def _forwarded_read(self, command: Command) -> Callable[[dict[str, Any], list[Any]], list[Any]]:
        def run(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
            answer = self._send(command.name, bound)
            kind = PER_CALL.get(command.name, "")
            if kind:
                extra = {"RoleGroupMember": {"Group": to_string(bound.get("Identity"))},
                         "MailboxPermission": {"Mailbox": to_string(bound.get("Identity")),
                                               "Trustee": to_string(bound.get("User"))}}.get(kind, {})
                add_objects(self.org, [{**item, **extra, "type": kind} for item in answer])
            return [PSObject(command.name.split("-", 1)[1], item) for item in answer]

        return run

    def _change(self, command: Command) -> Callable[[dict[str, Any], list[Any]], list[Any]]:
        def run(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
            if not self.send_changes:
                return command.run(bound, pipeline)
            answer = self._send(command.name, bound)
            try:
                command.run(dict(bound), pipeline)  # keep the copy in step for the script's later reads
            except CmdletError as exc:
                self.notes.append(f"{command.name}: the tenant accepted a change exkit's copy could not follow "
                                  f"({exc.message})")
            return [PSObject(command.name.split("-", 1)[1], item) for item in answer]

        return run


# A collection's read cmdlet named as a word (a call, or a Get-Command check before one), in any case: one pass over
# a script finds them all, each alternative a group of its own (the group that matched names the collection).
_BY_LENGTH = sorted(COLLECTIONS, key=len, reverse=True)
_COLLECTION_NAMES = re.compile("(?<![\\w-])(?:" + "|".join(f"(?P<c{index}>{re.escape(name)})"
                                                            for index, name in enumerate(_BY_LENGTH))
                               + ")(?![\\w-])", re.IGNORECASE)


_READERS: dict[int, ThreadPoolExecutor] = {}  # process id → the threads reading ahead for that process's tenants
_READERS_LOCK = threading.Lock()


def _readers() -> ThreadPoolExecutor:
    """The threads that read ahead for every tenant of this process, made as reads need them and kept for the next
    tenants' (a pool per script made and ended a thread per read). Per process: a forked worker has none of its
    parent's threads. Each tenant bounds its own reads in flight (concurrent_reads); the pool only bounds them all."""
    pid = os.getpid()
    with _READERS_LOCK:
        pool = _READERS.get(pid)
        if pool is None:
            pool = _READERS[pid] = ThreadPoolExecutor(max_workers=64, thread_name_prefix="exkit-read")
        return pool


def _collections_named(script: str) -> set[str]:
    """The collections' read cmdlets ``script`` names (as COLLECTIONS spells them, whatever case the script wrote:
    a case-insensitive match also takes ſ for s and İ for I)."""
    return {_BY_LENGTH[int(str(found.lastgroup)[1:])] for found in _COLLECTION_NAMES.finditer(script)}


def _json(value: Any) -> Any:
    """A bound parameter value as the REST endpoint takes it (switches are booleans, arrays are lists)."""
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return to_string(value)
