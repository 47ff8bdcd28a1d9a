"""The bench's `etcd` row on a real 3-member etcd, when etcd is installed.

Tiny counts, like `--quick`: the figures must be there and positive, never a
given time; no etcd process may outlive a run (each found by pid), and a member
that cannot start is reported with the end of its log.
"""

from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path

import psutil
import pytest

from bench import etcd
from bench.__main__ import main
from bench.cluster import BenchError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.skipif(etcd.etcd_binary() is None,
                       reason=f"no etcd on this machine (Debian: {etcd.INSTALL})"),
]


def etcd_processes_under(root: Path) -> list[psutil.Process]:
    """Live etcd processes whose command line names a path under `root`."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] == "etcd" and str(root) in " ".join(p.info["cmdline"] or []) \
                    and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def test_the_row_measures_a_real_cluster_and_leaves_nothing(
        tmp_path: Path, no_leaks: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the bench's temp dir, and etcd's data
    out = tmp_path / "bench"
    assert main(["--quick", "--only", "ballot", "--only", "etcd", "--only", "restart",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    figures = {f["name"]: f for f in json.loads((out / "latest.json").read_text())["figures"]}
    for name in [etcd.WRITE, etcd.READ, etcd.CRASH, f"{etcd.ROUND_TRIP} (serializable range)"]:
        f = figures[name]
        assert f["row"] == "etcd" and f["n"] == 2, f
        assert f["median"] > 0 and all(s > 0 for s in f["samples"]), f
        assert name in printed
    write = figures[etcd.WRITE]
    assert write["floor"] > 0 and write["ratio"] > 0
    assert write["notes"]["fsync"].startswith("on")
    moonshot = figures[f"moonshot: cold {etcd.BALLOT} vs etcd write"]
    assert moonshot["ratio"] == pytest.approx(figures[etcd.BALLOT]["median"] / write["median"])
    # Its target: the ratio below 1.0, that is a cold ballot faster than etcd's write.
    assert moonshot["target"]["met"] == (figures[etcd.BALLOT]["median"] < write["median"])
    crash = figures[f"{etcd.PRIEST_CRASH} vs etcd"]
    assert crash["floor"] == pytest.approx(figures[etcd.CRASH]["median"])
    assert not etcd_processes_under(tmp_path)
    assert not list(tmp_path.glob("paxos-bench-*")), "the bench's temp dir was left behind"


def test_a_member_that_cannot_start_is_named_with_its_log(tmp_path: Path, no_leaks: None) -> None:
    binary = etcd.etcd_binary()
    assert binary is not None
    cluster = etcd.EtcdCluster(binary, tmp_path / "etcd")
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", cluster.members[0].client_port))
        taken.listen()
        cluster.start()
        pids = cluster.pids()
        assert len(pids) == 3
        with pytest.raises(BenchError, match=r"etcd member m1 exited") as caught:
            cluster.wait_healthy(timeout=20)
        assert "address already in use" in str(caught.value)
    finally:
        cluster.close()
        taken.close()
    assert not [pid for pid in pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not etcd_processes_under(tmp_path)
