"""The change-board report of `exkit apply --report`: who, where, when, which run and version; status colours;
before → after per field; the full script with its sha256; "verify not run" when it did not run; self-contained HTML
(checked in a real headless chromium where one is installed: Debian's chromium, installed by .ci/run)."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from conftest import REPO, refuse_writes

from toolkit.targets.sandbox import SandboxTarget

CLASSIC = REPO / "playbooks" / "classic.yaml"
FAILING = """
exkit: 1
name: halfway
scopes:
  - {name: Rooms, rooms: true}
role_groups:
  - name: Room bookers
    description: "<script>alert('x')</script> & more"
    roles: [ApplicationImpersonation]
    members: ["svc-rooms@contoso.com"]
    scope: Rooms
"""


def apply_failing(cli, write_playbook, sandbox_state, report: Path):
    """An apply the target refuses at run time (the plan cannot foresee it): the scope is created, the role group
    fails."""
    refuse_writes(sandbox_state, "Room bookers", "Active Directory operation failed: access denied.")
    return cli("apply", write_playbook(FAILING), "--yes", "--report", report)


def record(runs_dir: Path) -> dict:
    lines = [json.loads(line) for path in sorted(runs_dir.glob("runs-*.jsonl"))
             for line in path.read_text().splitlines()]
    return lines[-1]


def drifted_classic(cli, tmp_path, suffix: str = ".html") -> tuple[Path, object]:
    """Apply the classic playbook, widen its scope's filter by hand, apply again with a report: an update with a
    before → after."""
    assert cli("apply", CLASSIC, "--yes").exit_code == 0
    drift = SandboxTarget(platform="exchange-server").run_script(
        "Set-ManagementScope -Identity 'Room mailboxes' "
        "-RecipientRestrictionFilter \"RecipientType -eq 'UserMailbox'\"")
    assert drift.exit_code == 0, drift.stderr
    report = tmp_path / f"report{suffix}"
    result = cli("apply", CLASSIC, "--yes", "--report", report)
    assert result.exit_code == 0, result.output
    return report, result


def test_html_report_carries_who_where_when_and_before_after(cli, sandbox_state, tmp_path, runs_dir):
    report, result = drifted_classic(cli, tmp_path)
    page = report.read_text(encoding="utf-8")
    run = record(runs_dir)
    facts = dict(re.findall(r'<tr><th scope="row">([^<]+)</th><td[^>]*>([^<]*)</td></tr>', page))
    assert facts["Run id"] == run["id"]
    assert facts["Operator"] == f"{run['user']} on {run['host']}"
    assert facts["Endpoint"] == html.escape(SandboxTarget(platform="exchange-server").describe())
    assert facts["exkit version"] == "0.1.0"
    assert facts["Started"].endswith(" UTC") and facts["Finished"] >= facts["Started"]
    assert facts["Playbook sha256"] == hashlib.sha256(CLASSIC.read_bytes()).hexdigest()
    assert re.fullmatch(r"[1-9]\d* passed, 0 failed", facts["Verify"]), facts["Verify"]
    # the plan's before → after for the field that drifted, coloured by status
    assert ('<span class="field">filter:</span> <span class="before">RecipientType -eq &#39;UserMailbox&#39;</span>'
            '<span class="arrow">→</span><span class="after">RecipientTypeDetails -eq &#39;RoomMailbox&#39;</span>'
            ) in page
    assert '<span class="status updated">update</span>' in page and '<span class="status pass">PASS</span>' in page
    assert '<div class="banner ok" id="outcome">' in page


def test_html_report_holds_the_script_that_ran_with_its_sha256(cli, sandbox_state, tmp_path):
    report, result = drifted_classic(cli, tmp_path)
    page = report.read_text(encoding="utf-8")
    script = html.unescape(re.search(r"<details>.*?<pre><code>(.*?)</code></pre>", page, re.S).group(1))
    sha = hashlib.sha256(script.encode("utf-8")).hexdigest()
    assert f"sha256 <span class=\"code\">{sha}</span>" in page
    assert f"Running script sha256 {sha}" in result.stderr


def test_html_report_is_self_contained_and_escapes_what_it_shows(cli, sandbox_state, tmp_path, write_playbook):
    report = tmp_path / "failed.html"
    result = apply_failing(cli, write_playbook, sandbox_state, report)
    assert result.exit_code == 1, result.output
    page = report.read_text(encoding="utf-8")
    for external in ("<link", "<script", "<img", "<iframe", "@import", "url("):  # no asset from anywhere else
        assert external not in page, external
    assert not re.search(r"""(src|href)\s*=\s*["']?\w+:""", page)
    assert "<script>" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in page
    assert '<div class="banner failed" id="outcome">' in page
    assert "access denied" in page and '<span class="status failed">failed</span>' in page
    assert '<span class="status created">created</span>' in page  # the scope, before the failure
    # verify did not run: the report says so, and never "0 passed, 0 failed"
    assert "verify not run: the run failed" in page and "0 passed, 0 failed" not in page


