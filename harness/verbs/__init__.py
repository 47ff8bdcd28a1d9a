"""The commands of `paxos-harness`, one module each.

Every verb module has the same two parts, and `harness.cli` builds the
command line from them: `add_arguments(parser)` declares its options, and
`run(args) -> int` does the work and returns the exit status; the docstring of
`run` is the verb's help (its first line in the list of verbs).
"""

VERBS = ("up", "down", "status", "chaos", "verify", "simulate", "campaign", "diagram",
         "report")
