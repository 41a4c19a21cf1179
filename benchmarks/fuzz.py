"""Benchmark: the structural fuzzer (tests/fuzzing.py) over many documents, with time and memory per document.

    python benchmarks/fuzz.py --examples 10000

Each document (a mutated example playbook or inventory, written as YAML with aliases, merge keys, tags, odd scalars,
duplicate keys, deep nesting, huge lists) goes through the real CLI in this process; a document breaking a rule
(traceback, exit code other than 0 or 1, an unpositioned error, a script that does not parse or carries a user
value as anything but a string literal) is a failure, printed with its text. Hypothesis draws the documents
(seeded: --seed). The last line is:

examples=N failures=F max_s=… max_rss_mb=… valid=V
where max_s is the longest time one document took and max_rss_mb the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def main() -> None:
    from fuzzing import Finding, check, documents, scratch
    from hypothesis import HealthCheck, given, seed, settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=3, help="failures to print in full (default 3)")
    options = parser.parse_args()
    stats = {"examples": 0, "failures": 0, "valid": 0, "max_s": 0.0}
    shown = 0

    @seed(options.seed)
    @settings(max_examples=options.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(document=documents())
    def run(document) -> None:  # type: ignore[no-untyped-def]
        nonlocal shown
        stats["examples"] += 1
        with scratch() as workdir:
            begin = time.perf_counter()
            try:
                check(document, Path(workdir))
                stats["valid"] += document.kind == "playbook" and _valid(Path(workdir) / "playbook.yaml")
            except Finding as finding:
                stats["failures"] += 1
                if shown < options.show:
                    shown += 1
                    print(f"--- failure {stats['failures']}: {finding}", file=sys.stderr)
            stats["max_s"] = max(stats["max_s"], time.perf_counter() - begin)
        if stats["examples"] % 500 == 0:
            print(f"{stats['examples']} documents, {stats['failures']} failures", file=sys.stderr, flush=True)

    run()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"examples={stats['examples']} failures={stats['failures']} max_s={stats['max_s']:.2f} "
          f"max_rss_mb={rss_mb:.0f} valid={stats['valid']}")
    sys.exit(1 if stats["failures"] else 0)


def _valid(path: Path) -> bool:
    from toolkit.playbook.diagnostics import Diagnostics
    from toolkit.playbook.validate import load_and_validate

    diagnostics = Diagnostics()
    load_and_validate(path, {}, diagnostics)
    return not diagnostics.errors


if __name__ == "__main__":
    main()
