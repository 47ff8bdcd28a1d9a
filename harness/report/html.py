"""`report`: one self-contained HTML file of a real run (or of a simulated one).

Everything is inline (style, SVG, a few lines of script), so the file works
offline and opened from disk; nothing is fetched. It reads without
JavaScript: hovering a message shows its SVG <title> (the paper's notation
and its times); the script only adds zoom buttons and an instant info line.

The markup scripts and tests rely on (docs/formats.md, "The report"):
- `#verdict` with `data-exit` (verify's exit status), each violation an
  `li.violation` with `data-kind`;
- every message between two priests one element of class `msg` (`lost` too
  when it never arrived) with `data-from`, `data-to`, `data-type`, `data-ballot`;
- every fault interval one element of class `fault` per lane it covers, with
  `data-kind` (kill, stop, exited, pause, partition, isolate, drop,
  duplicate, delay, relay) and `data-priest`;
- every ballot one `rect.ballot` with `data-ballot`, `data-priest`, `data-outcome`.

Layout: time runs left to right on one axis for the timeline and the message
diagram (x in ms after `Run.t0`, stretched to the page's width by
`preserveAspectRatio="none"`; zoom widens the stage); text is HTML placed in
percent of that axis, so it never stretches.

A simulated run (`Run.simulated`, from `simulate --html`) is drawn alike on
its virtual time; its header, verdict line and last section say what it was
(seed, the world's faults, the commands that replay it) instead of a data
dir, a chaos plan and a config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from html import escape
from pathlib import Path

from harness.check.history import History
from harness.check.verdict import KINDS, OK, VIOLATION, Verdict
from harness.record import ChaosAction, ChaosEnd, ChaosStart, NetworkChange, RelayStarted
from harness.report.run import DOWN, PAUSED, Run, Sent, Unread, describe
from harness.supervisor.files import write_atomic
from node import __version__

LANE, LANE_GAP = 22, 8  # timeline: a lane's height and the space below it (px)
MSG_LANE = 56  # message diagram: px between two priests' lines
LABEL_W = 96  # px of the priests' names left of the axis
# Faults that degrade every lane rather than cut one off: each a thin band along the bottom of
# the lane (at its own height), so the lane's state and its ballots stay visible beneath.
BANDS = {"drop": 0, "duplicate": 1, "delay": 2}
BAND = 2  # px


def render(run: Run, verdict: Verdict, *, generated: str | None = None) -> str:
    """The whole report as one HTML document."""
    stamp = generated or time.strftime("%Y-%m-%d %H:%M:%S")
    sim = run.simulated
    if sim is None:
        title = f"paxos-harness report: cluster {run.config.cluster}"
        where = f"data dir <code>{escape(str(run.config.data_dir))}</code>"
        tail = [_chaos(run), _config(run)]
    else:
        title = f"paxos-harness report: simulated run, seed {sim.seed}"
        where = "times are the simulation's virtual seconds"
        tail = [_simulation(run)]
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>", f"<style>{CSS}</style></head><body>",
        (f"<header><h1>{escape(title)}</h1><p class=\"sub\">{escape(_summary(run))}<br>"
        f"{where}; written {escape(stamp)} by "
        f"paxos-harness {escape(__version__)}</p>{_nav(sim is not None)}</header>"),
        _verdict(run, verdict),
        _picture(run, verdict),
        _ledgers(run, verdict),
        *tail,
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts) + "\n"


def write(path: Path, text: str) -> None:
    """Write the report atomically (a temp file created exclusively, then rename), so a
    reader never sees half; a link planted at `path` is refused, never written through."""
    write_atomic(path, text)


def _summary(run: Run) -> str:
    between = run.between()
    lost = sum(m.lost for m in between)
    earlier = f"; {run.earlier_runs} earlier runs in this data dir are in the verdict only" \
        if run.earlier_runs else ""
    return (f"{len(run.names)} priests, a run of {run.seconds(run.t1):.2f} s, "
            f"{len(between)} messages between priests ({lost} lost), {len(run.ballots)} ballots"
            f"{earlier}")


def _nav(simulated: bool) -> str:
    links = [("verdict", "verdict"), ("timeline", "timeline and messages"),
             ("ledgers", "ledgers and decrees")]
    links += [("simulation", "simulation")] if simulated else [("chaos", "chaos plan"),
                                                               ("config", "config")]
    return "<nav>" + " · ".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav>"


# --- the verdict -------------------------------------------------------------------------


def _verdict(run: Run, verdict: Verdict) -> str:
    status = verdict.exit_status
    shade = {OK: "ok", VIOLATION: "bad"}.get(status, "warn")
    head = {
        OK: f"AGREEMENT (exit 0): every surviving priest holds decree {verdict.decree}"
        if verdict.decree is not None else "AGREEMENT (exit 0): no priest is running",
        VIOLATION: f"VIOLATION (exit 1): {len(verdict.violations)} rule(s) broken",
        2: "CANNOT VERIFY (exit 2): a violation rests only on files that could not be read",
        3: f"NOT YET (exit 3): {', '.join(verdict.waiting)} hold no decree yet",
    }[status]
    if run.simulated is None:
        how = (f"As <code>paxos-harness verify</code> judges it: {verdict.events} events read; "
               f"quorum {verdict.quorum} of {len(verdict.priests)}; cluster "
               f"{'up' if verdict.cluster_up else 'down (every priest counts as surviving)'}.")
    else:
        how = (f"As <code>paxos-harness simulate</code> judges it: verify's checks on the "
               f"{verdict.events} events the priests recorded, and after the heal every priest "
               f"holds a decree; quorum {verdict.quorum} of {len(verdict.priests)}.")
    out = [f'<section id="verdict" class="{shade}" data-exit="{status}">',
           f"<h2>Verdict: {escape(head)}</h2>", f"<p>{how}</p>"]
    for title, items, cls in (("violations", verdict.violations, "violation"),
                              ("unverifiable", verdict.unverifiable, "violation unverifiable")):
        if not items:
            continue
        out.append(f"<h3>{title}</h3><ol>")
        for v in items:
            times = ", ".join(f"{run.seconds(t):+.6f} s" for t in v.times)
            evidence = [("rule", KINDS.get(v.kind, "")), ("priests", ", ".join(v.priests)),
                        ("decrees", ", ".join(map(str, v.decrees))),
                        ("ballots", ", ".join(v.ballots)), ("evidence at", times),
                        ("after", (v.after_line() or "").removeprefix("after: "))]
            rows = "".join(f"<dt>{k}</dt><dd>{escape(x)}{_show(run, v.times) if k == 'evidence at' else ''}</dd>"
                           for k, x in evidence if x)
            out.append(f'<li class="{cls}" data-kind="{escape(v.kind)}"><b>{escape(v.kind)}</b>: '
                       f"{escape(v.message)}<dl>{rows}</dl></li>")
        out.append("</ol>")
    if verdict.problems:
        out.append(f"<h3>could not read ({len(verdict.problems)})</h3><ul class=\"problems\">")
        out += [f"<li>{escape(str(p))}</li>" for p in verdict.problems[:50]]
        out.append("</ul>")
    out.append("<p class=\"note\">Evidence times are seconds after the first event of the run "
               "drawn below; <code>after</code> lists verify's faults, in seconds after the "
               "first event of the whole history.</p></section>")
    return "\n".join(out)


# --- the timeline and the message diagram ------------------------------------------------


def _picture(run: Run, verdict: Verdict) -> str:
    span = max(run.t1 - run.t0, 1_000_000)  # ns; at least 1 ms
    width_ms = span / 1e6
    names = run.names
    lanes_h = len(names) * (LANE + LANE_GAP)
    msg_h = len(names) * MSG_LANE
    out = ['<section id="timeline"><h2>Timeline and messages</h2>',
           ('<p class="legend"><span class="k st-running"></span>running '
           '<span class="k st-paused"></span>paused <span class="k st-down"></span>down '
           '<span class="k net"></span>cut off by the network '
           '<span class="k band"></span>drop, duplicate, delay (every lane) '
           '<span class="k ballot-decided"></span>ballot decided '
           '<span class="k ballot-failed"></span>abandoned, gave up, cut short '
           '<span class="k lost"></span>lost message (drawn to where it vanished) '
           '<span class="k evidence"></span>evidence of a violation. Hover a message or a bar '
           'for details.</p>'),
           *_foreign_note(run),
           ('<div class="zoom"><button type="button" data-zoom="0.5">&minus;</button>'
           '<button type="button" data-zoom="0">fit</button>'
           '<button type="button" data-zoom="2">+</button> <span id="info"></span></div>'),
           '<div class="frame"><div class="names">', '<div class="ruler-gap"></div>']
    out += [f'<div class="name" style="height:{LANE}px;margin-bottom:{LANE_GAP}px">{escape(n)}</div>'
            for n in names]
    out.append('<div class="gap"></div>')
    out += [f'<div class="mname" style="height:{MSG_LANE}px">{escape(n)}</div>' for n in names]
    out.append(f'</div><div class="scroll"><div class="stage" id="stage" '
               f'data-span="{span / 1e9:.9f}">')
    out.append(_ruler(span))
    out.append(f'<div class="lanes" style="height:{lanes_h}px">')
    out.append(f'<svg class="timeline" viewBox="0 0 {width_ms:.3f} {lanes_h}" '
               f'preserveAspectRatio="none" width="100%" height="{lanes_h}">')
    out += _lanes(run, names)
    out.append("</svg>")
    out += _ballot_labels(run, names, span)
    out.append("</div>")
    out.append(f'<svg class="messages" viewBox="0 0 {width_ms:.3f} {msg_h}" '
               f'preserveAspectRatio="none" width="100%" height="{msg_h}">')
    out += _message_lanes(run, names, width_ms)
    out += _evidence(run, verdict, msg_h)
    out += _messages(run, names)
    out.append("</svg></div></div></div></section>")
    return "\n".join(out)


def _foreign_note(run: Run) -> list[str]:
    """What the picture shows of foreign priests, which write no events."""
    if not run.foreign:
        return []
    names = escape(", ".join(run.foreign))
    if not run.relay:
        return [(f'<p class="note">{names}: foreign priests without the relay: nothing saw their '
                "messages, so their lanes show only starts, exits and faults.</p>")]
    return [(f'<p class="note">{names}: foreign priests. Their messages are the datagrams the '
            "relay carried, labelled by their first bytes, each drawn from when the relay read "
            "it to when each copy left it (no promises, votes or ballots: they write no events); "
            "a tick on the lane marks their decree.txt as the supervisor saw it.</p>")]


def _x(run: Run, t: int) -> str:
    return f"{(t - run.t0) / 1e6:.3f}"


def _show(run: Run, times: Iterable[int]) -> str:
    """A link that zooms the timeline to these instants (`#t=FROM,TO` in seconds, as the page's
    script reads it), with a margin around them."""
    inside = [run.seconds(t) for t in times if run.t0 <= t <= run.t1]
    if not inside:
        return ""
    lo, hi = min(inside), max(inside)
    pad = max(0.005, (hi - lo) / 4)
    end = max(run.seconds(run.t1), hi)
    return f' <a class="show" href="#t={max(0.0, lo - pad):.6f},{min(end, hi + pad):.6f}">show</a>'


def _ruler(span: int) -> str:
    seconds = span / 1e9
    step = _nice(seconds / 12)
    marks = []
    k = 0
    while k * step <= seconds + 1e-12:
        at = k * step
        digits = max(0, -math.floor(math.log10(step))) if step < 1 else 0
        marks.append(f'<span style="left:{100 * at / seconds:.4f}%">+{at:.{digits}f} s</span>')
        k += 1
    return f'<div class="ruler">{"".join(marks)}</div>'


def _nice(x: float) -> float:
    """1, 2 or 5 times a power of ten, at least x."""
    power = 10 ** math.floor(math.log10(x)) if x > 0 else 1.0
    return next(m * power for m in (1, 2, 5, 10) if m * power >= x)


def _lanes(run: Run, names: list[str]) -> list[str]:
    row = {n: i * (LANE + LANE_GAP) for i, n in enumerate(names)}
    out = []
    for iv in run.lanes:
        if iv.priest not in row:
            continue
        w = max((iv.end - iv.start) / 1e6, 0.0)
        fault = iv.cause and iv.state in (DOWN, PAUSED)
        cls = f"st-{iv.state}" + (" fault" if fault else "")
        data = f' data-kind="{iv.cause}" data-priest="{escape(iv.priest)}"' if fault else ""
        why = f" ({iv.cause})" if iv.cause else ""
        out.append(f'<rect class="{cls}"{data} x="{_x(run, iv.start)}" y="{row[iv.priest]}" '
                   f'width="{w:.3f}" height="{LANE}"><title>{escape(iv.priest)} {iv.state}{why} '
                   f"{run.seconds(iv.start):+.3f} s to {run.seconds(iv.end):+.3f} s</title></rect>")
    for f in run.network:
        w = max((f.end - f.start) / 1e6, 0.0)
        band = BANDS.get(f.kind)
        dy, h = (0, LANE) if band is None else (LANE - BAND * (band + 1), BAND)
        for p in f.priests:
            if p in row:
                out.append(f'<rect class="fault net" data-kind="{f.kind}" data-priest="{escape(p)}" '
                           f'x="{_x(run, f.start)}" y="{row[p] + dy}" width="{w:.3f}" height="{h}">'
                           f"<title>{escape(f.text)} ({f.kind}) {run.seconds(f.start):+.3f} s to "
                           f"{run.seconds(f.end):+.3f} s</title></rect>")
    for b in run.ballots:
        if b.priest not in row:
            continue
        w = max((b.end - b.start) / 1e6, 0.0)
        good = b.outcome.startswith("decided")
        out.append(f'<rect class="ballot {"ballot-decided" if good else "ballot-failed"}" '
                   f'data-ballot="{escape(b.ballot)}" data-priest="{escape(b.priest)}" '
                   f'data-outcome="{escape(b.outcome)}" x="{_x(run, b.start)}" '
                   f'y="{row[b.priest] + 6}" width="{w:.3f}" height="{LANE - 12}">'
                   f"<title>ballot {escape(b.ballot)}{_proposed(b.decree)}: {escape(b.outcome)}; "
                   f"{run.seconds(b.start):+.3f} s to {run.seconds(b.end):+.3f} s</title></rect>")
    for tick in run.ticks:
        if tick.priest in row:
            y, x = row[tick.priest], _x(run, tick.t)
            out.append(f'<line class="action" data-kind="{escape(tick.kind)}" '
                       f'data-priest="{escape(tick.priest)}" x1="{x}" x2="{x}" '
                       f'y1="{y}" y2="{y + LANE}"><title>{escape(tick.text)} '
                       f"at {run.seconds(tick.t):+.3f} s</title></line>")
    return out


def _proposed(decree: int | None) -> str:
    return f" (proposed {decree})" if decree is not None else ""


def _ballot_labels(run: Run, names: list[str], span: int) -> list[str]:
    row = {n: i * (LANE + LANE_GAP) for i, n in enumerate(names)}
    out = []
    for b in run.ballots:
        if b.priest not in row:
            continue
        left = 100 * (b.start - run.t0) / span
        width = max(100 * (b.end - b.start) / span, 0.05)
        out.append(f'<span class="blabel" style="left:{left:.4f}%;width:{width:.4f}%;'
                   f'top:{row[b.priest]}px">{escape(b.ballot)} {escape(b.outcome)}</span>')
    return out


def _message_lanes(run: Run, names: list[str], width_ms: float) -> list[str]:
    out = []
    for i, _ in enumerate(names):
        y = i * MSG_LANE + MSG_LANE // 2
        out.append(f'<line class="lane" x1="0" x2="{width_ms:.3f}" y1="{y}" y2="{y}"/>')
    y_of = {n: i * MSG_LANE + MSG_LANE // 2 for i, n in enumerate(names)}
    for iv in run.lanes:
        if iv.state != "running" and iv.priest in y_of:
            y = y_of[iv.priest]
            out.append(f'<line class="lane-{iv.state}" x1="{_x(run, iv.start)}" '
                       f'x2="{_x(run, iv.end)}" y1="{y}" y2="{y}"/>')
    return out


def _evidence(run: Run, verdict: Verdict, height: int) -> list[str]:
    out = []
    for v in verdict.violations:
        for t in v.times:
            if run.t0 <= t <= run.t1:
                out.append(f'<line class="evidence" x1="{_x(run, t)}" x2="{_x(run, t)}" y1="0" '
                           f'y2="{height}"><title>{escape(v.kind)} rests on this instant '
                           f"({run.seconds(t):+.6f} s)</title></line>")
    return out


def _messages(run: Run, names: list[str]) -> list[str]:
    y = {n: i * MSG_LANE + MSG_LANE // 2 for i, n in enumerate(names)}
    out = []
    for m in run.messages:
        if m.src == m.dst or m.src not in y or m.dst not in y:
            continue
        out.append(_message(run, m, y[m.src], y[m.dst]))
    return out


def _message(run: Run, m: Sent, y1: int, y2: int) -> str:
    data = (f'data-from="{m.src}" data-to="{m.dst}" data-type="{escape(m.type)}" '
            f'data-ballot="{m.message.ballot}"')
    unread = isinstance(m.message, Unread)  # a foreign priest's: the relay's times only
    sent = f"{'read by the relay' if unread else 'sent'} {run.seconds(m.sent):+.6f} s"
    head = f"{describe(m.message)} {m.src} → {m.dst}: {sent}"
    x1 = _x(run, m.sent)
    if m.lost:
        where = f"vanished {run.seconds(m.vanished):+.6f} s ({m.why})"
        return (f'<line class="msg lost" {data} x1="{x1}" y1="{y1}" x2="{_x(run, m.vanished)}" '
                f'y2="{(y1 + y2) / 2:g}"><title>{escape(head)}, {escape(where)}</title></line>')
    got = ", ".join(f"{run.seconds(t):+.6f} s" for t in m.received)
    title = f"<title>{escape(head)}, {'sent on' if unread else 'received'} {got}</title>"
    if len(m.received) == 1:
        return (f'<line class="msg" {data} x1="{x1}" y1="{y1}" x2="{_x(run, m.received[0])}" '
                f'y2="{y2}">{title}</line>')
    lines = "".join(f'<line x1="{x1}" y1="{y1}" x2="{_x(run, t)}" y2="{y2}"/>' for t in m.received)
    return f'<g class="msg dup" {data}>{title}{lines}</g>'


# --- ledgers, chaos, config ---------------------------------------------------------------


def _ledgers(run: Run, verdict: Verdict) -> str:
    history: History = run.history
    rows = []
    alive = {p.name: p for p in verdict.priests}
    for name in run.names:
        d = history.decrees.get(name)
        decree = "—" if d is None or not d.present else (
            str(d.value) if d.value is not None else f"unreadable: {d.problem}")
        led = history.ledgers.get(name)
        state = led.state if led is not None else None
        cells = [str(state.last_tried), str(state.next_bal), str(state.prev_vote)] \
            if state is not None else ["unreadable", "", ""]
        row = alive.get(name)
        survive = ("yes" if row.alive else "no") if row is not None and verdict.cluster_up \
            else "down"
        rows.append(f"<tr><td>{escape(name)}</td><td>{escape(survive)}</td>"
                    f"<td class=\"decree\">{escape(decree)}</td>"
                    + "".join(f"<td>{escape(c)}</td>" for c in cells)
                    + f"<td>{len(run.events.get(name, []))}</td></tr>")
    return ('<section id="ledgers"><h2>Ledgers and decrees, as the run left them</h2>'
            "<table><thead><tr><th>priest</th><th>alive</th><th>decree.txt</th>"
            "<th>last_tried</th><th>next_bal</th><th>prev_vote</th><th>events</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>")


def _chaos(run: Run) -> str:
    out = ['<section id="chaos"><h2>Chaos plan</h2>']
    plans = [p for p in run.plans if isinstance(p, ChaosStart)]
    if not plans:
        out.append("<p>No <code>chaos</code> command ran in this run.</p>")
    for p in plans:
        seed = f"seed <b>{p.seed}</b>, " if p.seed is not None else ""
        replay = ""
        if p.seed is not None:
            rate = f" --rate {p.rate:g}" if p.rate is not None else ""
            duration = f" --duration {p.duration:g}" if p.duration is not None else ""
            replay = (f"; replay the same plan: <code>paxos-harness chaos --random --seed "
                      f"{p.seed}{duration}{rate}</code>")
        end = next((e for e in run.plans if isinstance(e, ChaosEnd) and e.t >= p.t), None)
        ended = "" if end is None else \
            f"; {end.done} done, {end.refused} refused in {end.elapsed:.2f} s ({escape(end.outcome)})"
        out.append(f'<p class="plan">{run.seconds(p.t):+.3f} s: {escape(p.source)}, {seed}'
                   f"{p.steps} steps{ended}{replay}</p>")
    relays = [r for r in run.records if isinstance(r, RelayStarted)]
    if relays:
        seeds = ", ".join(str(r.seed) for r in relays)
        out.append(f"<p>The relay's random draws (loss, duplication, delay) were seeded {seeds}.</p>")
    rows = list(_action_rows(run, run.actions))
    if rows:
        out.append("<table><thead><tr><th>time</th><th>action</th><th>on</th><th>result</th>"
                   f"<th>outcome</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    out.append("</section>")
    return "\n".join(out)


def _action_rows(run: Run, actions: Iterable[object]) -> Iterable[str]:
    for r in actions:
        if isinstance(r, ChaosAction):
            on, result, outcome = r.priest, r.result.value, r.outcome
        elif isinstance(r, NetworkChange):
            on, result, outcome = "network", r.result.value, r.outcome
        else:
            continue
        action = r.action
        yield (f'<tr class="{escape(result)}"><td>{run.seconds(r.t):+.3f} s</td>'
               f"<td>{escape(action)}</td><td>{escape(on)}</td><td>{escape(result)}</td>"
               f"<td>{escape(outcome)}</td></tr>")


def _simulation(run: Run) -> str:
    sim = run.simulated
    assert sim is not None
    flaws = ", ".join(sim.flaws) if sim.flaws else "none"
    heal = (f"the heal phase (network whole, every priest up, one ballot) began at "
            f"{run.seconds(sim.heal):+.3f} s" if sim.heal is not None else
            "the run stopped before its heal phase")
    ended = "" if sim.finished else f"; stopped after {sim.steps} steps, still going"
    rows = [("seed", str(sim.seed)), ("priests", ", ".join(run.names)), ("faults", sim.faults),
            ("flaws", flaws), ("phases", f"{heal}{ended}"),
            ("its trace", sim.replay), ("this report", sim.html)]
    cells = "".join(f"<tr><th>{k}</th><td>{_code(k, v)}</td></tr>" for k, v in rows)
    return ('<section id="simulation"><h2>Simulation</h2><p>The run of the very Synod core the '
            "priests run, in <code>paxos-harness simulate</code>'s seeded world: virtual time, "
            "a network that loses, duplicates, delays and partitions, crashes between any two "
            "effects. The same seed plays the same run.</p>"
            f"<table>{cells}</table></section>")


def _code(key: str, value: str) -> str:
    return f"<code>{escape(value)}</code>" if key in ("its trace", "this report") else escape(value)


def _config(run: Run) -> str:
    path = Path(run.config.path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        text = f"(cannot read {path}: {exc.strerror or exc})"
    return (f'<section id="config"><h2>Config</h2><p><code>{escape(str(path))}</code></p>'
            f"<pre>{escape(text)}</pre></section>")


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 1.5em 3em;color:#222}
h1{font-size:1.4em;margin:.8em 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em}
h3{font-size:1em;margin:.8em 0 .3em}.sub{color:#555;margin:0}nav{margin:.4em 0}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
pre{background:#f6f6f6;padding:.6em;overflow:auto}
#verdict{border-left:6px solid #888;padding:.2em 1em .4em;background:#f7f7f7}
#verdict.ok{border-color:#2a8a3e;background:#eef8f0}#verdict.bad{border-color:#c0262d;background:#fdf0f0}
#verdict.warn{border-color:#c98a00;background:#fdf8ec}
.violation dl{display:grid;grid-template-columns:max-content 1fr;gap:0 .8em;margin:.2em 0 .6em}
.violation dt{color:#666}.violation dd{margin:0}.note{color:#666;font-size:.9em}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.15em .7em;text-align:left}
tr.refused,tr.failed{color:#999}
.legend .k{display:inline-block;width:1.4em;height:.8em;margin:0 .2em 0 .8em;vertical-align:middle}
.k.st-running{background:#cfe8d5}.k.st-paused{background:#f3d98b}.k.st-down{background:#ccc}
.k.net{background:rgba(230,110,20,.45)}.k.band{background:rgba(230,110,20,.8);height:.3em}.k.ballot-decided{background:#2a8a3e}
.k.ballot-failed{background:#8a8a8a}.k.lost{border-top:2px dashed #c0262d;height:0}
.k.evidence{background:#c0262d;width:3px}
.zoom{margin:.3em 0}.zoom button{min-width:2.2em}#info{color:#333;margin-left:1em}
.frame{display:flex;border:1px solid #ddd}
.names{flex:0 0 96px;background:#fafafa;border-right:1px solid #ddd;font-weight:600}
.ruler-gap{height:20px}.name,.mname{padding-left:.4em;overflow:hidden;white-space:nowrap}
.name{line-height:22px}.gap{height:14px}.mname{display:flex;align-items:center}
.scroll{flex:1;overflow-x:auto;overflow-y:hidden}.stage{position:relative;min-width:100%}
.ruler{position:relative;height:20px;border-bottom:1px solid #ddd;font-size:11px;color:#555}
.ruler span{position:absolute;top:2px;white-space:nowrap;border-left:1px solid #aaa;padding-left:2px}
.lanes{position:relative;margin-bottom:14px}
svg{display:block;overflow:visible}
svg line{vector-effect:non-scaling-stroke}
.st-running{fill:#cfe8d5}.st-paused{fill:#f3d98b}.st-down{fill:#d6d6d6}
.net{fill:rgba(230,110,20,.45)}.net[data-kind=drop],.net[data-kind=duplicate],
.net[data-kind=delay]{fill:rgba(230,110,20,.8)}
.ballot-decided{fill:#2a8a3e}.ballot-failed{fill:#8a8a8a}
.action{stroke:#333;stroke-width:1.5}
.blabel{position:absolute;height:22px;line-height:22px;font-size:11px;overflow:hidden;
white-space:nowrap;pointer-events:none;padding-left:2px;color:#111;text-shadow:0 0 2px #fff}
.lane{stroke:#bbb;stroke-width:1}.lane-down{stroke:#bbb;stroke-width:3;stroke-dasharray:2 4}
.lane-paused{stroke:#e0b440;stroke-width:5}
.msg,.msg line{stroke:#2f5f9f;stroke-width:1;stroke-opacity:.75}
.msg[data-type=Success],.msg[data-type=Success] line{stroke:#2a8a3e}
.msg.lost{stroke:#c0262d;stroke-dasharray:3 2}
.msg:hover,.msg:hover line{stroke-width:4;stroke-opacity:1}
.evidence{stroke:#c0262d;stroke-width:2;stroke-opacity:.6}
"""

