"""The harness around the priests: each part a package, each verb a module.

cli.py       `paxos-harness`: the table of verbs and the one place errors become exit statuses
verbs/       one module per verb: up, down, status, chaos, verify, simulate, diagram,
             report (and campaign)
supervisor/  starts, owns and signals the priest processes; the control channel; run state
chaos/       fault plans and their executor
check/       the checker: history, rules, the faults before a violation, verdict
simulate/    seeded runs of the real core
report/      pictures of a run: the message diagram
record.py    harness.jsonl's records, shared by the supervisor, chaos and the checker
errors.py    the error tree; output.py: tables and colour
"""
