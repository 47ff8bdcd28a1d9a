"""`diagram` and `report` of a real run with faults, and the report in a real browser.

One cluster of four real priests behind the relay: delta isolated while alpha
ballots, beta killed and restarted, gamma paused and resumed, then a heal and
a ballot. The module's fixture brings it up once and down again, and fails if
any process (priest, supervisor, relay, browser) survives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.browser import chromium, console_lines, png_colours, run_browser, strays
from tests.integration.conftest import Harness
from tests.unit.test_report import Markup

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def faulted(tmp_path_factory: pytest.TempPathFactory):
    h = Harness(tmp_path_factory.mktemp("report"))
    try:
        config = h.config(4)
        done = h.run("up", str(config), "--detach", "--fresh")
        assert done.returncode == 0, done.stderr
        done = h.run("chaos", "--isolate", "delta", "--ballot", "alpha", "--sleep", "0.3",
                     "--kill", "beta", "--pause", "gamma", "--sleep", "0.3", "--resume", "gamma",
                     "--heal", "--restart", "beta", "--ballot", "beta", "--sleep", "1")
        assert done.returncode == 0, done.stdout + done.stderr
        done = h.run("verify", "--wait", "10")
        assert done.returncode == 0, done.stdout + done.stderr
        done = h.run("down")
        assert done.returncode == 0, done.stderr
        yield h, config
    finally:
        h.run("down")
        h.remember()
        survivors = h.alive()
        for p in survivors:
            p.kill()
        assert not survivors, f"processes survived: {[p.pid for p in survivors]}"


def sent_between(data: Path) -> int:
    """Messages the priests' events show sent to another priest."""
    count = 0
    for path in data.glob("*/events.jsonl"):
        for line in path.read_text().splitlines():
            e = json.loads(line)
            count += e["kind"] == "sent" and e["peer"] != e["priest"]
    return count


def test_diagram_draws_the_real_run_with_its_faults_and_lost_datagrams(faulted) -> None:
    h, config = faulted
    done = h.run("diagram", str(config))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.splitlines()[1].startswith("verdict: AGREEMENT (exit 0)")
    for words in ("network: isolate delta", "beta: CRASH", "gamma: paused (SIGSTOP)",
                  "gamma: resumed (SIGCONT)", "network: heal", "beta: restarts from its ledger",
                  "alpha: asked to begin a ballot", "lost  (partition"):
        assert words in out, words
    assert "\x1b[" not in out  # not a terminal: no colour
    whole = h.run("diagram", str(config), "--all")
    assert whole.returncode == 0 and "diagram (the whole run," in whole.stdout
    coloured = h.run("diagram", str(config), "--color", "always")
    assert "\x1b[" in coloured.stdout
    bad = h.run("diagram", str(config), "--ballot", "99.nobody")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "ballots begun" in bad.stderr


def test_report_writes_one_self_contained_file_with_every_message(faulted) -> None:
    h, config = faulted
    done = h.run("report", str(config))
    assert done.returncode == 0, done.stderr
    page = (h.cwd / "data" / "report.html").read_text()
    parsed = Markup()
    parsed.feed(page)
    msgs = parsed.having("msg")
    assert len(msgs) == sent_between(h.cwd / "data")
    assert any("lost" in a["class"].split() and a["data-to"] == "delta" for a in msgs)
    kinds = {(a["data-kind"], a["data-priest"]) for a in parsed.having("fault")}
    assert {("isolate", "delta"), ("kill", "beta"), ("pause", "gamma")} <= kinds
    (verdict,) = [a for _, _, a in parsed.elements if a.get("id") == "verdict"]
    assert verdict["data-exit"] == "0"
    assert "https://" not in page and "http://" not in page


BROWSER = chromium()


def opened_in_chromium(path: Path, tmp_path: Path) -> tuple[Markup, dict[str, str]]:
    """Open a report from disk in headless Chromium: no console error, its script ran to
    its end, a screenshot that is not blank, no browser left; its DOM and #verdict."""
    assert BROWSER is not None
    url = path.resolve().as_uri()
    dom = run_browser(BROWSER, url, "--dump-dom", under=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not console_lines(dom.stderr), console_lines(dom.stderr)
    parsed = Markup()
    parsed.feed(dom.stdout)
    root = next(a for tag, _, a in parsed.elements if tag == "html")
    assert "data-ready" in root  # the script ran to its end
    (verdict,) = [a for _, _, a in parsed.elements if a.get("id") == "verdict"]
    shot = tmp_path / "shot.png"
    done = run_browser(BROWSER, url, f"--screenshot={shot}", "--window-size=1400,1000",
                       "--hide-scrollbars", under=tmp_path)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert png_colours(shot) > 16  # not a blank page
    assert not strays(str(tmp_path)), "a browser process outlived its run"
    return parsed, verdict


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (Debian: apt-get install "
                    "chromium; .ci/run installs it), so the report cannot be opened in a browser")
def test_the_report_opens_in_headless_chromium_from_disk(faulted, tmp_path: Path) -> None:
    assert BROWSER is not None
    h, config = faulted
    path = tmp_path / "run.html"
    assert h.run("report", str(config), "-o", str(path)).returncode == 0
    parsed, verdict = opened_in_chromium(path, tmp_path)
    assert len(parsed.having("msg")) == sent_between(h.cwd / "data")
    assert verdict["data-exit"] == "0"