SCRIPT = """
(function(){
  var stage=document.getElementById('stage'), info=document.getElementById('info');
  var scroller=stage.parentNode, ruler=stage.querySelector('.ruler');
  var span=parseFloat(stage.getAttribute('data-span'))||1, zoom=1, MAX=2048;
  function nice(x){
    var p=Math.pow(10,Math.floor(Math.log10(x)));
    return [1,2,5,10].map(function(m){return m*p;}).filter(function(v){return v>=x;})[0];
  }
  function marks(){  // the ruler again, about one mark per 90 px of the stage
    var w=stage.getBoundingClientRect().width||1, step=nice(Math.max(span*90/w,span/2000));
    var digits=step<1?Math.max(0,-Math.floor(Math.log10(step)+1e-9)):0, html=[];
    for(var k=0;k*step<=span+1e-12;k++){
      html.push('<span style="left:'+(100*k*step/span).toFixed(4)+'%">+'+(k*step).toFixed(digits)+' s</span>');
    }
    ruler.innerHTML=html.join('');
  }
  function setZoom(z,at){  // at: the fraction of the axis kept in place (default: the middle shown)
    var w=stage.getBoundingClientRect().width||1;
    if(at===undefined)at=(scroller.scrollLeft+scroller.clientWidth/2)/w;
    zoom=Math.min(MAX,Math.max(1,z));
    stage.style.width=(zoom*100)+'%';
    marks();
    scroller.scrollLeft=at*stage.getBoundingClientRect().width-scroller.clientWidth/2;
  }
  document.querySelectorAll('[data-zoom]').forEach(function(b){
    b.addEventListener('click',function(){
      var f=parseFloat(b.getAttribute('data-zoom'));
      setZoom(f===0?1:zoom*f);
    });
  });
  function fromHash(scroll){  // #t=FROM,TO (seconds): show that stretch of the run
    var m=/^#t=([0-9.]+),([0-9.]+)$/.exec(location.hash);
    if(!m)return;
    var a=parseFloat(m[1]), b=parseFloat(m[2]);
    if(!(b>a))return;
    setZoom(span/(b-a),(a+b)/2/span);
    if(scroll)document.getElementById('timeline').scrollIntoView();
  }
  window.addEventListener('hashchange',function(){fromHash(true);});
  fromHash(false);
  document.addEventListener('mouseover',function(e){
    var el=e.target.closest&&e.target.closest('.msg,.fault,.ballot,.action');
    if(!el||!info)return;
    var t=el.querySelector('title');
    info.textContent=t?t.textContent:'';
  });
  // Read by tests and the bench: the script ran, and when (ms after navigation began).
  document.documentElement.setAttribute('data-ready', String(Math.round(performance.now())));
})();
"""
