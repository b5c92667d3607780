"""Crossfire (``crossfire-maps``): NPC keyword -> reply rules.

Two formats hold NPC talk:
- map files: an object's ``msg`` ... ``endmsg`` block with ``@match KEYWORDS``
  rules (the player says a keyword, the NPC replies with the following text);
  ``@question KEY TEXT`` / ``@reply KEY TEXT`` lines offer the player a line
  that triggers KEY, which gives us a real player line for that rule.
- JSON ``.msg`` dialogue files (``match``, ``pre``, ``post``, ``msg``,
  ``replies``), attached to an NPC by an ``npc_dialog`` child object whose
  ``name`` is the file's path; the parent object's name is the speaker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .record import Line

PACKAGES = ["crossfire-maps"]
LICENCE = "GPL-2+"
SETTING = "Crossfire: a high-fantasy world of cities, dungeons and quests"
MAPS = "usr/share/games/crossfire/maps"

_SKIP_EXT = {".png", ".jpg", ".gif", ".xpm", ".py", ".pyc", ".lua", ".txt", ".md", ".html", ".ogg"}
# Objects that "hear" keywords but are not characters: their text is narration.
_DEVICES = {"magic_ear", "magic_mouth", "sign", "altar_trigger"}
_FORMAT = re.compile(r"\[/?(?:i|b|ul|fixed|arcane|hand|strange|print|color[^\]]*)\]")


@dataclass
class Rule:
    """One NPC rule: the keywords it answers and the reply paragraphs."""

    keywords: list[str]
    replies: list[str] = field(default_factory=list)


def tidy(text: str) -> str:
    """Crossfire formatting: ``[i]``-style tags, ``$you`` = the player's name."""
    text = _FORMAT.sub("", text)
    return text.replace("$you", "traveller")


def readable_keyword(pattern: str) -> str:
    """First alternative of a match regex, made readable: ``h[ae]llo`` -> ``hallo``."""
    alt = pattern.split("|")[0].strip()
    alt = re.sub(r"\[(.)[^\]]*\]", r"\1", alt)
    return re.sub(r"[\\^$.*+?()]", "", alt).strip()


def keyword_matches(patterns: list[str], key: str) -> bool:
    """Whether a player option KEY would trigger a rule matching PATTERNS."""
    for p in patterns:
        if p == "*":
            continue
        try:
            if re.fullmatch(p, key, re.I):
                return True
        except re.error:
            if p.lower() == key.lower():
                return True
    return False


def parse_msg_block(text: str) -> tuple[list[Rule], dict[str, str]]:
    """Parse a map object's ``msg`` block into rules and offered player lines."""
    rules: list[Rule] = []
    offers: dict[str, str] = {}
    current: Rule | None = None
    buf: list[str] = []

    def flush() -> None:
        if current is not None and buf:
            current.replies.append("\n".join(buf).strip())
        buf.clear()

    for raw in text.splitlines():
        if raw.startswith("@match"):
            flush()
            current = Rule(keywords=[k for k in raw[len("@match"):].strip().split("|") if k])
            rules.append(current)
        elif raw.startswith(("@question", "@reply")):
            parts = raw.split(None, 2)
            if len(parts) == 3:
                offers.setdefault(parts[1], parts[2])
        elif raw.startswith("@"):
            continue
        elif current is not None:
            buf.append(raw)
    flush()
    return rules, offers


def _player_line(keywords: list[str], offers: dict[str, str]) -> str | None:
    for key, text in offers.items():
        if keyword_matches(keywords, key):
            return text
    if keywords and keywords[0] != "*":
        return readable_keyword(keywords[0]) or None
    return None


def rules_to_lines(rules: list[Rule], offers: dict[str, str], speaker: str, file: str,
                   source: str = PACKAGES[0], kind: str = "npc") -> Iterator[Line]:
    for rule in rules:
        player = _player_line(rule.keywords, offers)
        for reply in rule.replies:
            for para in re.split(r"\n\s*\n", tidy(reply)):
                yield Line(speaker=speaker, line=para, player_line=player, source=source,
                           file=file, licence=LICENCE, kind=kind,
                           context={"keywords": rule.keywords})


@dataclass
class _Obj:
    arch: str
    name: str | None = None
    title: str | None = None
    msg: str | None = None
    dialog: str | None = None


def parse_map(text: str) -> Iterator[tuple[str, str, str | None, list[Rule], dict[str, str]]]:
    """Yield ``(speaker, arch, dialog_path, rules, offers)`` for talking objects in a map."""
    stack: list[_Obj] = []
    lines = iter(text.splitlines())
    for raw in lines:
        if raw.startswith("arch "):
            stack.append(_Obj(arch=raw[5:].strip()))
        elif raw == "end" and stack:
            obj = stack.pop()
            if obj.arch == "npc_dialog" and obj.name and stack:
                stack[-1].dialog = obj.name
                continue
            if obj.arch == "map":
                continue
            speaker = obj.name or obj.arch.replace("_", " ")
            rules, offers = parse_msg_block(obj.msg) if obj.msg and "@match" in obj.msg else ([], {})
            if rules or obj.dialog:
                yield speaker, obj.arch, obj.dialog, rules, offers
        elif raw == "msg" and stack:
            body = []
            for inner in lines:
                if inner == "endmsg":
                    break
                body.append(inner)
            stack[-1].msg = "\n".join(body)
        elif stack and raw.startswith("name "):
            stack[-1].name = raw[5:].strip()
        elif stack and raw.startswith("title "):
            stack[-1].title = raw[6:].strip()


def parse_dialog_json(text: str) -> tuple[list[Rule], dict[str, str]]:
    """Parse a JSON ``.msg`` dialogue file into rules and offered player lines."""
    data = json.loads(text)
    rules: list[Rule] = []
    offers: dict[str, str] = {}
    for r in data.get("rules", []):
        rules.append(Rule(keywords=list(r.get("match", [])), replies=[m for m in r.get("msg", []) if m]))
        for rep in r.get("replies", []):
            if len(rep) >= 2:
                offers.setdefault(rep[0], rep[1])
    return rules, offers


def _is_text(path: Path) -> bool:
    if path.suffix.lower() in _SKIP_EXT:
        return False
    with path.open("rb") as f:
        return b"\0" not in f.read(2048)


def extract(root: Path) -> Iterator[Line]:
    """All NPC lines from an extracted ``crossfire-maps`` package."""
    maps = root / MAPS
    dialog_speaker: dict[str, str] = {}
    for path in sorted(maps.rglob("*")):
        if not path.is_file() or path.suffix == ".msg" or not _is_text(path):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "@match" not in text and "npc_dialog" not in text:
            continue
        rel = str(path.relative_to(root))
        for speaker, arch, dialog, rules, offers in parse_map(text):
            if dialog:
                dialog_speaker.setdefault(dialog.lstrip("/"), speaker)
            kind = "narration" if arch in _DEVICES else "npc"
            yield from rules_to_lines(rules, offers, speaker, rel, kind=kind)
    for path in sorted(maps.rglob("*.msg")):
        key = str(path.relative_to(maps))
        speaker = dialog_speaker.get(key) or path.stem.replace("_", " ").title()
        try:
            rules, offers = parse_dialog_json(path.read_text(encoding="utf-8", errors="replace"))
        except (json.JSONDecodeError, AttributeError):
            continue
        yield from rules_to_lines(rules, offers, speaker, str(path.relative_to(root)))
