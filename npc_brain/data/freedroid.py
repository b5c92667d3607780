"""FreedroidRPG (``freedroidrpg-data``): Lua dialogue trees.

Each ``storyline/act*/dialogs/NAME.lua`` returns a table of nodes; a node's
``text = _"..."`` is the option the player picks (Tux says it), and inside its
code ``Npc:says(_"...")`` / ``Tux:says(_"...")`` calls give the exchange in
order. We scan the calls in file order, which keeps each NPC line next to the
player line that prompted it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .record import Line

PACKAGES = ["freedroidrpg-data"]
LICENCE = "GPL-2+"
SETTING = "FreedroidRPG: a post-apocalyptic sci-fi world where rogue bots have overrun the towns"
DIALOGS = "usr/share/freedroidrpg/data/storyline"

def _str(group: str) -> str:
    """A Lua double-quoted string literal, captured in GROUP."""
    return r'"(?P<' + group + r'>(?:[^"\\\n]|\\.)*)"'


_TOKENS = re.compile(
    r"\b(?P<who>Npc|Tux):says(?:_random)?\(\s*_?\s*" + _str("said")
    + r"|\bid\s*=\s*" + _str("node")
    + r"|\btext\s*=\s*_?\s*" + _str("option")
    + r"|\btopic\s*=\s*" + _str("topic")
    + r"|\bNpc:set_name\(\s*_?\s*" + _str("name")
    + r"|(?P<comment>--[^\n]*)"
)
_ESC = {"n": "\n", "t": " ", '"': '"', "'": "'", "\\": "\\"}


def unescape(s: str) -> str:
    """Lua string escapes, and printf slots (``%s`` is always the player's name)."""
    s = re.sub(r"\\(.)", lambda m: _ESC.get(m.group(1), m.group(1)), s)
    return s.replace("%s", "traveller").replace("%d", "a few").replace("%%", "%")


def speaker_from_stem(stem: str) -> str:
    """``ArenaTerminal`` -> ``Arena Terminal``; ``614_cryo`` -> ``614 cryo``."""
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)
    return re.sub(r"[_-]+", " ", stem).strip()


def parse_dialog(text: str, stem: str, file: str, source: str = PACKAGES[0]) -> Iterator[Line]:
    """Yield the NPC lines of one dialogue file, each with its prompting player line."""
    matches = [m for m in _TOKENS.finditer(text) if not m.group("comment")]
    names = [unescape(m.group("name")) for m in matches if m.group("name") is not None]
    speaker = names[0].split(" - ")[0].strip() if names else speaker_from_stem(stem)
    node: str | None = None
    topic: str | None = None
    prev: tuple[str, str] | None = None  # (who, text) of the previous spoken line
    for m in matches:
        if m.group("node") is not None:
            node, topic, prev = m.group("node"), None, None
        elif m.group("option") is not None:
            prev = ("Tux", unescape(m.group("option")))
        elif m.group("topic") is not None:
            topic = m.group("topic")
        elif m.group("said") is not None:
            who, said = m.group("who"), unescape(m.group("said"))
            if who == "Npc":
                ctx: dict[str, str] = {"topic": topic or node or "greeting"}
                if prev:
                    ctx["previous"] = prev[1]
                yield Line(speaker=speaker, line=said, source=source, file=file, licence=LICENCE,
                           kind="npc", player_line=prev[1] if prev and prev[0] == "Tux" else None,
                           context=ctx)
            prev = (who, said)


def extract(root: Path) -> Iterator[Line]:
    """All NPC lines from an extracted ``freedroidrpg-data`` package."""
    for path in sorted((root / DIALOGS).glob("act*/dialogs/*.lua")):
        yield from parse_dialog(path.read_text(encoding="utf-8", errors="replace"), path.stem,
                                str(path.relative_to(root)))
