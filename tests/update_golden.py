"""Refresh the golden scripts on purpose:  python -m tests.update_golden

``tests/test_render.py::test_golden`` only compares; it never writes. After a deliberate change to a template or a
playbook example, run this command, read the diff (git diff tests/golden) and commit it with the change.
"""

from __future__ import annotations

import sys
from pathlib import Path

from toolkit.playbook.validate import require_playbook
from toolkit.render.engine import render_script

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import EXAMPLE_VARS  # noqa: E402  (the values test_golden renders the examples with)

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
STATES = {"present": "apply", "absent": "destroy", "facts": "facts"}


def golden_path(playbook: Path, state: str) -> Path:
    return GOLDEN / f"{playbook.stem}.{STATES[state]}.ps1"


def render(playbook: Path, state: str) -> str:
    model, _ = require_playbook(playbook, EXAMPLE_VARS.get(playbook.stem))
    return render_script(model, state=state).text


def main() -> int:
    GOLDEN.mkdir(exist_ok=True)
    changed = 0
    for playbook in sorted((REPO / "playbooks").glob("*.yaml")):
        for state in STATES:
            path = golden_path(playbook, state)
            text = render(playbook, state)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8", newline="\n")
                print(f"updated {path.relative_to(REPO)}")
                changed += 1
    print(f"{changed} golden file(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
