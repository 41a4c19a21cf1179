"""exkit's WinRM bootstrap, executed by the sandbox interpreter as PowerShell would: the .NET members it calls
(toolkit/sandbox/dotnet.py), the script block it runs, and the second-hop credential it builds from standard input."""

from __future__ import annotations

import base64

import pytest

from toolkit.sandbox.cmdlets import ExchangeCmdlets
from toolkit.sandbox.interpreter import Interpreter, ScriptError
from toolkit.sandbox.remoting import RemoteLogon
from toolkit.sandbox.seed import seed_organisation
from toolkit.targets.sandbox import SandboxTarget
from toolkit.targets.winrm import BOOTSTRAP, stdin_payload

SECRET = "pä$$wörd.with'quote"
REMOTE = ("$ErrorActionPreference = 'Stop'\n"
          "if ($exkitCredential) {\n"
          "    $s = New-PSSession -ConfigurationName 'Microsoft.Exchange' -ConnectionUri 'http://ex01/PowerShell/' "
          "-Authentication 'Kerberos' -Credential $exkitCredential\n"
          "} else {\n"
          "    $s = New-PSSession -ConfigurationName 'Microsoft.Exchange' -ConnectionUri 'http://ex01/PowerShell/' "
          "-Authentication 'Kerberos'\n"
          "}\n"
          "Write-Output ('session ' + $s.State)\n")


def run(script: str, stdin: str = "", logon: RemoteLogon | None = None):
    interpreter = Interpreter(ExchangeCmdlets(seed_organisation(), logon).commands(), stdin=stdin)
    return interpreter.run(script)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def test_bootstrap_runs_the_script_from_standard_input():
    script = "Write-Output 'hello ünïcode'\n$x = 'set inside'\n"
    outcome = run(BOOTSTRAP + "Write-Output ('after: ' + $x)\n", stdin_payload(script).decode())
    assert outcome.exit_code == 0, outcome.errors
    assert outcome.output == ["hello ünïcode", "after: "]  # the block ran in a child scope


def test_output_before_a_terminating_error_is_kept():
    outcome = run(BOOTSTRAP, stdin_payload("Write-Output 'first'\nthrow 'boom'\nWrite-Output 'never'").decode())
    assert outcome.output == ["first"]
    assert outcome.exit_code == 1 and "boom" in outcome.errors[0]


def test_second_hop_needs_the_credential_on_stdin():
    logon = RemoteLogon("CONTOSO\\exkit-admin", delegated=False, accounts={"contoso\\exkit-admin": SECRET})
    with_credential = run(BOOTSTRAP, stdin_payload(REMOTE, ("CONTOSO\\exkit-admin", SECRET)).decode(), logon)
    assert with_credential.exit_code == 0, with_credential.errors
    assert with_credential.output == ["session Opened"]
    without = run(BOOTSTRAP, stdin_payload(REMOTE).decode(), logon)
    assert without.exit_code == 1
    assert ("[ex01] Connecting to remote server ex01 failed with the following error message : Access is denied."
            in without.errors[0])
    wrong = run(BOOTSTRAP, stdin_payload(REMOTE, ("CONTOSO\\exkit-admin", "nope")).decode(), logon)
    assert "The user name or password is incorrect." in wrong.errors[0]
    delegated = run(BOOTSTRAP, stdin_payload(REMOTE).decode(), RemoteLogon("exkit@LAB.TEST", delegated=True))
    assert delegated.output == ["session Opened"]
    for outcome in (with_credential, without, wrong):
        assert SECRET not in "\n".join(outcome.output + outcome.errors)


def test_the_credential_does_not_change_the_script_or_its_hash(tmp_path):
    target = SandboxTarget(tmp_path / "org.json")
    plain = target.run_script(BOOTSTRAP, stdin=stdin_payload("Write-Output 'x'").decode())
    with_credential = target.run_script(BOOTSTRAP, stdin=stdin_payload("Write-Output 'x'", ("u", SECRET)).decode())
    assert plain.script_sha256 == with_credential.script_sha256 and plain.stdout == with_credential.stdout == "x\n"


@pytest.mark.parametrize("broken, error", [
    (".Split('.')", ".Split(',')"),                      # the parts are not separated: the script is not Base64
    ("$exkitIn[0]))\n", "$exkitIn[1]))\n"),              # decodes the user name instead of the script
    (".SecurePassword)", ")"),                           # a NetworkCredential is not a SecureString
])
def test_a_bug_in_the_bootstrap_fails(tmp_path, broken, error):
    mutated = BOOTSTRAP.replace(broken, error)
    assert mutated != BOOTSTRAP
    # As the loopback WinRM server runs it: a script the sandbox cannot run is exit code 2, an error exit code 1.
    result = SandboxTarget(tmp_path / "org.json").run_script(
        mutated, stdin=stdin_payload("Write-Output 'ran'", ("CONTOSO\\u", SECRET)).decode())
    assert result.exit_code != 0 and result.stdout == ""
    assert SECRET not in result.stderr


def test_dotnet_members_follow_their_documentation():
    outcome = run("Write-Output ([System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String("
                  f"' {b64('a b')[:4]}\n{b64('a b')[4:]} ')))\n"  # white space inside Base64 is ignored
                  "Write-Output ('a..b'.Split('.')).Count\n"   # empty entries are kept
                  "Write-Output ([System.Net.NetworkCredential]::new('u', 'p').SecurePassword)\n")
    assert outcome.exit_code == 0, outcome.errors
    assert outcome.output[0] == "a b" and outcome.output[1] == "3"
    assert outcome.output[-1] == "System.Security.SecureString"  # a SecureString never prints its text


@pytest.mark.parametrize("expression, message", [
    ("[System.Convert]::FromBase64String('abc')", 'Exception calling "FromBase64String" with "1" argument(s): '
                                                  '"Invalid length for a Base-64 char array or string."'),
    ("[System.Convert]::FromBase64String('ab!=')", "The input is not a valid Base-64 string"),
    ("[System.Management.Automation.PSCredential]::new('u', 'plain')", 'Cannot convert argument "password"'),
    ("[System.Management.Automation.PSCredential]::new('', [System.Net.NetworkCredential]::new('', 'p')"
     ".SecurePassword)", '"userName" is not valid'),
    ("[System.Convert]::FromBase64String()", 'Cannot find an overload for "FromBase64String"'),
])
def test_dotnet_exceptions_are_terminating_and_catchable(expression, message):
    outcome = run(f"try {{ $v = {expression} }} catch {{ Write-Output $_.Exception.Message }}")
    assert outcome.exit_code == 0 and message in outcome.output[0]
    assert run(f"$v = {expression}").exit_code == 1


@pytest.mark.parametrize("script, fragment", [
    ("[System.IO.File]::ReadAllText('x')", "unsupported PowerShell construct type [System.IO.File]"),
    (". ([scriptblock]::Create('1'))", "dot-sourcing"),
])
def test_unknown_types_and_dot_sourcing_fail_before_running(script, fragment):
    with pytest.raises(ScriptError, match=fragment.replace("[", r"\[").replace(".", r"\.")):
        run("Write-Output 'never'\n" + script)


def test_a_script_block_outside_the_subset_fails_when_created():
    with pytest.raises(ScriptError, match="the sandbox does not implement the command 'Remove-Item'"):
        run(BOOTSTRAP, stdin_payload("Remove-Item -Path 'C:\\x'").decode())
