"""Campaigns: many short seeded chaos runs of real priests, each on a fresh cluster, each judged.

`spec` (pure: the campaign's options, each run's seed, config and plan, the
replay command), `run` (one run, start to verdict, in its own process and
directory), `pool` (J runs at once, Ctrl+C, the results in order), `report`
(the progress line, the summary, the JSON). The verb is `harness.verbs.campaign`.
"""
