"""The wheel carries the templates: render from an installed wheel, outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    # Offline: no package index, and the build backend installed with the test extra (no isolated build env).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-q",
                    "-w", str(out), str(REPO)], check=True, capture_output=True, timeout=600)
    return next(out.glob("exkit-*.whl"))


def test_wheel_contains_templates(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "toolkit/_templates/exchange-server/script.ps1.j2" in names
    assert "toolkit/_templates/common/role_group.ps1.j2" in names
    assert "toolkit/_templates/exchange-online/service_principal.ps1.j2" in names
    assert "toolkit/_templates/report/run_report.html.j2" in names  # the change-board report's layout


def test_render_from_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=600)
    playbook = tmp_path / "p.yaml"
    playbook.write_text((REPO / "playbooks" / "classic.yaml").read_text())
    code = ("import toolkit, sys; assert toolkit.__file__.startswith(sys.argv[1]), toolkit.__file__; "
            "from toolkit.cli import main; sys.argv = ['exkit', 'render', 'p.yaml']; main()")
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (REPO / "tests" / "golden" / "classic.apply.ps1").read_text()
