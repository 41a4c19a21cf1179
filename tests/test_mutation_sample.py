"""CI's sample of the mutation benchmark: a seeded handful of mutants of each of two core modules must be caught.

The whole run (every core module, tens of minutes) is ``python benchmarks/mutation.py``; see the README."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO

LAST_LINE = re.compile(r"mutants=(\d+) killed=(\d+) survived=(\d+) timeout=(\d+) score=(\d\.\d{3})")


def test_a_sample_of_mutants_is_caught():
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "mutation.py"), "--sample", "8", "--seed", "7",
                          "quoting", "throttle"], capture_output=True, text=True, timeout=900, cwd=REPO,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    match = LAST_LINE.fullmatch(run.stdout.strip().splitlines()[-1])
    assert match, run.stdout
    mutants, killed, survived, timeout = (int(g) for g in match.groups()[:4])
    assert mutants == 16 and killed + survived + timeout == mutants
    # --sample is per group: 8 of each, each group's own line, and the estimate over both groups' mutants
    for group in ("quoting", "throttle"):
        assert re.search(rf"^  {group} +of +\d+  mutants=   8 killed= +\d+ survived= +\d+ timeout= +\d+ "
                         r"score=\d\.\d{3}$", run.stdout, re.MULTILINE), run.stdout
    assert re.search(r"^estimated over all \d+ mutants of these groups .*: score=\d\.\d{3}$", run.stdout,
                     re.MULTILINE), run.stdout
    assert float(match.group(5)) >= 0.9, run.stdout
