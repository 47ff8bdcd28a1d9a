"""What `verify` found, and how it reads: violations, the verdict, its exit status, its table.

`harness.check.rules` builds a Verdict from a run's history; `render` turns it into
text for a person, coloured only when asked; `Verdict.to_json` for scripts.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from colorama import Fore, Style

from harness.check.history import ReadProblem

# Every kind of violation and the rule it breaks.
KINDS: dict[str, str] = {
    "disagreement": "every surviving priest's decree.txt holds the same decree",
    "learned_different": "no two priests ever learned different decrees",
    "decree_changed": "no priest's decree ever changes once learned",
    "decree_file_mismatch": "a priest's decree.txt holds the decree it learned",
    "malformed_decree": "a decree.txt holds a decree (digits, '-' if negative, no leading zero) "
                        "and a newline; a foreign priest's, an int with or without a newline",
    "decree_lost": "a priest that learned a decree keeps its decree.txt",
    "ledger_lost": "a priest's ledger keeps every promise and vote it recorded (across restarts)",
    "unproposed_decree": "a learned decree was proposed in some BeginBallot",
    "promise_broken": "no priest votes in a ballot below one it promised (NextBallot answered)",
    "ballot_two_decrees": "one decree per ballot (BeginBallot)",
    "ballot_reused": "a ballot number is begun by one priest only",
    "chosen_changed": "once a quorum voted d in ballot b, every vote in a later ballot is for d",
    "unsound_learning": "a priest learns d only after a quorum voted d in one ballot",
    "crashed_on_input": "a priest survives any input: malformed input (`chaos --garbage`) "
                        "does not end it",
}
# The kind `simulate` adds when a run ends with a priest holding no decree. Not a rule
# verify checks: in a real run such a priest is only waiting (exit 3).
NO_PROGRESS = "no_progress"

# Exit statuses of `verify`; 2 is a usage or config error (harness.errors).
OK, VIOLATION, WAITING, UNVERIFIABLE, NOTHING = 0, 1, 3, 4, 5


def without_decree(decrees: Mapping[str, int | None], alive: Container[str]) -> tuple[str, ...]:
    """The priests in `alive` whose decree is None: what `verify` waits for (its exit 3)."""
    return tuple(name for name, decree in decrees.items() if name in alive and decree is None)


@dataclass(frozen=True)
class FaultBefore:
    """A fault the harness applied before a violation: `at` seconds after the first event.

    `priest` is what it struck: a priest, or for a network change its value
    (`alpha/beta,gamma`, `0.3`, `5-40`; empty for `heal`).
    """

    action: str
    priest: str
    at: float

    def __str__(self) -> str:
        what = f"{self.action} {self.priest}" if self.priest else self.action  # `heal`: no target
        return f"{what} {self.at:+.3f} s"

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "priest": self.priest, "at": round(self.at, 6)}


@dataclass(frozen=True)
class Violation:
    """One broken rule with the evidence: priests, decrees, ballots, event times (ns).

    `after`: the last faults the harness applied in the same run before the
    earliest evidence (harness.check.faults); `earlier_faults` counts those before them.
    """

    kind: str
    message: str
    priests: tuple[str, ...] = ()
    decrees: tuple[int, ...] = ()
    ballots: tuple[str, ...] = ()
    times: tuple[int, ...] = ()
    after: tuple[FaultBefore, ...] = ()
    earlier_faults: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": KINDS[self.kind], "message": self.message,
                "priests": list(self.priests), "decrees": list(self.decrees),
                "ballots": list(self.ballots), "times": list(self.times),
                "after": [f.to_json() for f in self.after],
                "earlier_faults": self.earlier_faults}

    def after_line(self) -> str | None:
        """'after: kill beta +1.204 s, restart beta +1.517 s (and 3 earlier)', or None."""
        if not self.after:
            return None
        earlier = f" (and {self.earlier_faults} earlier)" if self.earlier_faults else ""
        return f"after: {', '.join(map(str, self.after))}{earlier}"


@dataclass(frozen=True)
class PriestRow:
    """One line of the verdict's table."""

    name: str
    alive: bool  # counts as surviving (every priest when the cluster is down)
    decree: int | None  # from its decree.txt
    ballots: tuple[str, ...]  # distinct ballots it began, promised, proposed, voted or learned in
    events: int


