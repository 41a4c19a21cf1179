"""Benchmark: the structural fuzzer (tests/fuzzing.py) over many documents, with time and memory per document.

    python benchmarks/fuzz.py --examples 10000

Each document (a mutated example playbook or inventory, written as YAML with aliases, merge keys, tags, odd scalars,
duplicate keys, deep nesting, huge lists) goes through the real CLI in this process; a document breaking a rule
(traceback, exit code other than 0 or 1, an unpositioned error, a script that does not parse or carries a user
value as anything but a string literal) is a failure, printed with its text. Hypothesis draws the documents
(seeded: --seed). The last line is:

examples=N failures=F max_s=… max_rss_mb=… valid=V
where max_s is the longest time one document took, max_rss_mb the peak resident memory of a fuzzing process and
valid the number of documents that were valid playbooks (rendered and checked as scripts). --workers N shares the
examples among N processes.
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1,
                        help="processes sharing the examples (each draws its own, seeded seed + its number)")
    parser.add_argument("--show", type=int, default=3, help="failures to print in full (default 3)")
    options = parser.parse_args()
    shares = [options.examples // options.workers + (i < options.examples % options.workers)
              for i in range(options.workers)]
    if options.workers == 1:
        results = [fuzz(shares[0], options.seed, options.show)]
    else:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(options.workers) as pool:
            results = pool.starmap(fuzz, [(n, options.seed + i, options.show) for i, n in enumerate(shares)])
    total = {key: sum(r[key] for r in results) for key in ("examples", "failures", "valid")}
    max_s = max(r["max_s"] for r in results)
    rss_mb = max(r["rss_mb"] for r in results)
    print(f"examples={total['examples']} failures={total['failures']} max_s={max_s:.2f} max_rss_mb={rss_mb:.0f} "
          f"valid={total['valid']}")
    sys.exit(1 if total["failures"] else 0)


def fuzz(examples: int, seed_value: int, show: int) -> dict[str, float]:
    """Check ``examples`` documents drawn with ``seed_value``; the counts, the longest document and peak memory."""
    from fuzzing import Finding, check, documents, scratch
    from hypothesis import HealthCheck, given, seed, settings

    stats = {"examples": 0, "failures": 0, "valid": 0, "max_s": 0.0}
    shown = 0

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
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
                if shown < show:
                    shown += 1
                    print(f"--- failure {stats['failures']} (seed {seed_value}): {finding}", file=sys.stderr)
            stats["max_s"] = max(stats["max_s"], time.perf_counter() - begin)
        if stats["examples"] % 500 == 0:
            print(f"seed {seed_value}: {stats['examples']} documents, {stats['failures']} failures", file=sys.stderr,
                  flush=True)

    run()
    return {**stats, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _valid(path: Path) -> bool:
    from toolkit.playbook.diagnostics import Diagnostics
    from toolkit.playbook.validate import load_and_validate

    diagnostics = Diagnostics()
    load_and_validate(path, {}, diagnostics)
    return not diagnostics.errors


if __name__ == "__main__":
    main()
