"""The structural fuzzer (tests/fuzzing.py) in CI: 200 whole documents, valid and near-valid, the same ones every run
(derandomized: CI does not turn red by chance). Other and more documents, ten thousand
and the time and memory per document: python benchmarks/fuzz.py --examples 10000."""

from __future__ import annotations

import resource

from fuzzing import Document, check, documents, scratch
from hypothesis import HealthCheck, given, settings

MAX_RSS_MB = 1024  # a bound on the whole test process, whatever the documents held


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(document=documents())
def test_any_document_is_answered_with_positions_and_never_a_traceback(document: Document):
    with scratch() as workdir:
        from pathlib import Path

        check(document, Path(workdir))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 < MAX_RSS_MB


def test_fuzz_benchmark_prints_its_last_line():
    import re
    import subprocess
    import sys

    from conftest import REPO

    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fuzz.py"), "--examples", "6", "--workers", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r"examples=6 failures=0 max_s=\d+\.\d\d max_rss_mb=\d+ valid=\d+",
                        run.stdout.strip().splitlines()[-1]), run.stdout
