"""The tenants benchmark still runs and prints its figures in the agreed form (no timings are asserted here)."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO

HTTP_PER_ONLINE_TENANT = 11.0
LAST_LINE = re.compile(r"tenants=(\d+) wall_s=\d+\.\d\d floor_s=\d+\.\d\d ratio=\d+\.\d\d "
                       r"http_per_tenant=(\d+\.\d) naive_ratio=\d+\.\d\d peak_rss_mb=\d+")


def test_tenants_benchmark_prints_its_last_line():
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "tenants.py"), "--tenants", "3", "--rtt-ms",
                          "2", "--forks", "2"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    match = LAST_LINE.fullmatch(run.stdout.strip().splitlines()[-1])
    assert match, run.stdout
    # plan + apply in one connection and one shell: NTLM (3), Create, 2 × (Command, Send, Receive, Signal), Delete
    assert match.group(1) == "3" and match.group(2) == "13.0"


def test_online_tenants_benchmark_prints_its_last_line():
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "online_tenants.py"), "--tenants", "3",
                          "--rtt-ms", "2", "--forks", "2", "--server-processes", "2"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    match = LAST_LINE.fullmatch(run.stdout.strip().splitlines()[-1])
    assert match, run.stdout
    # per tenant: msal's discovery and token requests once for the run (plan and apply share them), then plan's
    # and apply's reads and apply's three creations
    assert match.group(1) == "3" and float(match.group(2)) == HTTP_PER_ONLINE_TENANT
    assert "3 Exchange Online tenants planned and applied with 2 forks" in run.stderr
