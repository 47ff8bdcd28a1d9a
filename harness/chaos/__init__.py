"""Chaos: faults planned in advance, then applied to a running cluster.

plan.py      plans, pure: one-shot actions, schedules, the seeded random nemesis
executor.py  applies a plan through the supervisor's control channel, step by step
"""
