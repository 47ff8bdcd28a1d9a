"""`paxos-harness down`: stop a cluster, whatever state it is in."""

from __future__ import annotations

import argparse
import sys

from harness.errors import PROG, BusyError, ConfigError, ControlError, NotUpError
from harness.supervisor import control
from harness.supervisor.cluster import clear_stale, stop_by_signal, wait_gone
from harness.supervisor.files import RunLock
from harness.supervisor.state import CURRENT, read_state, recorded_cluster, resolve_config
from harness.verbs.args import config_arg
from node.config import Config


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_arg(p)


def clear_stale_locked(config: Config) -> int:
    """Clear a dead supervisor's run state under the run lock, as `up` does.

    Without it, an `up` starting right now (it holds the lock, its new
    supervisor not yet recorded) could have its run state removed under it.
    """
    lock = RunLock.take(config.data_dir)
    if lock is None:
        pid = RunLock.holder(config.data_dir)
        raise BusyError(f"another `{PROG} up` (pid {pid or '?'}) is bringing cluster "
                        f"{config.cluster} up right now, data in {config.data_dir}; nothing "
                        f"was changed; run `{PROG} down {config.path}` again once it is up")
    try:
        return clear_stale(config) or 0
    finally:
        lock.release()


def run(args: argparse.Namespace) -> int:
    """Stop every priest and the supervisor of CONFIG (default: the current cluster).

    Each priest is resumed if paused, sent SIGTERM, and SIGKILLed after a grace
    period. Idempotent: exit 0 if the cluster is already down, or if nothing
    was ever brought up from here. It also clears the run state left by a
    supervisor that died, and stops a supervisor that does not answer by
    signal. If the config file has gone since `up`, the data dir recorded in
    logs/current.json is used.
    """
    try:
        config = resolve_config(args.config)
    except NotUpError:  # no CONFIG and no logs/current.json
        print(f"nothing is up here: no cluster has been brought up from this directory "
              f"({CURRENT} is missing)")
        return 0
    except ConfigError:
        recorded = recorded_cluster(args.config)
        if recorded is None:
            raise
        config = recorded
        print(f"{PROG}: {config.path} cannot be read; stopping cluster {config.cluster} from "
              f"its run state in {config.data_dir}", file=sys.stderr)
    state = read_state(config.data_dir)
    if state is None:
        print(f"cluster {config.cluster} is not up; nothing to stop")
        return 0
    if not state.supervisor.alive():
        return clear_stale_locked(config)
    try:
        stopped = control.request(state.socket, "down")["stopped"]
    except (NotUpError, ControlError) as e:
        print(f"{PROG}: the supervisor did not answer ({e}); stopping it by signal",
              file=sys.stderr)
        stopped = stop_by_signal(state)
    wait_gone(state)
    names = ", ".join(stopped) or "no priest was running"
    print(f"cluster {config.cluster} is down (stopped: {names})")
    return 0
