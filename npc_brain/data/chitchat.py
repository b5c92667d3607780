"""PyPI ``chitchat-dataset``: casual human conversations for fluency.

The wheel ships ``chitchat_dataset/dataset.json``: ``{conversation id:
{"prompt", "ratings", "messages": [[{text, sender, timestamp}, ...], ...]}}``.
Each inner list is one turn (a burst of messages by one person); we join a
turn into one line and pair it with the previous turn as the player line.
Read straight from the wheel (a zip) so nothing needs unpacking.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .record import Line

PACKAGE = "chitchat-dataset"
LICENCE = "MIT"
SETTING = "Everyday small talk between two people"
MEMBER = "chitchat_dataset/dataset.json"


def join_turn(turn: list[dict[str, Any]]) -> str:
    """One person's consecutive messages as a single line."""
    parts = [str(m.get("text", "")).strip() for m in turn]
    out = ""
    for p in parts:
        if not p:
            continue
        if out and out[-1] not in ".!?,;:":
            out += ","  # bursts are usually separate clauses
        out = f"{out} {p}" if out else p
    return out


def parse_conversations(data: dict[str, Any], file: str, source: str = PACKAGE) -> Iterator[Line]:
    for conv_id, conv in data.items():
        previous: str | None = None
        prompt = conv.get("prompt") or None
        for turn in conv.get("messages", []):
            line = join_turn(turn)
            if not line:
                continue
            ctx: dict[str, Any] = {"conversation": conv_id}
            if prompt:
                ctx["topic"] = prompt
            yield Line(speaker="chitchat", line=line, player_line=previous, source=source, file=file,
                       licence=LICENCE, kind="chitchat", context=ctx)
            previous = line


def extract(wheel: Path) -> Iterator[Line]:
    with zipfile.ZipFile(wheel) as z:
        data = json.loads(z.read(MEMBER))
    yield from parse_conversations(data, MEMBER)
