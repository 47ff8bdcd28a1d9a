"""The checker: a verdict on a run, from what its priests left on disk.

history.py   reads every events.jsonl, decree.txt, ledger and harness.jsonl
rules.py     the safety and agreement rules, a pure function of the history
faults.py    the faults harness.jsonl shows before each violation
verdict.py   the verdict, its violations and how it is printed
"""
