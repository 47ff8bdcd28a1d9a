"""The network between the priests: the relay process, and the faults it applies.

faults.py   the network's state and what it does to one datagram (pure)
relay.py    the relay process (`python -m harness.network.relay`): real sockets, real datagrams
process.py  the supervisor's handle on the relay: start, command, restart, stop
"""
