"""The embedded sandbox organisation as a target: scripts run in the PowerShell interpreter against its state."""

from __future__ import annotations

import hashlib
from pathlib import Path

from toolkit.sandbox import org as org_store
from toolkit.sandbox.cmdlets import ExchangeCmdlets
from toolkit.sandbox.interpreter import Interpreter, ScriptError
from toolkit.sandbox.remoting import RemoteLogon
from toolkit.targets.base import RunResult, Target, TargetError, parse_output


class SandboxTarget(Target):
    def __init__(self, state_path: Path | None = None, name: str = "sandbox",
                 platform: str = "exchange-server", logon: RemoteLogon | None = None) -> None:
        self.logon = logon  # set by the loopback WinRM server: the WinRM session's logon
        self.name = name
        self.platform = platform
        self.state_path = state_path or org_store.default_state_path(platform)

    def describe(self) -> str:
        online = " (Exchange Online)" if self.platform == "exchange-online" else ""
        return f"sandbox organisation{online} {self.state_path}"

    def run_script(self, script: str, *, read_only: bool = False, stdin: str = "") -> RunResult:
        self.throttle()
        try:
            return self._run_locked(script, read_only, stdin)
        except org_store.StateFileError as exc:
            raise TargetError(str(exc)) from None

    def _run_locked(self, script: str, read_only: bool, stdin: str) -> RunResult:
        with org_store.locked(self.state_path):
            organisation, loaded = org_store.take(self.state_path, self.platform)
            interpreter = Interpreter(ExchangeCmdlets(organisation, self.logon).commands(), stdin=stdin)
            try:
                outcome = interpreter.run(script)
            except ScriptError as exc:
                # Checked before anything ran: the organisation is untouched.
                if loaded is not None:
                    org_store.keep(self.state_path, organisation, loaded)
                return RunResult(2, "", f"the script cannot run in the sandbox:\n{exc}",
                                 script_sha256=_sha(script))
            if not read_only:
                # Whatever ran is real, also when the script stopped halfway (as on a real Exchange); an unchanged
                # organisation is not written again.
                org_store.keep(self.state_path, organisation,
                               org_store.save(self.state_path, organisation, unless=loaded))
        stdout = "\n".join(outcome.output) + ("\n" if outcome.output else "")
        results, facts = parse_output(stdout)
        return RunResult(outcome.exit_code, stdout, "\n".join(outcome.errors), results, facts, _sha(script))


def _sha(script: str) -> str:
    return hashlib.sha256(script.encode()).hexdigest()
