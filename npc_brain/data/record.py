"""One extracted NPC line, with its provenance.

Every sample keeps the package it came from and that package's licence, so a
model trained on the data can always be traced back (and filtered by licence).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Line:
    """A single line spoken by a character (or a chitchat turn)."""

    speaker: str
    line: str
    source: str  # Debian or PyPI package name
    file: str  # path inside the package
    licence: str
    kind: str = "npc"  # npc | chitchat | monster | god | taunt | quest | rumor | oracle | bark
    player_line: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSONL record with a stable key order (easier to diff and read)."""
        d = asdict(self)
        order = ["speaker", "line", "player_line", "context", "source", "file", "licence", "kind"]
        return {k: d[k] for k in order}
