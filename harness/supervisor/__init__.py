"""The supervisor: one priest process per name, owned, signalled and reaped.

core.py      the pure core: priest states and every action on them (fakes in tests)
launcher.py  priests as forked children, each in its own process group
daemon.py    the event loop: foreground or detached, signals, exits, the control socket
control.py   the control channel: a Unix socket, one JSON request and answer per line
state.py     run state on disk: supervisor.json, logs/current.json, harness.jsonl
cluster.py   what the verbs do to a cluster as a whole: select, wipe, clear, report
"""
