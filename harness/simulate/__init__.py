"""Simulation: thousands of seeded runs of the real Synod core, each judged by the checker.

runs.py      one seed -> one run of `node.sim.World` -> a verdict; searching many seeds
"""
