"""Benchmarks: how fast a ballot, a start, a fail-over and a simulation are, beside floors.

Run `python -m bench` (or `make bench`); see bench/README.md. Speed is measured
here and never asserted in tests.
"""
