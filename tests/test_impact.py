"""Access impact in diff: who gains or loses which mailboxes, widening findings, Markdown and JSON, --base trees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from markdown_it import MarkdownIt

from test_exchange_online import exo, pki  # noqa: F401 (fixtures: the loopback Exchange Online tenant)

from conftest import REPO

SAMPLE = REPO / "playbooks" / "recipients.sample.csv"
ROOMS = "    rooms: true\n"
WIDER = "    filter: \"RecipientTypeDetails -eq 'RoomMailbox' -or RecipientTypeDetails -eq 'UserMailbox'\"\n"
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def variant(workdir, name, old, new, source="classic.yaml"):
    text = (workdir / "playbooks" / source).read_text()
    assert old in text
    path = workdir / name
    path.write_text(text.replace(old, new))
    return path


def git(*args):
    subprocess.run(["git", *args], check=True, env=GIT_ENV, capture_output=True)


def test_done_when_a_filter_that_also_matches_user_mailboxes(cli, workdir):
    wider = variant(workdir, "wider.yaml", ROOMS, WIDER)
    result = cli("diff", "playbooks/classic.yaml", wider, "--recipients", SAMPLE)
    assert result.exit_code == 1  # they differ
    out = result.stdout
    assert ("  svc-rooms@contoso.com — ApplicationImpersonation: 17 mailboxes → 51 mailboxes  WIDENING"
            in out.splitlines())
    assert "      kept: 17 RoomMailbox" in out.splitlines()
    assert "      gained: 34 UserMailbox (e.g. admin@contoso.com, anna.adler@contoso.com" in out
    assert ("WIDENING: svc-rooms@contoso.com gains 34 UserMailbox (ApplicationImpersonation) through role group "
            "'Room booking service accounts', assignment 'ApplicationImpersonation-Room booking service accounts' "
            "on scope 'Room mailboxes' (RecipientTypeDetails -eq 'RoomMailbox' -or RecipientTypeDetails -eq "
            "'UserMailbox')") in out
    assert f"offline: {SAMPLE}" in out  # which CSV
    assert cli("diff", "playbooks/classic.yaml", wider, "--recipients", SAMPLE,
               "--fail-on-widening").exit_code == 1


def test_no_widening_exits_0_with_fail_on_widening_and_says_so(cli, workdir):
    narrower = variant(workdir, "narrower.yaml", ROOMS, ROOMS + "    office: Berlin\n")
    result = cli("diff", "playbooks/classic.yaml", narrower, "--recipients", SAMPLE, "--fail-on-widening")
    assert result.exit_code == 0
    assert "ApplicationImpersonation: 17 mailboxes → 4 mailboxes" in result.stdout
    assert "      lost: 13 RoomMailbox" in result.stdout
    assert "No widening: no principal gains a mailbox outside the playbooks' intent." in result.stdout
    # declaring equipment widens the intent with it: not a finding
    both = variant(workdir, "both.yaml", ROOMS, ROOMS + "    equipment: true\n")
    assert cli("diff", "playbooks/classic.yaml", both, "--recipients", SAMPLE, "--fail-on-widening").exit_code == 0


def test_fail_on_widening_needs_recipients_and_bad_csv_is_an_error(cli, workdir):
    result = cli("diff", "playbooks/classic.yaml", "playbooks/classic.yaml", "--fail-on-widening")
    assert result.exit_code == 2 and "needs --recipients" in result.stderr
    bad = workdir / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = cli("diff", "playbooks/classic.yaml", "playbooks/classic.yaml", "--recipients", bad)
    assert result.exit_code == 2 and "is not a Get-Recipient export" in result.stderr


def test_markdown_renders_as_a_table(cli, workdir):
    wider = variant(workdir, "wider.yaml", ROOMS, WIDER)
    result = cli("diff", "playbooks/classic.yaml", wider, "--recipients", SAMPLE, "--format", "markdown")
    assert result.exit_code == 1
    html = MarkdownIt("commonmark").enable("table").render(result.stdout)
    assert "<table>" in html
    assert "<th>principal</th>" in html and "<th>widening</th>" in html
    assert "<td>svc-rooms@contoso.com</td>" in html and "<td>ApplicationImpersonation</td>" in html
    assert "<td>17 mailboxes → 51 mailboxes</td>" in html
    assert "<strong>:red_circle: 34 UserMailbox</strong>" in html
    assert "```diff" in result.stdout and "<details>" in result.stdout


def test_json_lists_every_mailbox(cli, workdir):
    wider = variant(workdir, "wider.yaml", ROOMS, WIDER)
    data = json.loads(cli("diff", "playbooks/classic.yaml", wider, "--recipients", SAMPLE, "-o", "json").stdout)
    assert data["differ"] and data["widening"]
    row = data["playbooks"][0]["impact"]["rows"][0]
    assert row["principal"] == "svc-rooms@contoso.com" and row["right"] == "ApplicationImpersonation"
    assert len(row["added"]) == 34 and row["kept"] == {"RoomMailbox": 17}
    assert row["after"]["by_type"] == {"RoomMailbox": 17, "UserMailbox": 34}
    assert row["widening"]["counts"] == {"UserMailbox": 34}


def test_organisation_wide_grant_is_all_mailboxes(cli, workdir):
    org_wide = variant(workdir, "org-wide.yaml", "    scope: Room mailboxes\n", "    all_mailboxes: true\n")
    result = cli("diff", "playbooks/classic.yaml", org_wide, "--recipients", SAMPLE, "--fail-on-widening")
    assert result.exit_code == 1
    assert ("~ RoleGroup 'Room booking service accounts': scope changed: 'Room mailboxes' → ALL MAILBOXES"
            in result.stdout.splitlines())
    assert "ApplicationImpersonation: 17 mailboxes → ALL MAILBOXES (57)" in result.stdout
    direct = variant(workdir, "direct.yaml", "role_groups:", "role_assignments:\n  - role: ApplicationImpersonation\n"
                     "    user: svc-rooms@contoso.com\n    all_mailboxes: true\nrole_groups:")
    result = cli("diff", "playbooks/classic.yaml", direct, "--recipients", SAMPLE)
    assert ("+ ManagementRoleAssignment 'ApplicationImpersonation-svc-rooms@contoso.com' added: "
            "ApplicationImpersonation for user svc-rooms@contoso.com on ALL MAILBOXES") in result.stdout.splitlines()
    assert "direct assignment, assignment 'ApplicationImpersonation-svc-rooms@contoso.com' on ALL MAILBOXES" \
           in result.stdout


def test_access_policy_switched_to_deny_reaches_everyone_else(cli, workdir):
    source = "online-access-policy.yaml"
    text = (workdir / "playbooks" / source).read_text()
    assert "access_right: RestrictAccess" in text
    deny = variant(workdir, "deny.yaml", "access_right: RestrictAccess", "access_right: DenyAccess", source)
    with_groups = workdir / "members.csv"  # the export plus a MemberOfGroup column: the group's members are known
    lines = SAMPLE.read_text(encoding="utf-8-sig").splitlines()
    header, rows = lines[1], lines[2:]
    group = "CN=Bookable Rooms,OU=Rooms,DC=contoso,DC=com"
    with_groups.write_text("\n".join([header + ',"MemberOfGroup"'] + [
        row + (f',"{group}"' if '"RoomMailbox"' in row and "contoso.com" in row else ',""') for row in rows]) + "\n")
    result = cli("diff", f"playbooks/{source}", deny, "--recipients", with_groups, "--fail-on-widening")
    assert result.exit_code == 1, result.stdout
    assert "Entra application permissions: 11 mailboxes → 46 mailboxes  WIDENING" in result.stdout
    assert "DenyAccess to members of bookable-rooms@contoso.com (not a member)" in result.stdout
    assert "assumed: Graph not read" in result.stdout
    without = cli("diff", f"playbooks/{source}", deny, "--recipients", SAMPLE)
    assert "group membership is not in a Get-Recipient export" in without.stdout


@pytest.fixture
def repo(workdir):
    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "base")
    return workdir


def test_base_renders_with_the_base_inventory(cli, repo):
    inventory = repo / "inventory.yaml"
    text = inventory.read_text()
    assert "service_account: svc-rooms@contoso.com" in text
    inventory.write_text(text.replace("service_account: svc-rooms@contoso.com",
                                      "service_account: info@contoso.com", 1))
    result = cli("diff", "--base", "main", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "ex01",
                 "--recipients", SAMPLE)
    assert result.exit_code == 1, result.stderr
    assert "~ RoleGroup 'Room booking service accounts': member added: info@contoso.com" in result.stdout
    assert "~ RoleGroup 'Room booking service accounts': member removed: svc-rooms@contoso.com" in result.stdout
    assert "  info@contoso.com — ApplicationImpersonation: 0 mailboxes → 17 mailboxes" in result.stdout
    assert "  svc-rooms@contoso.com — ApplicationImpersonation: 17 mailboxes → 0 mailboxes" in result.stdout


def test_base_shows_added_and_deleted_playbooks(cli, repo):
    shutil.copy(repo / "playbooks" / "classic.yaml", repo / "playbooks" / "new-one.yaml")
    (repo / "playbooks" / "delegate-access.yaml").unlink()
    result = cli("diff", "--base", "main", "playbooks/classic.yaml", "playbooks/new-one.yaml",
                 "--recipients", SAMPLE)
    assert result.exit_code == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "+ playbook playbooks/new-one.yaml added (not at the base)" in lines
    assert "- playbook main:playbooks/delegate-access.yaml deleted" in lines
    assert any(line.startswith("- MailboxPermission") and "removed: FullAccess on" in line for line in lines)
    assert "--- /dev/null" in lines and "+++ /dev/null" in lines
    assert "recipients.sample" not in " ".join(l for l in lines if l.startswith(("+ playbook", "- playbook")))


def test_base_errors_exit_2(cli, repo):
    missing = cli("diff", "--base", "no-such-branch", "playbooks/classic.yaml")
    assert missing.exit_code == 2
    assert "the base revision 'no-such-branch' does not exist" in missing.stderr
    option = cli("diff", "--base=--output=pwned", "playbooks/classic.yaml")
    assert option.exit_code == 2 and not (repo / "pwned").exists()
    nowhere = cli("diff", "--base", "main", "playbooks/nowhere.yaml")
    assert nowhere.exit_code == 2 and "exists neither on disk nor at main" in nowhere.stderr
    (repo / "playbooks" / "classic.yaml").write_text("exkit: 1\nname: [broken\n")
    broken = cli("diff", "--base", "main", "playbooks/classic.yaml")
    assert broken.exit_code == 2
    assert cli("diff", "--base", "main", "playbooks/online-rooms.yaml").exit_code == 0  # unchanged: same


# ----------------------------------------------------------------------------------------------------- live: plan
def by_hand(script):
    from toolkit.targets.sandbox import SandboxTarget

    result = SandboxTarget().run_script("$ErrorActionPreference = 'Stop'\n" + script)
    assert result.exit_code == 0, result.stderr


def test_plan_impact_on_the_live_sandbox(cli, workdir, sandbox_state):
    assert cli("apply", "playbooks/classic.yaml", "--yes").exit_code == 0
    wider = variant(workdir, "wider.yaml", ROOMS, WIDER)
    result = cli("plan", wider, "--fail-on-widening")
    assert result.exit_code == 1
    assert f"Access impact (live: sandbox organisation {sandbox_state}):" in result.stdout
    assert "svc-rooms@contoso.com — ApplicationImpersonation: 17 mailboxes → 51 mailboxes  WIDENING" in result.stdout
    assert "      grant: ApplicationImpersonation for svc-rooms@contoso.com on scope 'Room mailboxes'" \
           in result.stdout.splitlines()
    same = cli("plan", "playbooks/classic.yaml", "--fail-on-widening", "--detailed-exitcode")
    assert same.exit_code == 0
    assert "ApplicationImpersonation: 17 mailboxes → 17 mailboxes  (unchanged)" in same.stdout
    # an exclusive scope on a room takes it away from the room-booking grant, before and after
    by_hand("New-ManagementScope -Name 'VIP room' -RecipientRestrictionFilter \"Name -eq 'Room Berlin 1'\" "
            "-Exclusive -Force | Out-Null")
    data = json.loads(cli("plan", "playbooks/classic.yaml", "--impact", "-o", "json").stdout)
    row = data["impact"]["rows"][0]
    assert row["before"]["count"] == row["after"]["count"] == 16
    assert "room-berlin-1@contoso.com" not in row["added"]
    # a direct organisation-wide assignment in the plan: ALL MAILBOXES, loudly
    org_wide = variant(workdir, "org-wide.yaml", "    scope: Room mailboxes\n", "    all_mailboxes: true\n")
    result = cli("plan", org_wide, "--impact")
    assert "      grant: ApplicationImpersonation for svc-rooms@contoso.com on ALL MAILBOXES" in result.stdout
    assert "ApplicationImpersonation: 16 mailboxes → 56 mailboxes  WIDENING" in result.stdout  # the VIP room stays out


def test_plan_impact_shows_entra_consent_as_all_mailboxes(cli, exo):  # noqa: F811
    from servers.entra import GRAPH_APP_ID, ROOM_APP_ID

    server, inventory = exo
    rooms = REPO / "playbooks" / "online-rooms.yaml"
    assert cli("apply", rooms, "-i", inventory, "-t", "cert", "--yes").exit_code == 0
    server.directory.grant(ROOM_APP_ID, GRAPH_APP_ID, "Calendars.ReadWrite", "2026-11-02T09:14:03Z")
    result = cli("plan", rooms, "-i", inventory, "-t", "cert", "--impact")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    entra = next(line for line in lines if "(Entra consent)" in line)
    assert entra.startswith("  Room booking app — Calendars.ReadWrite (Entra consent): ALL MAILBOXES (")
    assert any(line.startswith("  Room booking app — Application Calendars.ReadWrite: ") for line in lines)


def test_check_fails_on_widening_against_the_base(cli, repo):
    assert cli("render", "playbooks/classic.yaml", "--out", "reviewed").exit_code == 0
    git("add", ".")
    git("commit", "-qm", "reviewed")
    assert cli("check", "reviewed", "--recipients", SAMPLE, "--fail-on-widening").exit_code == 0
    path = repo / "playbooks" / "classic.yaml"
    path.write_text(path.read_text().replace(ROOMS, WIDER))
    assert cli("render", "playbooks/classic.yaml", "--out", "reviewed").exit_code == 0
    plain = cli("check", "reviewed")
    assert plain.exit_code == 0  # up to date: without the flag a widening passes
    result = cli("check", "reviewed", "--recipients", SAMPLE, "--fail-on-widening", "--base", "main")
    assert result.exit_code == 1
    assert "playbooks/classic.yaml: WIDENING: svc-rooms@contoso.com gains 34 UserMailbox" in result.stderr
    assert cli("check", "reviewed", "--fail-on-widening").exit_code == 2  # needs --recipients


def test_dropped_recipient_root_reaches_another_tenant(cli, workdir):
    hosted = workdir / "playbooks" / "hosted-tenant.yaml"
    unrooted = variant(workdir, "unrooted.yaml", '    recipient_root: "{{ tenant_ou }}"\n', "", "hosted-tenant.yaml")
    tenant = ["--var", "tenant=fabrikam", "--var", "tenant_ou=OU=Fabrikam,OU=Hosting,DC=hoster,DC=local",
              "--var", "service_account=svc-rooms@fabrikam.example"]
    result = cli("diff", hosted, unrooted, "--recipients", SAMPLE, "--fail-on-widening", *tenant)
    assert result.exit_code == 1, result.stderr
    assert "svc-rooms@fabrikam.example — ApplicationImpersonation: 4 mailboxes → 21 mailboxes  WIDENING" \
           in result.stdout
    assert "WIDENING: svc-rooms@fabrikam.example gains 3 EquipmentMailbox, 14 RoomMailbox" in result.stdout


def test_impact_benchmark_prints_its_line():
    """benchmarks/impact.py runs and prints its figures (timings are never asserted)."""
    import re
    import sys

    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "impact.py"), "--recipients", "300",
                          "--assignments", "10"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r"recipients=300 assignments=11 impact_s=\d+\.\d\d live_s=\d+\.\d\d widening=True",
                        run.stdout.strip()), run.stdout


def test_render_set_review_file_and_check(cli, repo):
    render = ["render", "playbooks/classic.yaml", "playbooks/online-access-policy.yaml", "--out", "reviewed"]
    assert cli(*render, "--recipients", SAMPLE).exit_code == 0
    text = (repo / "reviewed" / "access.md").read_text()
    assert "## `playbooks/classic.yaml` on `sandbox`" in text
    assert "| svc-rooms@contoso.com | ApplicationImpersonation | 17 mailboxes | 17 RoomMailbox |   |" in text
    assert "> note: group membership is not in a Get-Recipient export" in text
    assert cli("check", "reviewed").exit_code == 0
    path = repo / "playbooks" / "classic.yaml"
    path.write_text(path.read_text().replace(ROOMS, WIDER))
    assert cli(*render).exit_code == 0  # the scripts again, but not the review file
    result = cli("check", "reviewed")
    assert result.exit_code == 1
    assert "reviewed/access.md: stale — the effective access the playbooks grant over" in result.stderr
    assert cli(*render, "--recipients", SAMPLE).exit_code == 0
    assert "| ApplicationImpersonation | 51 mailboxes | 17 RoomMailbox, 34 UserMailbox | 34 UserMailbox |" \
           in (repo / "reviewed" / "access.md").read_text()
    assert cli("check", "reviewed").exit_code == 0
    assert cli("render", "playbooks/classic.yaml", "--recipients", SAMPLE).exit_code == 2  # a folder render only
