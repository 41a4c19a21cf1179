"""Benchmarks and test servers leave nothing behind in the temporary directory: not when they finish, not when
Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM stops them."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_tenants_benchmark_removes_its_organisations(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "tenants.py"), "--tenants", "2", "--rtt-ms", "1",
                          "--forks", "2", "--no-naive", "--server-processes", "1"], capture_output=True, text=True,
                         timeout=300, cwd=REPO, env={**os.environ, "TMPDIR": str(temp)})
    assert run.returncode == 0, run.stderr
    assert list(temp.iterdir()) == []


def test_tenants_benchmark_cleans_up_on_ctrl_c(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    run = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "tenants.py"), "--tenants", "30", "--rtt-ms",
                            "50", "--forks", "2", "--server-processes", "2"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "TMPDIR": str(temp)},
                           start_new_session=True)
    try:
        wait_for(lambda: any((d / "tenants.yaml").exists() for d in temp.glob("exkit-bench-*")))
        os.killpg(run.pid, signal.SIGINT)  # as Ctrl-C does: the benchmark and its server processes
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_loopback_winrm_server_cleans_up(tmp_path, stop):
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = subprocess.Popen([sys.executable, "-m", "tests.servers.winrm", "--port", "0", "--state",
                               str(tmp_path / "org.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO, env={**os.environ, "TMPDIR": str(temp), "EXKIT_WINRM_PASSWORD": "pw"},
                              start_new_session=True)
    try:
        assert select.select([server.stdout], [], [], 60)[0], "the server printed nothing within 60 s"
        assert server.stdout.readline().startswith("loopback WinRM")
        assert [p.name[:12] for p in temp.iterdir()] == ["exkit-winrm-"]  # its accounts file, while it runs
        os.killpg(server.pid, stop)
        _, stderr = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert "Traceback" not in stderr, stderr
    assert list(temp.iterdir()) == []
