"""A foreign priest's datagram as a diagram shows it: known only by the relay's preview.

Apart from `harness.report.run` so the diagram (which `simulate` draws too) can name
it without loading what reads a real run.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.network.record import printable
from node.messages import Message, describe_message


@dataclass(frozen=True)
class Unread:
    """A foreign priest's datagram, known only by the relay's preview of its first bytes."""

    src: str
    head: str  # its first bytes as network.jsonl holds them (one character each); "" if none
    ballot: str = ""  # none known: code that groups messages by ballot finds none here

    @property
    def word(self) -> str:
        """Its first word (a text protocol's method: NextBallot), else "datagram"."""
        n = 0
        while n < len(self.head) and self.head[n].isascii() and (self.head[n].isalnum()
                                                                  or self.head[n] == "_"):
            n += 1
        return self.head[:n] if n else "datagram"

    def describe(self) -> str:
        """The preview in one printable line, quoted (line breaks shown as ' / ')."""
        if not self.head:
            return "a datagram (no preview recorded)"
        text = printable(self.head)
        while text.endswith(" / "):  # the line breaks that end it, not a '/' of its own
            text = text[:-3]
        return f'"{text}"'


def describe(m: Message | Unread) -> str:
    """A message as the paper writes it, or a foreign datagram by its preview."""
    return m.describe() if isinstance(m, Unread) else describe_message(m)