@dataclass(frozen=True)
class Unchecked:
    """Rules that could not be checked, for which priests, and why (foreign priests)."""

    priests: tuple[str, ...]
    rules: tuple[str, ...]
    why: str

    def line(self) -> str:
        return (f"not checked for {', '.join(self.priests)}: {', '.join(self.rules)} "
                f"({self.why})")

    def to_json(self) -> dict[str, Any]:
        return {"priests": list(self.priests), "rules": list(self.rules), "why": self.why}


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: a table of priests, violations and unreadable input."""

    cluster: str
    quorum: int
    cluster_up: bool
    priests: tuple[PriestRow, ...]
    violations: tuple[Violation, ...]
    problems: tuple[ReadProblem, ...]
    events: int
    # Violations that rest only on evidence that could not be read: not proven.
    unverifiable: tuple[Violation, ...] = ()
    nothing: bool = False  # no priest of the cluster ever ran here: nothing to judge
    flaws: tuple[str, ...] = ()  # the config's deliberate mistakes: said, loudly
    unchecked: Unchecked | None = None  # rules no evidence could check (foreign priests)

    @property
    def waiting(self) -> tuple[str, ...]:
        """Surviving priests that hold no decree yet."""
        return without_decree({p.name: p.decree for p in self.priests},
                              {p.name for p in self.priests if p.alive})

    @property
    def decree(self) -> int | None:
        """The decree every survivor holds, when there is exactly one."""
        values = {p.decree for p in self.priests if p.alive and p.decree is not None}
        return values.pop() if len(values) == 1 else None

    @property
    def exit_status(self) -> int:
        """1 a proven violation; 4 only unverifiable ones; 3 a survivor has no decree yet;
        5 nothing ran; else 0."""
        if self.violations:
            return VIOLATION
        if self.unverifiable:
            return UNVERIFIABLE
        if self.nothing:
            return NOTHING
        return WAITING if self.waiting else OK

    @property
    def status(self) -> str:
        return {OK: "agreement", VIOLATION: "violation", UNVERIFIABLE: "unverifiable",
                WAITING: "waiting", NOTHING: "nothing"}[self.exit_status]

    def to_json(self) -> dict[str, Any]:
        """The verdict as plain JSON data, for scripts (`verify --json`)."""
        return {
            "status": self.status, "exit_status": self.exit_status,
            "cluster": self.cluster, "quorum": self.quorum, "cluster_up": self.cluster_up,
            "flaws": list(self.flaws),
            "decree": self.decree if not self.violations else None,
            "waiting": list(self.waiting), "events": self.events,
            "priests": [{"name": p.name, "alive": p.alive, "decree": p.decree,
                         "ballots": list(p.ballots), "events": p.events} for p in self.priests],
            "violations": [v.to_json() for v in self.violations],
            "unverifiable": [v.to_json() for v in self.unverifiable],
            "problems": [{"path": p.path, "line": p.line, "reason": p.reason}
                         for p in self.problems],
            "unchecked": self.unchecked.to_json() if self.unchecked is not None else None,
        }


# --- rendering -------------------------------------------------------------------

SHOWN = 20  # violations and problems listed in full; the rest are counted


def render(verdict: Verdict, color: bool) -> str:
    """The verdict for a person: a table of priests, then what is wrong, if anything."""
    def paint(text: str, code: str) -> str:
        return f"{code}{text}{Style.RESET_ALL}" if color else text

    state = "up" if verdict.cluster_up else "down: every priest counts as surviving"
    lines = [(f"cluster {verdict.cluster}: {len(verdict.priests)} priests, quorum "
             f"{verdict.quorum}, {verdict.events} events read; cluster {state}")]
    if verdict.flaws:
        lines.append(paint(f"FLAWED on purpose: {', '.join(verdict.flaws)} (the config's `flaws:`): "
                           "its priests are broken by design; expect violations",
                           Fore.YELLOW + Style.BRIGHT))
    lines.append("")
    lines += _table(verdict, paint)
    if verdict.problems:
        lines += ["", paint(f"could not read ({len(verdict.problems)}):", Fore.YELLOW)]
        lines += [f"  {p}" for p in verdict.problems[:SHOWN]] + _more(verdict.problems)
    if verdict.unchecked is not None:
        lines += ["", paint(verdict.unchecked.line(), Fore.YELLOW)]
    lines.append("")
    lines += _summary(verdict, paint)
    return "\n".join(lines) + "\n"


def _table(verdict: Verdict, paint: Callable[[str, str], str]) -> list[str]:
    width = max([6] + [len(p.name) for p in verdict.priests])
    lines = [f"  {'priest':<{width}}  alive  {'decree':<20}  ballots seen"]
    agreed = verdict.decree
    for p in verdict.priests:
        alive = ("yes" if p.alive else "no") if verdict.cluster_up else "down"
        decree = "-" if p.decree is None else str(p.decree)
        shade = Fore.GREEN if p.decree is not None and p.decree == agreed else Fore.RED
        if p.decree is None:
            shade = Fore.YELLOW if p.alive else Style.DIM
        ballots = ", ".join(p.ballots) if len(p.ballots) <= 3 else \
            f"{len(p.ballots)}, from {p.ballots[0]} to {p.ballots[-1]}"
        alive_shade = Fore.GREEN if p.alive else Style.DIM
        lines.append(f"  {p.name:<{width}}  {paint(f'{alive:<5}', alive_shade)}"
                     f"  {paint(f'{decree:<20}', shade)}  {ballots}")
    return lines


def _summary(verdict: Verdict, paint: Callable[[str, str], str]) -> list[str]:
    status = verdict.exit_status
    if status == VIOLATION:
        n = len(verdict.violations)
        lines = [paint(f"VIOLATION (exit 1): {n} violation{'s' if n > 1 else ''} (times are "
                       "seconds after the first recorded event)", Fore.RED + Style.BRIGHT)]
        for v in verdict.violations[:SHOWN]:
            lines.append(f"  {paint(v.kind, Fore.RED)}: {v.message}")
            lines += _after(v)
        lines += _more(verdict.violations)
        return lines + _unverifiable(verdict, paint)
    if status == UNVERIFIABLE:
        n = len(verdict.unverifiable)
        return [paint(f"CANNOT VERIFY (exit 4): no violation is proven, but {n} would be one "
                      "unless the unreadable evidence (above) explains it",
                      Fore.YELLOW + Style.BRIGHT)] + _unverifiable(verdict, paint)
    if status == NOTHING:
        return [paint(f"NOTHING TO CHECK (exit 5): no priest of cluster {verdict.cluster} has "
                      "run here (no priest directory); bring it up with `paxos-harness up`",
                      Fore.YELLOW + Style.BRIGHT)]
    if status == WAITING:
        return [paint(f"NOT YET (exit 3): no violation, but {', '.join(verdict.waiting)} "
                      "hold no decree yet", Fore.YELLOW + Style.BRIGHT)]
    note = [paint(f"  note: {len(verdict.problems)} files or lines could not be read (above): "
                  "the check covers only what was read", Fore.YELLOW)] if verdict.problems else []
    if verdict.decree is None:  # nobody survives: agreement holds vacuously
        return [paint(f"AGREEMENT (exit 0): no priest is running; no violation in "
                      f"{verdict.events} events", Fore.GREEN + Style.BRIGHT)] + note
    return [paint(f"AGREEMENT (exit 0): every surviving priest holds decree {verdict.decree}; "
                  f"no violation in {verdict.events} events", Fore.GREEN + Style.BRIGHT)] + note


def _unverifiable(verdict: Verdict, paint: Callable[[str, str], str]) -> list[str]:
    """The violations that rest only on evidence that could not be read."""
    if not verdict.unverifiable:
        return []
    lines = [paint(f"  unverifiable ({len(verdict.unverifiable)}): these rest on an absence of "
                   "events, and some priests' events could not be read", Fore.YELLOW)]
    for v in verdict.unverifiable[:SHOWN]:
        lines.append(f"  {paint(v.kind, Fore.YELLOW)} (unverifiable): {v.message}")
        lines += _after(v)
    return lines + _more(verdict.unverifiable)


def _after(v: Violation) -> list[str]:
    line = v.after_line()
    return [f"    {line}"] if line else []


def _more(items: tuple[object, ...]) -> list[str]:
    return [f"  ... and {len(items) - SHOWN} more"] if len(items) > SHOWN else []
