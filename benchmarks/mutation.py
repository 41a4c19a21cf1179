"""Mutation testing of exkit's core: how many small deliberate bugs does the test suite catch?

Tool: mutmut (3.x). It writes every mutant of a function into one copy of the source ("trampolines" switched by an
environment variable), records once which tests reach which function, then runs only those tests for each mutant in
a forked worker, so a run over the core takes minutes on two cores where a tool that re-runs a test command per
mutant (cosmic-ray) takes hours.

The run happens in a temporary copy of the repository (mutmut writes a ``mutants/`` folder and reads its settings
from ``pyproject.toml``; neither touches the work tree). For each module group, mutmut runs the test files that
exercise it (``MODULES`` below).

    python benchmarks/mutation.py                       # every core module group (tens of minutes)
    python benchmarks/mutation.py quoting throttle      # some groups
    python benchmarks/mutation.py --sample 40 quoting   # 40 mutants drawn with a fixed seed
    python benchmarks/mutation.py --sample 40           # 40 of each group: one figure over the whole core
    python benchmarks/mutation.py --list                # the groups, their modules and their tests
    python benchmarks/mutation.py --report /tmp/exkit-mutation-…  # a kept copy (--keep) reported again

Counting: a mutant no test reaches counts as survived; "suspicious" ones (the tests crashed in an unexpected way)
are counted as killed. Mutants that are equivalent (no behaviour can tell them apart) are listed in
``EQUIVALENT`` (one mutated line) or ``EQUIVALENT_EDITS`` (one kind of edit wherever mutmut makes it in a function,
such as a parameter type the binder reads as [string] anyway) with the reason, and left out of the score; they are
shown in the report, never hidden.

Last line: ``mutants=N killed=K survived=S timeout=T score=…`` over the non-equivalent mutants, with
score = (killed + timeout) / mutants (a mutant that makes the tests hang is caught: mutmut stops it).

``--sample N`` draws N mutants of each group named (a stratified sample: one group draws exactly what it draws
alone), and runs them in one mutmut run whose tests are all the groups' (a mutant meets every one of them that
reaches its function). With several groups the report adds each group's own line and the score over all their
mutants estimated from the sample, each group's score weighted by its number of mutants; the last line counts the
sample as drawn (each group equally).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# group → (modules to mutate, test files that exercise them, the functions mutated: mutmut name globs, or None for
# every function of the modules). The connectors are mutated only where they retry: the rest of them is the REST
# and WinRM plumbing, outside this benchmark's core.
MODULES: dict[str, tuple[list[str], list[str], list[str] | None]] = {
    "quoting": (["toolkit/render/quoting.py"], ["tests/test_quoting.py"], None),
    "opath": (["toolkit/opath.py"], ["tests/test_opath.py", "tests/test_opath_exact.py"], None),
    "load": (["toolkit/playbook/load.py", "toolkit/playbook/diagnostics.py"],
             ["tests/test_load.py", "tests/test_validate.py"], None),
    "throttle": (["toolkit/fleet/throttle.py"], ["tests/test_throttle.py"], None),
    "retries": (["toolkit/targets/exchange_online.py", "toolkit/targets/winrm.py", "toolkit/targets/waits.py"],
                ["tests/test_retries.py", "tests/test_exchange_online.py", "tests/test_winrm.py",
                 "tests/test_operate.py", "tests/test_waits.py", "tests/test_rest_exact.py"],
                ["toolkit.targets.waits.xǁWaitǁ*",
                 "toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁ_post__mutmut_*",
                 "toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁretrying__mutmut_*",
                 "toolkit.targets.exchange_online.xǁ_Transientǁ__init____mutmut_*",
                 "toolkit.targets.winrm.xǁWinRMTargetǁrun_script__mutmut_*",
                 "toolkit.targets.winrm.xǁWinRMTargetǁ_failure__mutmut_*"]),
    "review": (["toolkit/render/review.py", "toolkit/render/pin.py"],
               ["tests/test_review.py", "tests/test_review_exact.py", "tests/test_boundaries.py",
                "tests/test_security.py"], None),
    "plan": (["toolkit/plan.py"], ["tests/test_plan_exact.py", "tests/test_boundaries.py", "tests/test_workflow.py",
                                   "tests/test_differential.py"], None),
    "cmdlets": (["toolkit/sandbox/cmdlets.py"], ["tests/test_cmdlets_exact.py", "tests/test_sandbox.py",
                                                 "tests/test_interpreter.py", "tests/test_differential.py"], None),
    "rest": (["toolkit/targets/exchange_online.py", "toolkit/targets/exchange_online_script.py"],
             ["tests/test_rest_exact.py", "tests/test_exchange_online.py", "tests/test_retries.py",
              "tests/test_invoke_command_http.py"], None),
}

# Mutants no behaviour can tell apart from the original, each with the reason. A surviving mutant is equivalent when
# its function (mutmut's name without the number) and the line the mutation wrote (stripped) match an entry, so
# the list does not go stale when mutmut renumbers. Shown in the report, left out of the score.
_UTF8 = "codec names are case-insensitive: 'UTF-8' is 'utf-8'"
_LOCALE = ("encoding=None is the locale's, UTF-8 here and wherever exkit runs its tests (Python coerces the C "
           "locale to UTF-8)")
_NO_MARK = ("unreachable: every MarkedYAMLError that ruamel raises while loading carries a problem or context mark")
_UNUSED = "_parsed keeps only .data and .positions of this LoadedDocument; its file and source are not read"
_BEST_MATCH = "only the best match (close[0]) is shown; the candidates after it are not read"
_NO_PIPELINE = "no cmdlet of the sandbox's table (toolkit/sandbox/cmdlets.py) reads its pipeline input"
EQUIVALENT: list[tuple[str, str, str]] = [
    # (function, mutated line, why)
    ("toolkit.opath.x__tokenize", 'if char in "XX\'\\"XX":',
     "the only character added is X, which always starts a word token: it never reaches this branch"),
    ("toolkit.opath.x__tokenize", 'tokens.append(_Token("end", None, None, len(text)))',
     "the end token's text is read only as `token.text or 'the end of the filter'`: None and '' print alike"),
    ("toolkit.opath.x__tokenize", 'kind = match.lastgroup or "XXXX"',
     "unreachable: every alternative of the token pattern is a named group, so lastgroup is never empty"),
    ("toolkit.opath.xǁ_Parserǁ__init__", "self.text = None", "the parser never reads self.text"),
    ("toolkit.opath.xǁ_Parserǁparse_comparison",
     "close = difflib.get_close_matches(token.text, FILTERABLE_PROPERTIES, )", _BEST_MATCH),
    ("toolkit.opath.xǁ_Parserǁparse_comparison",
     "close = difflib.get_close_matches(token.text, FILTERABLE_PROPERTIES, n=2)", _BEST_MATCH),
    ("toolkit.opath.xǁ_Parserǁparse_comparison",
     'op = op_token.text.lower()[1:] if op_token.kind == "op" else "XXXX"',
     "'XXXX' is no operator either: the same error follows"),
    ("toolkit.playbook.load.x_load_playbook", 'text = Path(path).read_text(encoding="UTF-8")', _UTF8),
    ("toolkit.playbook.load.x_load_playbook", "text = Path(path).read_text(encoding=None)", _LOCALE),
    ("toolkit.playbook.load.x_peek_platform",
     'data = YAML(typ="safe").load(Path(path).read_text(encoding="UTF-8"))', _UTF8),
    ("toolkit.playbook.load.x_peek_platform",
     'data = YAML(typ="safe").load(Path(path).read_text(encoding=None))', _LOCALE),
    ("toolkit.playbook.load.x_peek_platform",
     'data = YAML(typ=None).load(Path(path).read_text(encoding="utf-8"))',
     "the round-trip loader (ruamel's default) reads the same platform value as the safe one"),
    ("toolkit.playbook.load.x_peek_platform",
     'return platform if platform in ("XXexchange-serverXX", "exchange-online") else "exchange-server"',
     "the else branch returns 'exchange-server' too"),
    ("toolkit.playbook.load.x_peek_platform",
     'return platform if platform in ("EXCHANGE-SERVER", "exchange-online") else "exchange-server"',
     "the else branch returns 'exchange-server' too"),
    ("toolkit.playbook.load.x__parse_yaml", 'yaml = YAML(typ=None)', "typ=None is ruamel's default, 'rt'"),
    ("toolkit.playbook.load.x__parse_yaml",
     'diagnostics.error("duplicate-key", _first_line(exc.problem or "XXduplicate keyXX"), file,',
     "unreachable: ruamel's DuplicateKeyError always has a problem text"),
    ("toolkit.playbook.load.x__parse_yaml",
     'diagnostics.error("duplicate-key", _first_line(exc.problem or "DUPLICATE KEY"), file,',
     "unreachable: ruamel's DuplicateKeyError always has a problem text"),
    ("toolkit.playbook.load.x__parse_yaml",
     "position = Position(mark.line + 1, mark.column + 1) if (mark) or True else Position(1, 1)", _NO_MARK),
    *[("toolkit.playbook.load.x__parse_yaml",
       f"position = Position(mark.line + 1, mark.column + 1) if mark else {fallback}", _NO_MARK)
      for fallback in ("Position(None, 1)", "Position(1, None)", "Position(1)", "Position(1, )", "Position(2, 1)",
                       "Position(1, 2)")],
    ("toolkit.playbook.load.x__parse_yaml",
     "return LoadedDocument(None, _record(node, (), positions), positions, text)", _UNUSED),
    ("toolkit.playbook.load.x__parse_yaml",
     "return LoadedDocument(file, _record(node, (), positions), positions, None)", _UNUSED),
    ("toolkit.playbook.load.x__first_line",
     "return text.strip().splitlines()[0] if (text.strip()) or True else text",
     "unreachable: the text is a problem message or 'duplicate key', never blank"),
    ("toolkit.playbook.load.x__first_line",
     "return text.strip().splitlines()[0] if (text.strip()) and False else text",
     "ruamel's duplicate-key problem is one line: its first line is itself"),
    ("toolkit.playbook.load.x__undefined", "close = difflib.get_close_matches(name, list(variables), n=2)",
     _BEST_MATCH),
    ("toolkit.playbook.load.x__undefined", "close = difflib.get_close_matches(name, list(variables), )",
     _BEST_MATCH),
    ("toolkit.targets.exchange_online.xǁ_Transientǁ__init__",
     'def __init__(self, status: int, retry_after: float | None, reason: str = "XXXX") -> None:',
     "the default reason goes with an HTTP status (every _Transient without a reason has one), and the reason is "
     "read only when the status is 0 or to compare it with 'timeout'"),
    ("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁretrying",
     "error = state.outcome.exception() if (state.outcome) or True else None",
     "tenacity calls the wait and stop callbacks only after an attempt, with its outcome set"),
    ("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁretrying",
     'outer, self._local.call_wait = getattr(None, "call_wait", None), wait',
     "no retrying() runs inside another on the same thread (_post_once and the Graph reader's _get_once call none): "
     "the wait it saves and restores is always None"),
    ("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁretrying", "self._local.call_wait = None",
     "no retrying() runs inside another on the same thread: the outer wait it restores is always None"),
    *[("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁretrying",
       f'outer, self._local.call_wait = getattr(self._local, "{name}", None), wait',
       "no retrying() runs inside another on the same thread: the outer wait it saves is None however it is read")
      for name in ("XXcall_waitXX", "CALL_WAIT")],
    ("toolkit.targets.winrm.xǁWinRMTargetǁ_failure", "return (TimedOut if timed_out else TargetError)(self._lost(None, "
     "reason))", "this line runs only for a stage other than connect and start, and _lost tells only those two apart: "
     "None reads as any other stage"),
    *[("toolkit.targets.winrm.xǁWinRMTargetǁrun_script",
       f'wait = Wait({what}, self.spec.read_timeout, "read_timeout")',
       "every request names the wait (_request: wait.what = 'WinRM <operation>') before anything reads the name")
      for what in ('"XXWinRM Create (open a shell)XX"', "None", '"winrm create (open a shell)"',
                   '"WINRM CREATE (OPEN A SHELL)"')],
    ("toolkit.targets.winrm.xǁWinRMTargetǁ_failure",
     "return (TimedOut if (timed_out) and False else TargetError)(self._lost(stage, reason))",
     "timed_out is set only for a requests Timeout, and none reaches this line: connect and start return above, at "
     "the run stage _receive turns a Timeout into TimedOut itself, and at close _finish swallows every failure"),
    *[("toolkit.targets.waits.xǁWaitǁ_limit", f'left, by = self.bound - self.elapsed, "{label}"',
       "the label is only ever compared with 'run' (expired: by == 'run'): any other word means the setting")
      for label in ("SETTING", "XXsettingXX")],
    *[("toolkit.targets.winrm.xǁWinRMTargetǁrun_script", line,
       "unreachable: the last attempt (attempt == retries) returns or raises, so the loop never runs out")
      for line in ("for attempt in range(self.spec.retries + 2):", 'raise AssertionError("XXunreachableXX")',
                   'raise AssertionError("UNREACHABLE")', "raise AssertionError(None)")],
    ("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁ_post_once",
     '"X-CmdletName": cmdlet, "X-ResponseFormat": "json", "prefer": "odata.maxpagesize=1000",',
     "HTTP field names are case-insensitive (RFC 9110, 5.1)"),
    ("toolkit.targets.exchange_online_script.xǁTenantScriptRunnerǁ_collection_read",
     "return command.run(bound, None)", _NO_PIPELINE),
    *[(f"toolkit.targets.exchange_online_script.xǁTenantScriptRunnerǁ{function}",
       f'return [PSObject(command.name.split("-", {limit})[1], item) for item in answer]',
       "every cmdlet name of the sandbox's table is Verb-Noun with one hyphen: split at every hyphen, the second part "
       "is the same") for function in ("_change", "_forwarded_read") for limit in ("", "2")],
    ("toolkit.targets.exchange_online_script.xǁTenantScriptRunnerǁ_forwarded_read",
     '"MailboxPermission": {"mailbox": to_string(bound.get("Identity")),',
     "the copy takes a permission's mailbox from Mailbox or else from the answer's Identity, and Get-MailboxPermission "
     "answers with Identity naming the mailbox (the cmdlet reference's output; the loopback tenant's too): the same "
     "recipient either way"),
    ("toolkit.render.review.x_summarize", "elif a is not None or b is not None and a.fields != b.fields:",
     "both resources are there on this branch (the two above take the key missing on one side), and with equal fields "
     "the loop below skips every field: no line either way"),
    ("toolkit.sandbox.cmdlets.xǁExchangeCmdletsǁ_assignment_object",
     'assignment.custom_recipient_write_scope or "XXXX").exclusive else None),',
     "this second lookup runs only when the first found a scope, so the scope name is set: its `or` fallback is "
     "never taken"),
    *[("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁ_post_once", line,
       "ExchangeOnlineTarget.calls is read by no product code (toolkit, benchmarks): a count tests look at, that "
       "shows nowhere")
      for line in ("self.calls = 1", "self.calls += 2")],
    ("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁ__init__", 'self._thumbprint = None',
     "read only by connection(), after _credential() has set it from the certificate (a secret target returns "
     "before reading it)"),
    ("toolkit.sandbox.cmdlets.xǁExchangeCmdletsǁnew_session",
     'if (bound.get("Authentication") or "DEFAULT").lower() not in ("kerberos", "credssp", "default", "negotiate"):',
     "the default is lower-cased before it is compared: 'DEFAULT' is 'default'"),
    ("toolkit.targets.exchange_online.x__parsed_certificate",
     'digest = hashlib.sha256(data + b"\\0" + (password or "").encode() + (b"XXpfxXX" if pfx else b"pem")).hexdigest()',
     "the suffix only keeps a file's PEM and PFX parses apart in the cache: any suffix other than the PEM one does"),
    *[("toolkit.targets.exchange_online.x__parsed_certificate",
       f'digest = hashlib.sha256(data + b"\\0" + (password or "").encode() + (b"pfx" if pfx else {pem})).hexdigest()',
       "the suffix only keeps a file's PEM and PFX parses apart in the cache: any suffix other than the PFX one does")
      for pem in ('b"PEM"', 'b"XXpemXX"')],
    ("toolkit.targets.exchange_online.x__assignment_row",
     '"exclusive_scope": row.get("ExclusiveRecipientWriteScope") or "", "enabled": str(row.get("Enabled", ))}',
     "every role assignment Get-ManagementRoleAssignment returns has Enabled (the loopback tenant's objects are the "
     "sandbox's, which always set it): the default is never read"),
    ("toolkit.targets.exchange_online.x__cmdlet_error",
     'return CmdletFailed(cmdlet, parts[2].strip(), parts[1].rsplit(".", 1)[+1])',
     "Exchange names the exception type with its namespace in every error detail ('Ex6F9304|Microsoft.Exchange."
     "Configuration.Tasks.ManagementObjectNotFoundException|…', as the loopback tenant does): rsplit('.', 1) gives "
     "two parts, and [+1] is [-1]"),
    ("toolkit.targets.exchange_online.x__shared_connections",
     "adapter = _ADAPTERS[pid] = requests.adapters.HTTPAdapter(pool_connections=9, pool_maxsize=64)",
     "pool_connections is how many hosts' connection pools urllib3 keeps open before closing the least recently "
     "used one (a later call to that host then opens a new connection): no call's result depends on it, and a "
     "cloud has three hosts (login, Exchange, Graph); connection reuse is measured by benchmarks/online_tenants.py"),
    ("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁ_login_timeout",
     'wait = self._login_wait or Wait(self._login_what(), "token_timeout")',
     "unreachable: login_http is msal's only, and msal sends requests only inside _signing_in, which sets "
     "_login_wait first: the fallback Wait is never built"),
    ("toolkit.targets.exchange_online.xǁ_Sessionǁmerge_environment_settings",
     "settings = super().merge_environment_settings(url, proxies, stream, None, cert)",
     "no request through these sessions sets verify: requests' Session.request passes verify=None on, and msal, "
     "given an http_client, passes none (it refuses one): the mutant passes the value that was passed"),
    ("toolkit.render.review.x__is_playbook", 'text = path.read_text(encoding=None)', _LOCALE),
    ("toolkit.render.review.x_check", "for name in targets if (inventory is not None) or True else [None]:",
     "without an inventory choose_targets ignores the names and gives the sandbox: each of the manifest's target "
     "names renders the same scripts, which are kept by file name"),
    ("toolkit.plan.x__recording", "return command.run(bound, None)", _NO_PIPELINE),
    ("toolkit.plan.x_make_plan", "stopped = None",
     "None and '' are both false: stopped is read only as `stopped or …` before anything else reads it"),
    ("toolkit.render.review.x_check",
     "for item in render_set([path], inventory, [name] if (name) or True else None, cli_vars, templates,",
     "with an inventory each name is a manifest's target name, never empty (render refuses an empty one); without "
     "one the name is None and choose_targets ignores the names: [None] and None give the same sandbox"),
    ("toolkit.render.review.x_summarize", 'noun = field[:-1] if (field.endswith("s")) or True else field',
     "every list field of a resource kind is a plural ending in s (roles, members, access_rights)"),
    ("toolkit.targets.exchange_online.x__cmdlet_error", 'parts = str(detail.get("message", None)).split("|", 2)',
     "a detail without a message is one part either way ('' or 'None' hold no '|'), and a detail of one part is "
     "passed over"),
    ("toolkit.targets.exchange_online.x__cmdlet_error",
     'return CmdletFailed(cmdlet, parts[2].strip(), parts[1].rsplit(".", 2)[-1])',
     "the last part of a split from the right is the same whatever the number of splits"),
    ("toolkit.targets.exchange_online.xǁ_Sessionǁmerge_environment_settings",
     "known = self._environment.get(key) if (key is not None) or True else None",
     "nothing is ever kept under the key None (settings for explicit proxies are not kept): get(None) is None"),
    *[("toolkit.targets.exchange_online_script.xǁTenantScriptRunnerǁ_forwarded_read",
       f'"Trustee": to_string(bound.get({name}))}}}}.get(kind, {{}})',
       "the copy resolves a permission's user from -User or else from the answer's User; the loopback tenant answers "
       "User as the trustee's address, which resolves to the same recipient as -User (or to none, as -User does)")
      for name in ('"XXUserXX"', '"USER"', "None")],
    ("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁread_snapshot",
     'facts.append({"type": "authorization", "app_id": app.app_id if app else "XXXX",',
     "unreachable: validation refuses an application role assignment naming no declared application, so app is "
     "never None"),
    ("toolkit.targets.exchange_online.xǁ_Sessionǁmerge_environment_settings",
     "if isinstance(self.verify, str) and verify in (None, False):",
     "every request arrives with verify=None (send_direct passes None, the Graph reader's requests.get passes none): "
     "None is in both tuples"),
    *[("toolkit.targets.exchange_online.xǁ_Sessionǁsend_direct", f"raise requests.exceptions.{kind}(None) from None",
       "a timeout is caught by its type only (_post_once: _Transient 'timeout'; the sign-in: its Wait's expired "
       "message): the exception's text is never read") for kind in ("ReadTimeout", "ConnectTimeout")],
    ("toolkit.targets.exchange_online.x__assignment_row",
     '"exclusive_scope": row.get("ExclusiveRecipientWriteScope") or "", "enabled": str(row.get("Enabled", False))}',
     "every assignment Exchange answers carries Enabled (Get-ManagementRoleAssignment's output; the loopback tenant "
     "too): the default is never taken"),
    ("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁrequest_timeout",
     'wait = getattr(self._local, "call_wait", None) or Wait("XXa callXX", self.spec.call_timeout, "call_timeout")',
     "request_timeout runs only inside retrying() (_post_once, the Graph reader's _get_once), which sets the call's "
     "wait on its thread first: the fallback wait is never made"),
    ("toolkit.targets.exchange_online.x__with_query",
     'return url + ("&" if "?" in url else "?") + urlencode(params, doseq=None) if params else url',
     "msal's requests carry string parameters only: doseq changes only how a list value is written"),
    ("toolkit.targets.exchange_online.xǁExchangeOnlineTargetǁ_addresses",
     'for key in ("Name", "XXDisplayNameXX", "Alias", "PrimarySmtpAddress"):',
     "the loopback tenant names a user by its Name wherever the snapshot looks one up (RoleAssigneeName, "
     "EffectiveUserName) and by address in a permission's User: no lookup meets a display name"),
    ("toolkit.render.pin.x_pin_targets", "manifest=None, commit=commit)",
     "pin_target given no manifest reads the same manifest.json itself: nothing writes the reviewed folder between "
     "the two reads, so both give the same entries"),
    ("toolkit.render.review.x__json_sha256",
     "return _sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=None).encode())",
     "every value hashed is JSON already (variables are str, int, bool or list[str]: VariableValue, and --var gives "
     "strings; the target's name, platform, endpoint and group are strings or None): default= is never called"),
    ("toolkit.render.pin.x_pin_target",
     'f"{changed_inputs(entry.get(\'inputs\', None), now.inputs)}). Render, review and commit "',
     "changed_inputs reads a missing inputs entry as {} either way (reviewed = reviewed or {})"),
    ("toolkit.render.review.x__json_sha256", "return _sha256(json.dumps(value, sort_keys=True, default=str).encode())",
     "how the JSON spells non-ASCII changes the variables' and the target's hash values, never a comparison: each "
     "is only ever compared with one the same exkit made (a manifest of another version is reported as such)"),
    ("toolkit.sandbox.cmdlets.xǁExchangeCmdletsǁ_refusable", "return run(bound, None)", _NO_PIPELINE),
    *[("toolkit.render.review.x_render_one", f"require_file_name(target.name, {what})",
       "unreachable refusal: every target name was checked as a file name when its inventory was loaded "
       "(inventory._target_name, the same check, its own message), and without an inventory the name is 'sandbox'")
      for what in ('"XXthe target nameXX"', '"THE TARGET NAME"', "None")],
    ("toolkit.render.pin.x__committed", 'status = git(folder, "status", "--porcelain", "--untracked-files=all", '
                                        '"XX--XX", ".")',
     "the pathspec is always '.' (git -C the folder), which no option parsing can take for an option, so the '--' "
     "before it changes nothing; the extra pathspec 'XX--XX' matches a part of what '.' matches"),
    ("toolkit.render.review.x_summarize", "if isinstance(x, list) and isinstance(y, list):",
     "a field of a resource kind is a list in every resource of that kind (roles, members, access_rights): x and "
     "y are both lists or neither is"),
]

# Edits equivalent wherever mutmut makes them in the named functions: a surviving mutant whose one changed line is
# the original line with one occurrence of ``text`` replaced by one of ``replacements`` is equivalent.
# (function glob, text, replacements, why)
_STRING_TYPE = ("a parameter type the binder does not name is bound as [string] (toolkit/sandbox/commands.py, "
                "convert: only object, switch, bool, string[] and int are told apart; is_switch compares with "
                "'switch'), and nothing else reads a parameter's type")
_TARGET_HASH = ("the key names a value inside the target's hash only: spelled otherwise, the name, platform, endpoint "
                "and group all still go into it, and the hash is only ever compared with one the same exkit made (a "
                "manifest of another version is reported as such)")
EQUIVALENT_EDITS: list[tuple[str, str, tuple[str, ...], str]] = [
    *[(f"toolkit.sandbox.cmdlets.xǁExchangeCmdletsǁ{function}", '"string"', ("None", '"XXstringXX"', '"STRING"'),
       _STRING_TYPE) for function in ("commands", "_online", "_online_only")],
    ("toolkit.sandbox.cmdlets.xǁExchangeCmdletsǁ_online_only", '"object"', ("None", '"XXobjectXX"', '"OBJECT"'),
     "Connect-ExchangeOnline's only object parameters, -Certificate and -CertificatePassword, are read by nothing: a "
     "certificate or secure string bound as its text is accepted alike; only a hashtable or an array of several "
     "tells the two apart, and PowerShell refuses those for an X509Certificate2 or SecureString parameter anyway"),
    ("toolkit.sandbox.cmdlets.xǁExchangeCmdletsǁcommands", '"SessionOption": "object"',
     ('"SessionOption": None', '"SessionOption": "XXobjectXX"', '"SessionOption": "OBJECT"'),
     "New-PSSession's -SessionOption is read by nothing: a PSSessionOption bound as its text is accepted alike; only "
     "a hashtable or an array of several tells the two apart, and PowerShell refuses those for a PSSessionOption too"),
    *[("toolkit.render.review.x_inputs_of", f'"{key}"', (f'"XX{key}XX"', f'"{key.upper()}"'), _TARGET_HASH)
      for key in ("name", "platform", "endpoint", "group")],
    ("toolkit.render.review.x_*", '"utf-8"', ('"UTF-8"',), _UTF8),
    ("toolkit.render.review.x_*", 'encoding="utf-8"', ("encoding=None",), _LOCALE),
]

COPY = ["toolkit", "tests", "templates", "playbooks", "pyproject.toml", "README.md", "inventory.example.yaml",
        "exkit.schema.json"]


def _config(groups: list[str]) -> str:
    modules = sorted({m for g in groups for m in MODULES[g][0]})
    tests = sorted({t for g in groups for t in MODULES[g][1] if (REPO / t).exists()})
    lines = [
        "", "[tool.mutmut]",
        'source_paths = ["toolkit"]',
        "only_mutate = " + json.dumps(modules),
        "also_copy = " + json.dumps(["templates", "playbooks", "README.md", "inventory.example.yaml",
                                      "exkit.schema.json"]),
        "pytest_add_cli_args = " + json.dumps(["-q", "-p", "no:cacheprovider", "-p", "no:randomly"]),
        "pytest_add_cli_args_test_selection = " + json.dumps(tests),
        "use_git_change_detection = false",
        "",
    ]
    return "\n".join(lines)


def _copy_repo(into: Path, groups: list[str]) -> None:
    for name in COPY:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.exists():
            shutil.copy2(source, into / name)
    pyproject = into / "pyproject.toml"
    pyproject.write_text(pyproject.read_text(encoding="utf-8") + _config(groups), encoding="utf-8")
    # A git work tree with one commit, like the clean clone CI tests (a run record names its playbook's commit).
    env = {**os.environ, "GIT_AUTHOR_NAME": "exkit", "GIT_AUTHOR_EMAIL": "exkit@example.com",
           "GIT_COMMITTER_NAME": "exkit", "GIT_COMMITTER_EMAIL": "exkit@example.com"}
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "mutation testing copy"]):
        subprocess.run(["git", *command], cwd=into, env=env, check=True, capture_output=True, timeout=120)


def _mutmut(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _results(workdir: Path) -> dict[str, str]:
    """mutant name → status, read from mutmut's ``.meta`` files."""
    from mutmut.stats import status_by_exit_code

    out: dict[str, str] = {}
    for meta in sorted((workdir / "mutants").rglob("*.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name, code in data.get("exit_code_by_key", {}).items():
            out[name] = status_by_exit_code[code]
    return out


def _globs(groups: list[str]) -> list[str]:
    """mutmut name globs selecting the mutated functions, or [] when every group mutates whole modules."""
    if all(MODULES[g][2] is None for g in groups):
        return []
    return [glob for group in groups for glob in _group_globs(group)]


def _group_globs(group: str) -> list[str]:
    modules, _, functions = MODULES[group]
    return functions or [m.removesuffix(".py").replace("/", ".") + ".*" for m in modules]


def _stratified(everything: list[str], groups: list[str], sample: int, seed: int) -> dict[str, tuple[int, list[str]]]:
    """group → (its number of mutants, ``sample`` of them drawn with ``seed``). One group draws exactly what
    ``--sample N GROUP`` alone draws; a mutant two groups mutate (the Exchange Online retry code: retries and rest)
    may be drawn by both."""
    strata = {}
    for group in groups:
        pool = [n for n in everything if any(fnmatch(n, g) for g in _group_globs(group))]
        strata[group] = (len(pool), sorted(random.Random(seed).sample(pool, min(sample, len(pool)))))
    return strata


def _all_mutant_names(workdir: Path) -> list[str]:
    """Generate the mutants without testing them (mutmut's ``run`` on a name matching nothing does just that)."""
    return sorted(_results(workdir))


def run(groups: list[str], sample: int | None, seed: int, children: int, timeout: float, keep: bool) -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="exkit-mutation-"))
    try:
        _copy_repo(workdir, groups)
        names: list[str] = []
        strata: dict[str, tuple[int, list[str]]] = {}
        globs = _globs(groups)
        if sample is not None or globs:
            # Generate the mutants and the test statistics, then test the selected ones (a seeded sample).
            probe = _mutmut(["run", "--max-children", str(children), "no-such-mutant*"], workdir, timeout)
            everything = [n for n in _all_mutant_names(workdir) if not globs or any(fnmatch(n, g) for g in globs)]
            if not everything:
                print(probe.stdout[-3000:], probe.stderr[-3000:], file=sys.stderr)
                print("no mutants were generated", file=sys.stderr)
                return 2
            names = everything
            if sample is not None:
                strata = _stratified(everything, groups, sample, seed)
                names = sorted({n for _, drawn in strata.values() for n in drawn})
        result = _mutmut(["run", "--max-children", str(children), *names], workdir, timeout)
        statuses = _results(workdir)
        if names:
            statuses = {n: statuses.get(n, "not checked") for n in names}
        if not statuses or all(s == "not checked" for s in statuses.values()):
            print(result.stdout[-5000:], result.stderr[-5000:], file=sys.stderr)
            print("mutmut ran no mutant", file=sys.stderr)
            return 2
        return _report(groups, statuses, time.monotonic() - started, workdir, strata)
    finally:
        if keep:
            print(f"kept the working copy: {workdir}  (cd there; python -m mutmut show NAME)", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _module_of(name: str) -> str:
    return name.split(".x_")[0].split(".xǁ")[0]


def _changed_lines(workdir: Path, name: str) -> tuple[list[str], list[str]]:
    """The lines the mutation removed and the lines it wrote, stripped."""
    shown = _mutmut(["show", name], workdir, 120).stdout.splitlines()
    return ([line[1:].strip() for line in shown if line.startswith("-") and not line.startswith("---")],
            [line[1:].strip() for line in shown if line.startswith("+") and not line.startswith("+++")])


def _equivalence(workdir: Path, name: str) -> str | None:
    function = name.rsplit("__mutmut_", 1)[0]
    candidates = [(line, why) for f, line, why in EQUIVALENT if f == function]
    edits = [(text, replacements, why) for f, text, replacements, why in EQUIVALENT_EDITS if fnmatch(function, f)]
    if not candidates and not edits:
        return None
    removed, written = _changed_lines(workdir, name)
    found = next((why for line, why in candidates if written == [line]), None)
    if found or len(removed) != 1 or len(written) != 1:
        return found
    return next((why for text, replacements, why in edits if written[0] in _single_edits(removed[0], text,
                                                                                      replacements)), None)


def _single_edits(line: str, text: str, replacements: tuple[str, ...]) -> set[str]:
    """``line`` with one occurrence of ``text`` replaced by one of ``replacements``, every way."""
    starts = [i for i in range(len(line)) if line.startswith(text, i)]
    return {line[:i] + new + line[i + len(text):] for i in starts for new in replacements}


def _report(groups: list[str], statuses: dict[str, str], seconds: float, workdir: Path,
            strata: dict[str, tuple[int, list[str]]] | None = None) -> int:
    reasons = {n: _equivalence(workdir, n) for n, s in statuses.items() if _bucket(s) == "survived"}
    equivalent = sorted(n for n, why in reasons.items() if why)
    counted = {n: s for n, s in statuses.items() if n not in equivalent}
    by_module: dict[str, dict[str, int]] = {}
    for name, status in counted.items():
        row = by_module.setdefault(_module_of(name), {"mutants": 0, "killed": 0, "survived": 0, "timeout": 0})
        row["mutants"] += 1
        row[_bucket(status)] += 1
    print(f"groups: {' '.join(groups)}   ({seconds:.0f} s)")
    for module, row in sorted(by_module.items()):
        print(f"  {module:42} mutants={row['mutants']:4} killed={row['killed']:4} survived={row['survived']:4} "
              f"timeout={row['timeout']:3} score={_score(row):.3f}")
    survivors = sorted(n for n, s in counted.items() if _bucket(s) == "survived")
    if survivors:
        print("surviving mutants (python -m mutmut show NAME in a kept copy, --keep):")
        for name in survivors:
            print(f"  {name}  [{counted[name]}]")
    if equivalent:
        print("equivalent mutants left out of the score:")
        for name in equivalent:
            print(f"  {name}: {reasons[name]}")
    if strata and len(strata) > 1:
        _strata_report(strata, counted)
    total = {"mutants": 0, "killed": 0, "survived": 0, "timeout": 0}
    for row in by_module.values():
        for key in total:
            total[key] += row[key]
    print(f"mutants={total['mutants']} killed={total['killed']} survived={total['survived']} "
          f"timeout={total['timeout']} score={_score(total):.3f}")
    return 0


def _strata_report(strata: dict[str, tuple[int, list[str]]], counted: dict[str, str]) -> None:
    """Each group's own sample, and the score over all the groups' mutants estimated from them: each group's score
    weighted by its number of mutants (the last line counts the sample as drawn, each group equally)."""
    print("by group (each drawn on its own; equivalent mutants left out):")
    weighted = population = 0.0
    for group, (size, drawn) in strata.items():
        row = {"mutants": 0, "killed": 0, "survived": 0, "timeout": 0}
        for name in drawn:
            if name in counted:
                row["mutants"] += 1
                row[_bucket(counted[name])] += 1
        print(f"  {group:10} of {size:5}  mutants={row['mutants']:4} killed={row['killed']:4} "
              f"survived={row['survived']:4} timeout={row['timeout']:3} score={_score(row):.3f}")
        weighted += size * _score(row)
        population += size
    print(f"estimated over all {population:.0f} mutants of these groups (each group's score weighted by its number "
          f"of mutants): score={weighted / population:.3f}")


def _bucket(status: str) -> str:
    if status in ("killed", "suspicious", "caught by type check", "segfault"):
        return "killed"
    if status == "timeout":
        return "timeout"
    return "survived"  # survived, no tests, skipped, not checked


def _score(row: dict[str, int]) -> float:
    return (row["killed"] + row["timeout"]) / row["mutants"] if row["mutants"] else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help="module groups (default: all): " + ", ".join(MODULES))
    parser.add_argument("--sample", type=int, help="test only this many mutants of each group, drawn with --seed")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--children", type=int, default=min(2, os.cpu_count() or 1), help="parallel workers")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before the whole run is stopped")
    parser.add_argument("--keep", action="store_true", help="keep the working copy (to inspect mutants)")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    parser.add_argument("--report", type=Path, metavar="COPY",
                        help="report the mutants a kept copy tested, again (after editing EQUIVALENT)")
    args = parser.parse_args(argv)
    if args.report is not None:
        tested = {n: s for n, s in _results(args.report).items() if s != "not checked"}
        return _report([f"(kept copy {args.report})"], tested, 0.0, args.report)
    if args.list:
        for group, (modules, tests, functions) in MODULES.items():
            print(f"{group:10} {' '.join(modules)}  ←  {' '.join(tests)}")
            for function in functions or []:
                print(f"{'':10}   only {function}")
        return 0
    unknown = [g for g in args.groups if g not in MODULES]
    if unknown:
        parser.error(f"unknown group(s): {', '.join(unknown)}; known: {', '.join(MODULES)}")
    return run(args.groups or list(MODULES), args.sample, args.seed, args.children, args.timeout, args.keep)


if __name__ == "__main__":
    sys.exit(main())
