"""The sandbox's PowerShell interpreter: each construct the templates use, and clear failures outside them."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO

from toolkit.render.quoting import SINGLE_QUOTES
from toolkit.sandbox.interpreter import Interpreter, ScriptError


def output(exchange, script):
    outcome = exchange.run(script)
    assert outcome.exit_code == 0, outcome.errors
    return outcome.output


def test_variables_assignment_and_concatenation(exchange):
    assert output(exchange, "$a = 'x'\n$A += 'y'\nWrite-Output ($a + 1)") == ["xy1"]


def test_arrays_and_member_enumeration(exchange):
    script = """
    $list = @()
    $list += 'a'
    $list += @('b', 'c')
    Write-Output $list.Length
    Write-Output (@(Get-RoleGroupMember -Identity 'Organization Management').PrimarySmtpAddress)
    """
    assert output(exchange, script) == ["3", "admin@contoso.com"]


def test_hashtables_index_and_increment(exchange):
    script = "$h = @{created = 0; Name = 'n'}\n$h['created'] += 2\n$h['CREATED'] += 1\nWrite-Output $h.name $h['Created']"
    assert output(exchange, script) == ["n", "3"]


def test_if_elseif_else_and_truthiness(exchange):
    script = """
    foreach ($v in @($null, '', 0, @(), 'x', 1)) {
        if (-not $v) { Write-Output 'false' } elseif ($v -eq 'x') { Write-Output 'x' } else { Write-Output 'other' }
    }
    """
    assert output(exchange, script) == ["false", "false", "false", "false", "x", "other"]


@pytest.mark.parametrize("expression, expected", [
    ("'ABC' -eq 'abc'", "True"), ("'a' -ne 'b'", "True"), ("'Room1' -like 'room*'", "True"),
    ("'Room1' -notlike 'room*'", "False"), ("@('a','B') -contains 'b'", "True"),
    ("@('a') -notcontains 'b'", "True"), ("'b' -in @('a','B')", "True"), ("$null -eq $null", "True"),
    ("$true -and -not $false", "True"), ("$false -or 0", "False"), ("[string]@('a','b')", "a b"),
    ("[string]$null", ""), ("[int]'42' + 1", "43"), ("[bool]'x'", "True"), ("@(1, 2).Length -lt 3", "True"),
    ("2 -ge '10'", "False"), ("'b' -gt 'A'", "True"),
])
def test_operators(exchange, expression, expected):
    assert output(exchange, f"Write-Output ({expression})") == [expected]


def test_try_catch_throw_and_error_record(exchange):
    script = """
    $ErrorActionPreference = 'Stop'
    try {
        Get-ManagementScope -Identity 'Nope' -ErrorAction Stop
        Write-Output 'not reached'
    } catch {
        Write-Output ('caught: ' + $_.Exception.Message)
    }
    try { throw 'boom' } catch { Write-Output $_.Exception.Message }
    """
    assert output(exchange, script) == [
        "caught: The operation couldn't be performed because object 'Nope' couldn't be found on 'DC01.contoso.com'.",
        "boom"]


def test_rethrow_stops_the_script(exchange):
    outcome = exchange.run("$ErrorActionPreference = 'Stop'\ntry { Get-RoleGroup -Identity 'x' -ErrorAction Stop } catch { "
                           "Write-Output 'failing'; throw }\nWrite-Output 'not reached'")
    assert outcome.exit_code == 1
    assert outcome.output == ["failing"]
    assert "couldn't be found" in outcome.errors[0]
    assert "At line:2 char:7" in outcome.errors[0]


def test_exchange_cmdlets_do_not_see_a_script_scope_preference(exchange):
    """Imported Exchange cmdlets (Import-PSSession proxies, the ExchangeOnlineManagement module) are functions of a
    script module: a script-scope $ErrorActionPreference = 'Stop' does not reach them (PowerShell issue #4568), so
    their errors stay non-terminating unless the call says -ErrorAction Stop. A failed change must say so itself."""
    script = """
    $ErrorActionPreference = 'Stop'
    try {
        Add-RoleGroupMember -Identity 'Organization Management' -Member 'nobody@contoso.com'
        Write-Output 'went on'
        Add-RoleGroupMember -Identity 'Organization Management' -Member 'nobody@contoso.com' -ErrorAction Stop
        Write-Output 'not reached'
    } catch {
        Write-Output ('caught: ' + [string]$_.CategoryInfo.Reason)
    }
    """
    outcome = exchange.run(script)
    assert outcome.output == ["went on", "caught: ManagementObjectNotFoundException"]
    assert "couldn't be found" in outcome.errors[0]  # the first call's error was written, not thrown


def test_error_action(exchange):
    script = """
    $a = Get-ManagementScope -Identity 'Nope' -ErrorAction SilentlyContinue
    Write-Output ($a -eq $null)
    Get-ManagementScope -Identity 'Nope'
    Write-Output 'continued'
    Get-ManagementScope -Identity 'Nope' -ErrorAction Stop
    Write-Output 'not reached'
    """
    outcome = exchange.run(script)
    assert outcome.output == ["True", "continued"]
    assert outcome.exit_code == 1
    assert len(outcome.errors) == 2  # the Continue one, then the terminating one


def test_pipelines_and_convert_to_json(exchange):
    script = """
    New-ManagementScope -Name 'R' -RecipientRestrictionFilter "RecipientTypeDetails -eq 'RoomMailbox'" | Out-Null
    Write-Output (@{kind = 'K'; list = @('a'); n = 1; ok = $true; none = $null} | ConvertTo-Json -Compress)
    Get-ManagementScope -Identity 'R' | ConvertTo-Json -Compress
    """
    first, second = output(exchange, script)
    assert json.loads(first) == {"kind": "K", "list": ["a"], "n": 1, "ok": True, "none": None}
    assert json.loads(second)["RecipientFilter"] == "(RecipientTypeDetails -eq 'RoomMailbox')"  # stored form


def test_switch_with_explicit_value_and_positional_identity(exchange):
    script = """
    New-ManagementScope 'R' -RecipientRestrictionFilter 'Office -eq ''Berlin''' -Exclusive:$false
    Write-Output (Get-ManagementScope 'R').Exclusive
    Remove-ManagementScope 'R' -Confirm:$false
    """
    assert output(exchange, script)[-1] == "False"


@pytest.mark.parametrize("script, fragment", [
    ("while ($true) { }", "2:1: unsupported PowerShell construct while_statement"),
    ("$x = \"$($env:PATH)\"", "expandable string with variables"),
    ("Get-Process | ForEach-Object { $_ }", "the sandbox does not implement the command 'Get-Process'"),
    ("$a = 1 * 2", "unsupported PowerShell construct operator *"),
    ("function f { }", "unsupported PowerShell construct function_statement"),
    ("[xml]$a = '<a/>'", "cast to [xml]"),
    ("$a -= 1", "assignment operator -="),
    ("$a = (1", "PowerShell syntax error"),
])
def test_unsupported_constructs_fail_before_running(exchange, script, fragment):
    before = exchange.org.model_dump()
    with pytest.raises(ScriptError) as caught:
        exchange.run("New-ManagementScope -Name 'X' -RecipientRestrictionFilter 'Office -eq ''A'''\n" + script)
    assert fragment in str(caught.value)
    assert exchange.org.model_dump() == before  # nothing ran


def test_wrong_parameter_name_is_reported_with_position(exchange):
    with pytest.raises(ScriptError) as caught:
        exchange.run("Write-Output 'ok'\nNew-ManagementScope -Name 'X' -RecipientFilter 'Office -eq ''A'''")
    assert str(caught.value) == ("2:31: New-ManagementScope: A parameter cannot be found that matches parameter "
                                 "name 'RecipientFilter'.")


def test_parameter_traps_from_the_cmdlet_reference(exchange):
    with pytest.raises(ScriptError, match="matches parameter name 'Exclusive'"):
        exchange.run("Set-ManagementScope -Identity 'X' -Exclusive")
    with pytest.raises(ScriptError, match="matches parameter name 'Members'"):
        exchange.run("Add-RoleGroupMember -Identity 'X' -Members 'a@contoso.com'")


def test_ambiguous_and_prefix_parameters(exchange):
    assert output(exchange, "Get-ManagementScope -Id 'Hosting tenants' | Out-Null\nWrite-Output 'ok'") == ["ok"]
    with pytest.raises(ScriptError, match="is ambiguous"):
        exchange.run("Get-ManagementRoleAssignment -R 'x'")


def test_binding_errors_are_terminating_and_catchable(exchange):
    script = """
    try { Add-MailboxPermission -Identity 'room-berlin-1@contoso.com' -User 'svc-rooms@contoso.com' -AccessRights 'FullAccess' -AutoMapping 'yes' }
    catch { Write-Output $_.Exception.Message }
    try { New-ManagementScope -Name @('a', 'b') -RecipientRestrictionFilter 'Office -eq ''x''' }
    catch { Write-Output $_.Exception.Message }
    """
    first, second = output(exchange, script)
    assert "Cannot convert value \"yes\" to type \"System.Boolean\"" in first
    assert "Cannot convert 'System.Object[]' to the type 'System.String'" in second


# ------------------------------------------------------------------------------------------------ shapes
def _fresh_analysis(text):
    """What the full walk finds, with no shape remembered."""
    from toolkit.sandbox import interpreter

    with interpreter._SHAPES_LOCK:
        kept = dict(interpreter._SHAPES_INSIDE)
        interpreter._SHAPES_INSIDE.clear()
    try:
        return interpreter._analyse.__wrapped__(text)
    finally:
        with interpreter._SHAPES_LOCK:  # as it was, in its order (the shape just walked is not kept)
            interpreter._SHAPES_INSIDE.clear()
            interpreter._SHAPES_INSIDE.update(kept)


@pytest.mark.parametrize("playbook", sorted((REPO / "playbooks").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_tenant_script_of_a_checked_shape_gets_what_the_full_check_finds(playbook):
    """Two tenants' scripts differ in strings and the header comment: the second is not walked again, and what it
    gets (no problems, its own command nodes in order) is what walking it finds."""
    from toolkit.playbook.diagnostics import Diagnostics
    from toolkit.playbook.validate import load_and_validate
    from toolkit.render.engine import render_script
    from toolkit.sandbox import interpreter

    texts = []
    for tenant in ("t0001", "t0002"):
        values = {"service_account": f"svc-{tenant}@contoso.com", "tenant": tenant, "sp_object_id":
                  f"0b7c2e44-9d1a-4e5f-8c3b-00000000{tenant[1:]}", "tenant_ou": f"OU={tenant},DC=hoster,DC=local"}
        loaded, diagnostics = load_and_validate(playbook, values, Diagnostics())
        assert loaded is not None, [d.format() for d in diagnostics.errors]
        texts += [render_script(loaded, state=state).text for state in ("facts", "present", "absent")]
    for index, text in enumerate(texts):
        shape = interpreter._shape(interpreter.parse(text), text.encode())[0]
        with interpreter._SHAPES_LOCK:
            known = shape in interpreter._SHAPES_INSIDE
        assert known or index < 3  # the second tenant's scripts have the first one's shapes: not walked again
        analysis = interpreter._analyse.__wrapped__(text)
        fresh = _fresh_analysis(text)
        assert analysis.problems == fresh.problems == ()
        assert fresh.commands is not None and (analysis.commands is None or not known)  # a known shape: queried
        commands = interpreter._command_nodes(analysis.tree)
        assert [(c.start_byte, c.text) for c in commands] == [(c.start_byte, c.text) for c in fresh.commands]


def test_a_construct_outside_the_subset_is_refused_even_in_a_script_shaped_like_a_checked_one(exchange):
    checked = "# tenant a\n$name = 'room-a'\nif ($name -eq 'room-a') { $count = 1 }\n"
    assert exchange.run(checked).exit_code == 0
    # the same shape (other strings, another comment) is inside the subset, and is run
    assert exchange.run("# tenant b\n$name = 'b'\nif ($name -eq 'x') { $count = 1 }\n").exit_code == 0
    # outside the strings and comments the script differs: walked again, and refused
    with pytest.raises(ScriptError, match="operator -band"):
        exchange.run("# tenant c\n$name = 'c'\nif ($name -band 'x') { $count = 1 }\n")
    with pytest.raises(ScriptError, match="unsupported PowerShell construct"):
        exchange.run("# tenant d\n$name = \"$(Get-Date)\"\nif ($name -eq 'x') { $count = 1 }\n")


def test_a_shape_found_in_one_command_table_is_checked_again_in_another():
    """The second tenant's script of a shape is not checked again against a table that resolves its commands the
    same way; a table without one of its commands, or without one of its parameters, still refuses it."""
    from toolkit.sandbox.commands import Command

    def table(**parameters):
        return {"set-room": Command("Set-Room", parameters, lambda bound, pipeline: [bound["Name"]])}

    full = table(Name="string", Capacity="int")
    assert Interpreter(full).run("# a\nSet-Room -Name 'a' -Capacity 3\n").output == ["a"]
    assert Interpreter(table(Name="string", Capacity="int")).run("# b\nSet-Room -Name 'b' -Capacity 3\n").output \
        == ["b"]
    with pytest.raises(ScriptError) as unknown:
        Interpreter(table(Name="string")).check("# c\nSet-Room -Name 'c' -Capacity 3\n")
    assert str(unknown.value) == ("2:20: Set-Room: A parameter cannot be found that matches parameter name "
                                  "'Capacity'.")
    with pytest.raises(ScriptError) as missing:
        Interpreter({}).check("# d\nSet-Room -Name 'd' -Capacity 3\n")
    assert str(missing.value) == "2:1: the sandbox does not implement the command 'Set-Room'"
    assert Interpreter(full).run("# e\nSet-Room -Name 'e' -Capacity 3\n").output == ["e"]


# Scripts of one shape: their comments and verbatim strings differ (quotes doubled, line breaks, characters of
# several bytes: positions move along lines and across them), nothing else does.
_SHAPED = """# {0}
$a = {1}; $b = {2} + 'x' <# {3} #>
$h = @{{{4} = 1; k = {5}}}
Write-Output ($a + $b) $h[{4}] $h.{4}
if ($a -eq {6}) {{ Write-Output 'same' }} else {{ Write-Output 'other' }}
try {{ throw ({7} + $a) }} catch {{ Write-Output $_.Exception.Message }}
Fail-Thing -Name {8}; Write-Output 'after'
$text = {9}
& ([scriptblock]::Create($text))
throw {1}
"""
_TEXTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from("'\u2018\u2019\n"),
                 max_size=8)
_COMMENTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8).filter(
    lambda t: "#>" not in t and not t.endswith("#"))


def _verbatim(text):
    return "'" + "".join(c + c if c in SINGLE_QUOTES else c for c in text) + "'"


def _shaped(comments, strings, block_strings):
    block = f"Write-Output {_verbatim(block_strings[0])}\nthrow {_verbatim(block_strings[1])}"
    return _SHAPED.format(comments[0], *map(_verbatim, strings[:2]), comments[1], *map(_verbatim, strings[2:]),
                          _verbatim(block))


def _failing_table():
    from toolkit.sandbox.commands import CmdletError, Command

    def fail(bound, pipeline):
        raise CmdletError(f"no thing named {bound['Name']}", "ObjectNotFound")

    return {"fail-thing": Command("Fail-Thing", {"Name": "string"}, fail)}


@settings(max_examples=40, deadline=None)
@given(first=st.tuples(st.lists(_COMMENTS, min_size=2, max_size=2), st.lists(_TEXTS, min_size=7, max_size=7),
                       st.lists(_TEXTS, min_size=2, max_size=2)),
       second=st.tuples(st.lists(_COMMENTS, min_size=2, max_size=2), st.lists(_TEXTS, min_size=7, max_size=7),
                        st.lists(_TEXTS, min_size=2, max_size=2)))
def test_a_compiled_shape_runs_every_script_of_that_shape_as_its_own_tree_would(first, second):
    """The second script runs on the tree compiled from the first one: every node has the second script's type,
    text and position (as tree-sitter parses it), and the run gives what compiling its own tree gives, error
    positions included."""
    from toolkit.render.syntax import parse
    from toolkit.sandbox import interpreter

    one, other = _shaped(*first), _shaped(*second)
    table = _failing_table()
    Interpreter(table).run(one)
    compiled = interpreter._analyse(one)
    assert compiled.shape == interpreter._analyse(other).shape
    root = interpreter._COMPILED[compiled.shape]
    shared = Interpreter(table).run(other)
    assert interpreter._COMPILED[compiled.shape] is root  # the second script ran on the first one's tree

    source = interpreter._analyse(other)
    script = interpreter.Source(source.source, source.slots)

    def same(node, compiled_node):
        assert compiled_node.type == node.type
        assert script.text(compiled_node) == node.text.decode()
        assert script.position(compiled_node) == (node.start_point[0] + 1, node.start_point[1] + 1)
        assert len(compiled_node.children) == len(node.children)
        for child, compiled_child in zip(node.children, compiled_node.children, strict=True):
            same(child, compiled_child)

    same(parse(other).root_node, root)
    with interpreter._SHAPES_LOCK:
        kept = dict(interpreter._COMPILED)
        interpreter._COMPILED.clear()
    try:
        own = Interpreter(table).run(other)
    finally:
        with interpreter._SHAPES_LOCK:
            interpreter._COMPILED.clear()
            interpreter._COMPILED.update(kept)
    assert (shared.output, shared.errors, shared.exit_code) == (own.output, own.errors, own.exit_code)
    assert shared.exit_code == 1 and "no thing named" in shared.errors[0]


def test_the_shape_kept_longest_is_the_one_used_least_recently():
    """A fleet's few script shapes are used again and again among one-off scripts: a shape used again is kept while
    older ones make way (least recently used, not first in)."""
    from toolkit.sandbox import interpreter

    def shape_of(text):
        return interpreter._shape(interpreter.parse(text), text.encode())[0]

    def check(text):
        interpreter._analyse.__wrapped__(text)  # the check itself, past the cache by text

    with interpreter._SHAPES_LOCK:
        kept = dict(interpreter._SHAPES_INSIDE)
        interpreter._SHAPES_INSIDE.clear()
    try:
        fleet, first_one_off = "$a = 'x'\n", "$v0 = 'y'\n"
        check(fleet)
        check(first_one_off)
        for index in range(1, interpreter._SHAPES_KEPT - 1):
            check(f"$v{index} = 'y'\n")
        check(fleet.replace("x", "another tenant"))  # the fleet's shape, used again: now the newest
        check("$w = 'z'\n")  # one more: the least recently used goes
        with interpreter._SHAPES_LOCK:
            assert shape_of(fleet) in interpreter._SHAPES_INSIDE
            assert shape_of(first_one_off) not in interpreter._SHAPES_INSIDE
            assert len(interpreter._SHAPES_INSIDE) == interpreter._SHAPES_KEPT
    finally:
        with interpreter._SHAPES_LOCK:
            interpreter._SHAPES_INSIDE.clear()
            interpreter._SHAPES_INSIDE.update(kept)


def test_a_new_shape_met_by_many_threads_at_once_is_walked_and_compiled_once(monkeypatch):
    """A fleet worker's first tenants all bring the same new script shape at once: one thread walks and compiles
    it, the others wait and use it (not every thread walking and compiling the same shape)."""
    import threading
    import time
    import uuid

    from toolkit.sandbox import interpreter, program

    walks, compiles = [], []
    walked, compile_tree = interpreter._walked, program.compile_tree

    def slow_walk(*args):
        walks.append(1)
        time.sleep(0.05)  # long enough for every other thread to arrive meanwhile
        return walked(*args)

    def slow_compile(*args):
        compiles.append(1)
        time.sleep(0.05)
        return compile_tree(*args)

    monkeypatch.setattr(interpreter, "_walked", slow_walk)
    monkeypatch.setattr(interpreter, "compile_tree", slow_compile)
    start = threading.Barrier(8)
    outputs = {}
    variable = f"$shape_{uuid.uuid4().hex}"  # a shape no test ran before

    def tenant(index):
        start.wait()
        outputs[index] = Interpreter({}).run(f"# tenant {index}\n{variable} = 'v{index}'\nWrite-Output {variable}\n"
                                             ).output

    threads = [threading.Thread(target=tenant, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outputs == {i: [f"v{i}"] for i in range(8)}
    assert (len(walks), len(compiles)) == (1, 1)


def test_a_deeply_nested_expression_runs():
    """Each parenthesis is a dozen precedence levels of the grammar's tree: 200 nested ones are thousands of nodes
    deep, and compiling the script's tree must not recurse that deep."""
    script = "$x = " + "(" * 200 + "'deep'" + ")" * 200 + "\nWrite-Output $x\n"
    assert Interpreter({}).run(script).output == ["deep"]


@pytest.mark.parametrize("order", ["comment first", "control byte first"])
def test_a_byte_the_shape_marks_slots_with_is_the_scripts_own_outside_them(order):
    """A comment and a bare argument holding the byte that marks a comment's place in a shape are different
    scripts: each runs on its own tree, whichever ran first (found by review)."""
    tail = f"Write-Output '{order} {uuid.uuid4().hex}'\n"  # a shape no test ran before
    commented = "Write-Output 'one' <#c#>\n" + tail
    control = "Write-Output 'one' \x01\n" + tail
    first, second = (commented, control) if order == "comment first" else (control, commented)
    Interpreter({}).run(first)
    outcome = Interpreter({}).run(second)
    expected = ["one", "\x01"] if second is control else ["one"]
    assert outcome.output == [*expected, tail[len("Write-Output '"):-2]]
