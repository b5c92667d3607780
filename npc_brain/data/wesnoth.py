"""Battle for Wesnoth campaigns (``wesnoth-1.16-*``): WML ``[message]`` tags.

Scenario ``.cfg`` files script dialogue as ``[message]`` blocks with
``speaker=ID`` and ``message= _ "..."``. A message inside an ``[option]``'s
``[command]`` answers the option's ``label`` (what the player chose), which
gives a real player line; otherwise the previous message is the context.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .record import Line

PACKAGES = ["wesnoth-1.16-httt", "wesnoth-1.16-tsg"]
LICENCE = "GPL-2+"
SETTING = "Battle for Wesnoth: a high-fantasy world of kingdoms, elves, orcs and the undead"
CAMPAIGNS = "usr/share/games/wesnoth"

_TAG = re.compile(r"\[(/?)([A-Za-z_+][\w]*)\]")
_ATTR = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*(.*)$", re.S)
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_VAR = re.compile(r"\$[\w.\[\]]+\|?")
# Speaker ids that are not one character.
_GENERIC = {"unit": "soldier", "second_unit": "soldier", "narrator": "narrator"}


def wml_string(value: str) -> str:
    """The text of a WML value: quoted pieces joined (``+`` concatenation,
    ``_`` translation marks dropped, ``""`` is an escaped quote)."""
    pieces = _QUOTED.findall(value)
    if not pieces:
        return value.strip()
    return "".join(p.replace('""', '"') for p in pieces)


def fill_vars(text: str) -> str | None:
    """``$unit.name`` style variables: names become 'friend'; anything else
    (numbers, gold, macro calls) makes the line unusable."""
    text = re.sub(r"\$(?:unit|second_unit|[a-z_]*leader|[a-z_]*hero)\.name\|?", "friend", text)
    if "$" in text or "{" in text:
        return None
    return text


def _logical_lines(text: str) -> Iterator[str]:
    """WML lines, with a value that spans several lines (open quote or ``+``) joined into one."""
    buf = ""
    for raw in text.splitlines():
        if not buf and raw.lstrip().startswith("#"):
            continue
        buf = f"{buf}\n{raw}" if buf else raw
        if _ATTR.match(buf) and (buf.count('"') % 2 == 1 or buf.rstrip().endswith("+")):
            continue  # open string, or ``+`` concatenation continuing on the next line
        yield buf
        buf = ""
    if buf:
        yield buf


def parse_cfg(text: str, file: str, source: str) -> Iterator[Line]:
    """Yield the messages of one WML file."""
    stack: list[dict[str, str]] = []
    option_labels: list[str] = []
    previous: tuple[str, str] | None = None
    for line in _logical_lines(text):
        attr = _ATTR.match(line)
        if attr and stack:
            stack[-1][attr.group(1)] = attr.group(2)
            continue
        for m in _TAG.finditer(line):
            closing, name = m.group(1) == "/", m.group(2)
            if not closing:
                stack.append({"__tag": name})
                if name == "event":
                    previous = None
                continue
            if not stack:
                continue
            node = stack.pop()
            if name == "option":
                if option_labels:
                    option_labels.pop()
            elif name == "message" and "message" in node:
                rec = _message(node, option_labels, previous, file, source)
                if rec is not None:
                    previous = (rec.speaker, rec.line)
                    yield rec
        # An [option]'s label is known once its attributes are read; remember
        # it when its [command] opens so nested messages can answer it.
        if stack and stack[-1].get("__tag") == "command" and len(stack) >= 2 \
                and stack[-2].get("__tag") == "option" and "__seen" not in stack[-1]:
            stack[-1]["__seen"] = "1"
            option_labels.append(wml_string(stack[-2].get("label", "")))


def _message(node: dict[str, str], labels: list[str], previous: tuple[str, str] | None,
             file: str, source: str) -> Line | None:
    speaker_id = wml_string(node.get("speaker", "")) or wml_string(node.get("role", ""))
    if not speaker_id:
        return None
    text = fill_vars(wml_string(node["message"]))
    if not text:
        return None
    speaker = _GENERIC.get(speaker_id, speaker_id.replace("_", " "))
    ctx: dict[str, str] = {}
    if previous:
        ctx["previous"] = previous[1]
        ctx["previous_speaker"] = previous[0]
    return Line(speaker=speaker, line=text, player_line=labels[-1] if labels else None, source=source,
                file=file, licence=LICENCE, kind="narration" if speaker == "narrator" else "npc",
                context=ctx)


def extract(root: Path, source: str) -> Iterator[Line]:
    """All messages from one extracted campaign package."""
    for path in sorted((root / CAMPAIGNS).rglob("*.cfg")):
        yield from parse_cfg(path.read_text(encoding="utf-8", errors="replace"),
                             str(path.relative_to(root)), source)
