"""`simulate --html` of a flaw caught, opened from disk in headless Chromium.

The page is written by the real command (`python -m harness simulate --flaw
same-ballot-numbers --seed 1 --html FILE`, the first seed that flaw fails, as
README says); the count of messages it must draw comes from the same seeded
run replayed in this process. No priest process is started; the browser's
processes are killed by `bench.browser` and checked gone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.browser import chromium, console_lines, run_browser, strays
from harness.simulate.runs import Setup, run_seed
from tests.integration.test_report_real import opened_in_chromium

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BROWSER = chromium()
FLAW, SEED = "same-ballot-numbers", 10


def sent_between() -> int:
    """Messages the same seeded run sends from one priest to another."""
    world, violations = run_seed(Setup(5, flaws=(FLAW,)), SEED)
    assert violations, "the seed no longer catches the flaw: pick another"
    return sum(1 for s in world.steps if s.kind == "send" and s.priest != s.peer)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("simulated") / "flaw.html"
    done = subprocess.run([sys.executable, "-m", "harness", "simulate", "--flaw", FLAW, "--seed",
                           str(SEED), "--html", str(path)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 1, done.stdout + done.stderr  # the flaw is caught
    assert f"wrote {path}" in done.stdout
    return path


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (Debian: apt-get install "
                    "chromium; .ci/run installs it), so the report cannot be opened in a browser")
def test_a_simulated_flaw_report_opens_in_headless_chromium_from_disk(page: Path,
                                                                      tmp_path: Path) -> None:
    assert BROWSER is not None
    parsed, verdict = opened_in_chromium(page, tmp_path)
    assert len(parsed.having("msg")) == sent_between()
    assert verdict["data-exit"] == "1"
    assert {a["data-kind"] for a in parsed.having("violation")} >= {"ballot_reused"}


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (Debian: apt-get install "
                    "chromium; .ci/run installs it), so the report cannot be opened in a browser")
def test_an_evidence_link_zooms_the_timeline_to_it(page: Path, tmp_path: Path) -> None:
    assert BROWSER is not None
    text = page.read_text()
    found = re.search(r'class="show" href="(#t=[0-9.]+,[0-9.]+)"', text)
    assert found, "the verdict links its evidence to the timeline"
    dom = run_browser(BROWSER, page.resolve().as_uri() + found.group(1), "--dump-dom",
                      under=tmp_path)
    assert not console_lines(dom.stderr), console_lines(dom.stderr)
    width = re.search(r'id="stage"[^>]*style="width: ?([0-9.]+)%', dom.stdout)
    assert width and float(width.group(1)) > 100  # zoomed in: wider than the frame
    assert not strays(str(tmp_path)), "a browser process outlived its run"
