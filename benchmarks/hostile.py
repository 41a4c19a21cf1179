"""Benchmark: how fast and in how much memory exkit refuses hostile YAML (toolkit/playbook/bounded_yaml.py).

    python benchmarks/hostile.py --runs 5

Three playbooks, each refused by `exkit validate` with a positioned error: a "billion laughs" alias bomb (a dozen
lines, 10^9 nodes expanded), a 50 MB file (sparse, never read) and a list nested 10,000 deep. Each is validated
--runs times as a fresh process (cold start included, as a user or a CI job starts it); the best wall time and the
largest peak memory are printed. The last line is:
bomb_s=… huge_s=… deep_s=… max_rss_mb=…
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOMB = "exkit: 1\nname: bomb\nvars:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))


def validate(path: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and the first error line of one `exkit validate` process."""
    begin = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "toolkit", "validate", str(path)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read() if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - begin
    if process.returncode != 1 or "Traceback" in stderr:
        raise SystemExit(f"{path.name}: expected a positioned error and exit 1, got {process.returncode}: {stderr}")
    return elapsed, usage.ru_maxrss / 1024, stderr.splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="exkit-hostile-") as scratch:
        folder = Path(scratch)
        (folder / "bomb.yaml").write_text(BOMB, encoding="utf-8")
        with (folder / "huge.yaml").open("wb") as handle:
            handle.write(b"exkit: 1\nname: huge\ndescription: ")
            handle.truncate(50 * 1024 * 1024)
        (folder / "deep.yaml").write_text("[" * 10_000 + "]" * 10_000 + "\n", encoding="utf-8")
        best: dict[str, float] = {}
        rss = 0.0
        for name in ("bomb", "huge", "deep"):
            times = []
            for _ in range(options.runs):
                elapsed, peak, error = validate(folder / f"{name}.yaml")
                times.append(elapsed)
                rss = max(rss, peak)
            best[name] = min(times)
            print(f"{name}: best {best[name]:.2f} s of {options.runs}; {error.replace(str(folder) + '/', '')}")
    print(f"bomb_s={best['bomb']:.2f} huge_s={best['huge']:.2f} deep_s={best['deep']:.2f} max_rss_mb={rss:.0f}")


if __name__ == "__main__":
    main()
