"""Pictures of a run.

diagram.py   the message diagram in the terminal: a column per priest, a row per step
"""
