"""The structural fuzzer (tests/fuzzing.py) in CI: a few hundred whole documents, valid and near-valid. Ten thousand
and the time and memory per document: python benchmarks/fuzz.py --examples 10000."""

from __future__ import annotations

import resource

from fuzzing import Document, check, documents, scratch
from hypothesis import HealthCheck, given, settings

MAX_RSS_MB = 1024  # a bound on the whole test process, whatever the documents held


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=documents())
def test_any_document_is_answered_with_positions_and_never_a_traceback(document: Document):
    with scratch() as workdir:
        from pathlib import Path

        check(document, Path(workdir))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 < MAX_RSS_MB
