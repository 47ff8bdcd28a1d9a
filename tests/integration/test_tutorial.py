"""docs/tutorial.md cannot rot: every command of it runs, on free ports, and says what it claims.

A `$ ` line is a command (`# exit N` after it: its exit status, else 0); a
`... ` line after it is text its output must contain. The repository's
configs are copied into the test's directory with their ports moved to free
ones, so the commands run as written, relative paths and all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cluster import free_udp_ports

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "docs" / "tutorial.md"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def lessons() -> list[tuple[str, int, list[str]]]:
    """(command, exit status, lines to look for), in page order."""
    steps: list[tuple[str, int, list[str]]] = []
    in_block = False
    for line in TUTORIAL.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```console"
            continue
        if not in_block:
            continue
        if line.startswith("$ "):
            command, _, note = line[2:].partition("# exit ")
            steps.append((command.strip(), int(note) if note else 0, []))
        elif line.startswith("... "):
            steps[-1][2].append(line[4:])
    return steps


def copy_configs(here: Path) -> None:
    """The repository's configs under `here`, every port a free one."""
    shutil.copytree(REPO / "configs", here / "configs")
    files = sorted((here / "configs").glob("*.yaml"))
    total = sum(f.read_text().count("port:") for f in files)
    ports = iter(free_udp_ports(total))
    for f in files:
        f.write_text(re.sub(r"port: \d+", lambda _: f"port: {next(ports)}", f.read_text()))


def test_every_command_of_the_tutorial_does_what_it_says(harness) -> None:
    steps = lessons()
    assert len(steps) > 20 and any("must be" in want for _, _, wants in steps for want in wants)
    copy_configs(harness.cwd)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    prog = f"{sys.executable} -m harness"
    try:
        for command, status, wants in steps:
            shell = re.sub(r"^paxos-harness\b", prog, command)
            done = subprocess.run(["bash", "-c", shell], cwd=harness.cwd, env=env,
                                  capture_output=True, text=True, timeout=120)
            harness.remember()
            out = done.stdout + done.stderr
            assert done.returncode == status, f"$ {command}\n{out}"
            for want in wants:
                assert want in done.stdout, f"$ {command}\nexpected: {want}\n{out}"
    finally:
        for config in sorted((harness.cwd / "configs").glob("*.yaml")):
            subprocess.run([sys.executable, "-m", "harness", "down", str(config)],
                           cwd=harness.cwd, env=env, capture_output=True, timeout=60)
