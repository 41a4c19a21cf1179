"""Every resource kind is declared everywhere it must be — and nowhere else decides what it changes.

A kind needs: its module (KIND, TEMPLATE, desired, view) listed in KINDS; a template with present, absent and facts
branches; the cmdlets those branches call in the sandbox (with the parameters they pass); the object types its facts
branch prints known to the mirror; an example playbook using it (so golden files, plans and the differential test
cover it); and no decision logic in Python (no compare()/calls())."""

from __future__ import annotations

import re

import pytest
from conftest import PLAYBOOKS, REPO

from toolkit.playbook.validate import require_playbook
from toolkit.render.engine import make_environment, render_script
from toolkit.resources import KINDS, desired_resources
from toolkit.sandbox.cmdlets import ExchangeCmdlets
from toolkit.sandbox.interpreter import Interpreter
from toolkit.sandbox.mirror import OBJECT_TYPES
from toolkit.sandbox.seed import seed_organisation


def _examples() -> dict[str, list]:
    found: dict[str, list] = {}
    for path in PLAYBOOKS:
        try:
            playbook, _ = require_playbook(path, {})
        except Exception:  # a playbook that needs a target's variables (hosted-tenant): covered elsewhere
            continue
        for resource in desired_resources(playbook):
            found.setdefault(resource.kind, []).append(playbook)
    return found


EXAMPLES = _examples()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.KIND)
def test_a_kind_is_declared_in_every_place_it_needs(kind):
    for name in ("KIND", "TEMPLATE", "desired", "view"):
        assert hasattr(kind, name), f"{kind.__name__} lacks {name}"
    for decision in ("compare", "calls"):  # the template decides; Python must not decide a second time
        assert not hasattr(kind, decision), f"{kind.__name__} decides in Python too ({decision})"
    assert kind.KIND in EXAMPLES, f"no example playbook in playbooks/ uses {kind.KIND}"
    playbook = EXAMPLES[kind.KIND][0]
    source = make_environment(playbook.platform).loader.get_source(make_environment(playbook.platform),
                                                                   kind.TEMPLATE)[0]
    for state in ("state == 'facts'", "state == 'present'"):
        assert state in source, f"{kind.TEMPLATE} has no {state} branch"
    printed = set(re.findall(r"type = '(\w+)'", source))
    assert printed <= OBJECT_TYPES, f"the mirror cannot read back {printed - OBJECT_TYPES}"
    cmdlets = Interpreter(ExchangeCmdlets(seed_organisation(playbook.platform)).commands())
    resources = [r for r in desired_resources(playbook) if r.kind == kind.KIND]
    for state in ("present", "absent", "facts"):
        script = render_script(playbook, state=state, resources=resources).text
        cmdlets.check(script)  # unknown command or parameter: ScriptError with line:col


def test_the_readme_says_where_a_kind_goes():
    text = (REPO / "README.md").read_text()
    section = text[text.index("**Adding a resource kind**"):]
    for place in ("toolkit/resources/", "templates/", "toolkit/sandbox/cmdlets.py", "toolkit/sandbox/mirror.py",
                  "tests/test_resource_kinds.py"):
        assert place in section.split("\n\n")[0], place
