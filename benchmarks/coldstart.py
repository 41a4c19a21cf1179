"""Benchmark: cold start of the exkit command, each run a fresh Python process as a user would start it.

    python benchmarks/coldstart.py --runs 15

For `exkit --help` and `exkit validate playbooks/classic.yaml` it prints the best and the median wall time of
--runs starts (the best is the figure least disturbed by other load on the machine; the goal is < 300 ms each), and
the slowest imports of each as `python -X importtime` reports them. The last line is:
help_ms=… validate_ms=… (best of N), help_median_ms=… validate_median_ms=…
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {"help": ["--help"], "validate": ["validate", "playbooks/classic.yaml"]}


def exkit_command() -> list[str]:
    """The installed console script next to this interpreter (what a user runs), else `python -m toolkit`."""
    script = Path(sys.executable).parent / "exkit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "toolkit"]


def start(args: list[str]) -> float:
    env = {**os.environ, "COLUMNS": "100"}
    begin = time.perf_counter()
    run = subprocess.run([*exkit_command(), *args], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - begin
    if run.returncode != 0:
        raise SystemExit(f"exkit {' '.join(args)} exited {run.returncode}: {run.stderr[-2000:]}")
    return elapsed * 1000


def slowest_imports(args: list[str], count: int) -> list[tuple[int, str]]:
    """The top-level packages with the largest cumulative import time (µs) in one `-X importtime` start."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "toolkit", *args], cwd=REPO,
                         capture_output=True, text=True)
    totals: dict[str, int] = {}
    for line in run.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not name.startswith("  "):  # a top-level import (nested ones are indented further)
            totals[name.strip()] = totals.get(name.strip(), 0) + int(cumulative)
    return sorted(((us, name) for name, us in totals.items()), reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="starts per command (default 15)")
    parser.add_argument("--imports", type=int, default=6, help="slowest top-level imports to list (default 6)")
    options = parser.parse_args()
    best: dict[str, float] = {}
    median: dict[str, float] = {}
    for name, args in COMMANDS.items():
        start(args)  # warm the file system cache and the bytecode cache first
        times = [start(args) for _ in range(options.runs)]
        best[name], median[name] = min(times), statistics.median(times)
        print(f"exkit {' '.join(args)}: best {best[name]:.0f} ms, median {median[name]:.0f} ms "
              f"of {options.runs} starts")
        for us, module in slowest_imports(args, options.imports):
            print(f"    {us / 1000:7.1f} ms  import {module}")
    print(f"help_ms={best['help']:.0f} validate_ms={best['validate']:.0f} "
          f"help_median_ms={median['help']:.0f} validate_median_ms={median['validate']:.0f}")


if __name__ == "__main__":
    main()
