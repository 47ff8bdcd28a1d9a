"""Shared fixtures: free loopback ports, throwaway configs, and a leak check.

Every test that starts processes must leave none behind: `no_leaks` fails a
test whose children (by pid) outlive it, after killing them.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import psutil
import pytest

from bench.cluster import free_udp_ports, priest_names  # one copy of each, shared


def write_config(directory: Path, n: int, *, cluster: str = "test", extra: str = "") -> Path:
    """A config of n priests on free ports, data under directory/data."""
    ports = free_udp_ports(n)
    lines = [f"cluster: {cluster}", f"data_dir: {directory / 'data'}", "priests:"]
    for name, port in zip(priest_names(n), ports, strict=True):
        lines.append(f"  {name}: {{host: 127.0.0.1, port: {port}}}")
    path = directory / f"{cluster}.yaml"
    path.write_text("\n".join(lines) + "\n" + textwrap.dedent(extra))
    return path


@pytest.fixture
def make_config(tmp_path: Path):
    def make(n: int = 4, **kw: object) -> Path:
        return write_config(tmp_path, n, **kw)  # type: ignore[arg-type]
    return make


@pytest.fixture
def no_leaks():
    """Fail the test if a process it started (a descendant) outlives it; kill it first."""
    me = psutil.Process(os.getpid())
    before = {p.pid for p in me.children(recursive=True)}
    yield
    leaked = [p for p in me.children(recursive=True) if p.pid not in before]
    alive = []
    for p in leaked:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    described = []
    for p in alive:
        try:
            described.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=3)
    assert not alive, f"processes leaked by the test: {described}"
