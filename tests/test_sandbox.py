"""The sandbox organisation: cmdlet semantics, filters against recipients, and crash-safe persistence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from toolkit.sandbox import org as store
from toolkit.sandbox.seed import seed_organisation


def run_ok(exchange, script):
    outcome = exchange.run("$ErrorActionPreference = 'Stop'\n" + script)
    assert outcome.exit_code == 0, outcome.errors
    return outcome.output


def run_error(exchange, script):
    """The first error the script wrote. Exchange's cmdlets are module functions: a script-scope
    $ErrorActionPreference does not make their errors terminating (PowerShell issue #4568), so the script goes on."""
    outcome = exchange.run("$ErrorActionPreference = 'Stop'\n" + script)
    assert outcome.errors
    return outcome.errors[0].splitlines()[0]


# ------------------------------------------------------------------------------------- filters vs recipients
@pytest.mark.parametrize("filter_text, expected_in, expected_out", [
    ("RecipientTypeDetails -eq 'RoomMailbox'", {"room-berlin-1@contoso.com", "room-1@fabrikam.example"},
     {"svc-rooms@contoso.com", "reception@contoso.com", "projector-berlin-1@contoso.com"}),
    ("RecipientTypeDetails -eq 'RoomMailbox' -and Office -eq 'Munich'", {"room-munich-3@contoso.com"},
     {"room-berlin-1@contoso.com", "info@contoso.com"}),
    ("MemberOfGroup -eq 'CN=Berlin Rooms,OU=Rooms,DC=contoso,DC=com'", {"room-berlin-4@contoso.com"},
     {"room-munich-1@contoso.com", "reception@contoso.com"}),
    ("ResourceType -eq 'Equipment'", {"car-munich-1@contoso.com"}, {"room-berlin-1@contoso.com"}),
    ("CustomAttribute1 -eq 'bookable'", {"room-london-2@contoso.com"}, {"room-1@fabrikam.example"}),
])
def test_recipient_preview_filter(exchange, filter_text, expected_in, expected_out):
    literal = "'" + filter_text.replace("'", "''") + "'"
    matched = set(run_ok(exchange, f"Write-Output (@(Get-Recipient -RecipientPreviewFilter {literal} "
                                   "-ResultSize Unlimited).PrimarySmtpAddress)"))
    assert expected_in <= matched
    assert not expected_out & matched


def test_scope_preview_only_rooms_for_the_classic_filter(exchange):
    matched = run_ok(exchange, "Write-Output (@(Get-Recipient -RecipientPreviewFilter \"RecipientTypeDetails -eq "
                               "'RoomMailbox'\").RecipientTypeDetails)")
    assert set(matched) == {"RoomMailbox"} and len(matched) == 11 + 6


# ------------------------------------------------------------------------------------- cmdlet semantics
def test_new_role_group_checks_everything_before_creating(exchange):
    message = run_error(exchange, "New-RoleGroup -Name 'G' -Roles 'ApplicationImpersonation' "
                                  "-Members @('svc-rooms@contoso.com', 'ghost@contoso.com')")
    assert message == ("The operation couldn't be performed because object 'ghost@contoso.com' couldn't be found on "
                       "'DC01.contoso.com'.")
    assert exchange.org.role_group("G") is None
    assert not [a for a in exchange.org.role_assignments if a.role_assignee == "G"]


def test_role_group_assignments_carry_the_write_scope(exchange):
    run_ok(exchange, """
    New-ManagementScope -Name 'Rooms' -RecipientRestrictionFilter "RecipientTypeDetails -eq 'RoomMailbox'" | Out-Null
    New-RoleGroup -Name 'G' -Roles 'ApplicationImpersonation' -Members 'svc-rooms@contoso.com' -CustomRecipientWriteScope 'Rooms' | Out-Null
    """)
    assignment = exchange.org.assignment("ApplicationImpersonation-G")
    assert assignment.custom_recipient_write_scope == "Rooms"
    users = run_ok(exchange, "Write-Output (@(Get-ManagementRoleAssignment -Role ApplicationImpersonation "
                             "-GetEffectiveUsers).EffectiveUserName)")
    assert users == ["Room Booking Service"]  # Exchange reports the user's name
    writable = run_ok(exchange, "Write-Output (@(Get-ManagementRoleAssignment -WritableRecipient "
                                "'room-berlin-1@contoso.com' -Role ApplicationImpersonation).Name)")
    assert writable == ["ApplicationImpersonation-G"]
    assert run_ok(exchange, "Write-Output (@(Get-ManagementRoleAssignment -WritableRecipient 'anna.adler@contoso.com' "
                            "-Role ApplicationImpersonation).Count)") == ["0"]


def test_scope_in_use_cannot_be_removed(exchange):
    message = run_error(exchange, """
    New-ManagementScope -Name 'Rooms' -RecipientRestrictionFilter "RecipientTypeDetails -eq 'RoomMailbox'" | Out-Null
    New-ManagementRoleAssignment -Name 'A' -Role 'ApplicationImpersonation' -User 'svc-rooms@contoso.com' -CustomRecipientWriteScope 'Rooms' | Out-Null
    Remove-ManagementScope -Identity 'Rooms' -Confirm:$false
    """)
    assert message == "Management scope \"Rooms\" can't be deleted because it's referenced by role assignments: A."


@pytest.mark.parametrize("script, message", [
    ("New-ManagementScope -Name 'Hosting tenants' -RecipientRestrictionFilter 'Office -eq ''x'''",
     "The management scope 'Hosting tenants' already exists."),
    ("New-ManagementScope -Name 'S' -RecipientRestrictionFilter 'Ofice -eq ''x'''",
     "Cannot bind parameter 'RecipientRestrictionFilter' to the target."),
    ("New-ManagementScope -Name 'S' -RecipientRestrictionFilter 'Office -eq ''x''' -RecipientRoot 'OU=Nope,DC=x'",
     "The operation couldn't be performed because object 'OU=Nope,DC=x' couldn't be found"),
    ("Add-RoleGroupMember -Identity 'Organization Management' -Member 'admin@contoso.com'",
     "The recipient \"admin@contoso.com\" is already a member of the group \"Organization Management\"."),
    ("New-ManagementRoleAssignment -Role 'ApplicationImpersonaton' -User 'svc-rooms@contoso.com'",
     "The operation couldn't be performed because object 'ApplicationImpersonaton' couldn't be found"),
    ("Remove-MailboxPermission -Identity 'room-berlin-1@contoso.com' -User 'svc-rooms@contoso.com' "
     "-AccessRights FullAccess -Confirm:$false", "Can't remove the access control entry"),
    ("Add-MailboxPermission -Identity 'room-berlin-1@contoso.com' -User 'svc-rooms@contoso.com' "
     "-AccessRights FullAccess -InheritanceType Everything", "Cannot convert value \"Everything\""),
    ("New-ManagementRoleAssignment -Role 'ApplicationImpersonation' -User 'svc-rooms@contoso.com' "
     "-CustomRecipientWriteScope 'Hosting tenants' -RecipientOrganizationalUnitScope 'OU=Hosting,DC=hoster,DC=local'",
     "can't be used together"),
])
def test_errors_are_worded_like_exchange(exchange, script, message):
    assert message in run_error(exchange, script)


def test_mailbox_permissions(exchange):
    run_ok(exchange, "Add-MailboxPermission -Identity 'room-berlin-1@contoso.com' -User 'svc-rooms@contoso.com' "
                     "-AccessRights FullAccess -InheritanceType All -AutoMapping $false | Out-Null")
    rights = run_ok(exchange, "foreach ($p in @(Get-MailboxPermission -Identity 'room-berlin-1@contoso.com')) "
                              "{ Write-Output ($p.User + ':' + [string]$p.AccessRights) }")
    assert rights == ["NT AUTHORITY\\SELF:FullAccess ReadPermission", "svc-rooms@contoso.com:FullAccess"]
    assert exchange.org.mailbox_permissions[0].auto_mapping is False
    run_ok(exchange, "Remove-MailboxPermission -Identity 'room-berlin-1@contoso.com' -User 'svc-rooms@contoso.com' "
                     "-AccessRights FullAccess -InheritanceType All -Confirm:$false")
    assert exchange.org.mailbox_permissions == []


def test_role_assignee_name_is_the_users_name(exchange):
    run_ok(exchange, "New-ManagementRoleAssignment -Name 'A' -Role 'ApplicationImpersonation' "
                     "-User 'svc-rooms@contoso.com' | Out-Null")
    assert run_ok(exchange, "Write-Output (Get-ManagementRoleAssignment -Identity 'A').RoleAssigneeName") == [
        "Room Booking Service"]
    assert run_ok(exchange, "Write-Output (@(Get-ManagementRoleAssignment -RoleAssignee 'svc-rooms@contoso.com').Name)") == ["A"]


# ------------------------------------------------------------------------------------- persistence
def test_state_round_trip_is_stable(tmp_path):
    path = tmp_path / "s.json"
    store.save(path, seed_organisation())
    first = path.read_text()
    store.save(path, store.load(path))
    assert path.read_text() == first
    assert store.load(tmp_path / "missing.json").to_json() == first  # a missing file is the seed


def test_a_script_that_changes_nothing_does_not_rewrite_the_state(tmp_path):
    from toolkit.targets.sandbox import SandboxTarget

    path = tmp_path / "s.json"
    target = SandboxTarget(path)
    assert target.run_script("Get-ManagementScope | Out-Null\n").exit_code == 0
    assert path.read_text() == seed_organisation().to_json()  # a missing state is written on first use
    inode = path.stat().st_ino
    assert target.run_script("Get-ManagementScope | Out-Null\n").exit_code == 0
    assert path.stat().st_ino == inode  # not replaced: nothing changed
    assert target.run_script("New-ManagementScope -Name 'R' -RecipientRestrictionFilter "
                             "\"RecipientTypeDetails -eq 'RoomMailbox'\"\n").exit_code == 0
    assert path.stat().st_ino != inode and "\"R\"" in path.read_text()


def test_runs_reuse_the_organisation_only_while_the_file_is_as_they_left_it(tmp_path, monkeypatch):
    """A process's runs against one state file parse it once while nothing else writes it; a file changed by
    anyone else (another process's save, a hand edit of the same size) is read again, and a run that failed in
    Python (its organisation possibly half changed, not saved) leaves nothing to reuse."""
    from toolkit.targets.sandbox import SandboxTarget

    path = tmp_path / "s.json"
    target = SandboxTarget(path)
    parsed = []
    real = store.load_with_text
    monkeypatch.setattr(store, "load_with_text", lambda *a, **k: parsed.append(1) or real(*a, **k))
    new_scope = "New-ManagementScope -Name '{}' -RecipientRestrictionFilter \"RecipientTypeDetails -eq 'RoomMailbox'\"\n"
    assert target.run_script(new_scope.format("A")).exit_code == 0
    assert target.run_script("Get-ManagementScope | Out-Null\n").exit_code == 0
    assert target.run_script(new_scope.format("B")).exit_code == 0
    assert len(parsed) == 1  # the missing file's seed, then the organisation as saved
    text = path.read_text()
    path.write_text(text.replace('"name": "B"', '"name": "C"'))  # same inode, same size, another name
    assert path.stat().st_size == len(text.encode())
    listed = target.run_script("(Get-ManagementScope).Name\n").stdout.split()
    assert "C" in listed and "B" not in listed and len(parsed) == 2
    other = real(path)[0]  # (not counted: this is the other writer)
    other.management_scopes = [s for s in other.management_scopes if s.name != "A"]
    store.save(path, other)  # as another process saves: a new file renamed over it
    listed = target.run_script("(Get-ManagementScope).Name\n").stdout.split()
    assert "A" not in listed and len(parsed) == 3

    def broken(*args, **kwargs):
        raise RuntimeError("a bug halfway through a run")

    monkeypatch.setattr(store, "save", broken)
    with pytest.raises(RuntimeError):
        target.run_script(new_scope.format("D"))  # D is in the organisation in memory, never saved
    monkeypatch.undo()
    listed = SandboxTarget(path).run_script("(Get-ManagementScope).Name\n").stdout.split()
    assert "D" not in listed


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, mocker):
    # A full disk cannot be produced on demand here: the seam is os.fsync failing mid-save.
    path = tmp_path / "s.json"
    store.save(path, seed_organisation())
    before = path.read_bytes()
    organisation = store.load(path)
    organisation.management_scopes.clear()
    mocker.patch("toolkit.sandbox.org.os.fsync", side_effect=OSError(28, "No space left on device"))
    with pytest.raises(OSError):
        store.save(path, organisation)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_a_save_is_fsynced_unless_it_stands_for_someone_elses_storage(tmp_path, mocker):
    """The sandbox's saves flush the file and its folder to the disk; durable=False (the loopback servers' tenants)
    writes and renames the same way without them."""
    path = tmp_path / "s.json"
    fsync = mocker.patch("toolkit.sandbox.org.os.fsync", wraps=os.fsync)
    organisation = seed_organisation()
    assert store.save(path, organisation) == path.read_text() == organisation.to_json()
    assert fsync.call_count == 2  # the file, then the folder holding the rename
    organisation.management_scopes.clear()
    inode = path.stat().st_ino
    assert store.save(path, organisation, durable=False) == path.read_text() == organisation.to_json()
    assert fsync.call_count == 2 and path.stat().st_ino != inode  # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_killed_writer_never_leaves_a_half_written_file(tmp_path):
    path = tmp_path / "s.json"
    code = ("import sys; from pathlib import Path; from toolkit.sandbox import org; from toolkit.sandbox.seed import "
            "seed_organisation\no = seed_organisation(); p = Path(sys.argv[1]); i = 0\nwhile True:\n"
            "    o.name = 'contoso-' + str(i) * 5000; org.save(p, o); i += 1\n")
    from toolkit.sandbox.model import Organisation

    for _ in range(3):
        path.unlink(missing_ok=True)
        writer = subprocess.Popen([sys.executable, "-c", code, str(path)])
        try:
            deadline = time.monotonic() + 120  # a loaded machine may take long to start the writer
            while not path.exists() and time.monotonic() < deadline and writer.poll() is None:
                time.sleep(0.01)
            assert path.exists(), "the writer never wrote the state file"
            time.sleep(0.2)  # let it be in the middle of later writes
        finally:
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(timeout=60)
        # The file on disk is one complete write (store.load would hide a missing file behind the seed organisation).
        organisation = Organisation.model_validate_json(path.read_text(encoding="utf-8"))
        counter = organisation.name.removeprefix("contoso-")
        assert organisation.name.startswith("contoso-") and len(counter) % 5000 == 0
        assert counter == counter[: len(counter) // 5000] * 5000


def test_corrupt_state_is_a_clear_error(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(store.StateFileError, match="exkit sandbox reset"):
        store.load(path)
