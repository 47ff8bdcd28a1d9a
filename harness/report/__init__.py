"""Pictures of a run: the message diagram (terminal) and the HTML report.

run.py       a real run's record paired up: messages with their receipts, lanes, faults, ballots
simulated.py a simulated run (node.sim.World) as the same model, for `simulate --html`
steps.py     a real run as diagram rows; diagram.py: the rows drawn, one column per priest
text.py      `diagram`'s output; page.py + html.py: `report`'s one self-contained HTML file
"""