def test_markdown_report_says_verify_not_run(cli, sandbox_state, tmp_path, write_playbook):
    report = tmp_path / "failed.md"
    assert apply_failing(cli, write_playbook, sandbox_state, report).exit_code == 1
    text = report.read_text(encoding="utf-8")
    assert "- **Verify**: verify not run: the run failed" in text and "0 passed" not in text
    assert "&lt;script&gt;" in text and "<script>" not in text  # no raw HTML in Markdown either
    assert re.search(r"^\| \*\*failed\*\* \|", text, re.M) is None  # the result column is the third
    assert "| RoleGroup | Room bookers | **failed** |" in text


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"  # a fresh profile every time
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--no-first-run", f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HOME": str(tmp_path)})


def png_pixels(path: Path) -> tuple[int, int, set[tuple[int, int, int]]]:
    """Width, height and the set of colours of a PNG (8-bit RGB or RGBA, as chromium writes them)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks, header = 8, b"", None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks += body
        position += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    raw, stride, previous, colours = zlib.decompress(chunks), width * channels, bytearray(width * channels), set()
    for row in range(height):
        kind, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                best = min((abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner))[2]
                line[i] = (line[i] + best) & 255
        colours.update(tuple(line[i:i + 3]) for i in range(0, stride, channels))
        previous = line
    return width, height, colours


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (installed by .ci/run)")
def test_report_in_a_real_headless_browser(cli, sandbox_state, tmp_path, write_playbook):
    good, _ = drifted_classic(cli, tmp_path)
    bad = tmp_path / "failed.html"
    assert apply_failing(cli, write_playbook, sandbox_state, bad).exit_code == 1
    for report, banner in ((good, (0xDA, 0xFB, 0xE1)), (bad, (0xFE, 0xE4, 0xE2))):
        shot = tmp_path / f"{report.stem}.png"
        run = headless(tmp_path, f"--screenshot={shot}", "--window-size=1200,1400", "--hide-scrollbars",
                       report.as_uri())
        assert shot.exists(), run.stderr[-2000:]
        width, height, colours = png_pixels(shot)
        assert (width, height) == (1200, 1400)
        # the inline CSS took effect: the banner's background (green for ok, red for failed) and a status badge
        assert banner in colours, sorted(colours)[:20]
        assert (0xDA, 0xFB, 0xE1) in colours  # "created"/"PASS" badges are green on both pages
        dom = headless(tmp_path, "--dump-dom", report.as_uri()).stdout
        assert "<details>" in dom and "Show the full script" in dom
        pdf = tmp_path / f"{report.stem}.pdf"
        headless(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", report.as_uri())
        assert pdf.read_bytes()[:5] == b"%PDF-"  # the print stylesheet lays it out on A4 pages
