"""Derive character sheets (DESIGN.md schema) from extracted lines.

A speaker with enough lines is worth a sheet: name, a guessed role, the
source's setting and a handful of real example lines. Sheets are a starting
point for writers and a ready test set for in-character evaluation.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from .record import Line

MIN_LINES = 5
MAX_EXAMPLES = 8
# Kinds whose speaker is not one character.
_NOT_CHARACTERS = {"chitchat", "narration"}
_NOT_SPEAKERS = {"narrator", "chitchat"}

# (role, pattern): first match on the name wins, then on the lines/keywords.
_ROLES: list[tuple[str, str]] = [
    ("shopkeeper", r"\b(shop\w*|merchant|trader|buy|sell|sale|wares|price|store|broker)\b"),
    ("innkeeper", r"\b(inn\w*|tavern|bartender|barkeep|ale|beer|drinks?|brew)\b"),
    ("priest", r"\b(priest\w*|acolyte|temple|church|pray\w*|monk|abbot|cleric|bless\w*)\b"),
    ("healer", r"\b(heal\w*|doctor|nurse|medic\w*|physician)\b"),
    ("guard", r"\b(guards?|soldiers?|sergeant|captain|sentry|watchm[ae]n|security)\b"),
    ("scholar", r"\b(sage|scholar|librar\w*|professor|wizard|mage|books?)\b"),
    ("farmer", r"\b(farm\w*|crops?|harvest|fisherman)\b"),
    ("quest giver", r"\b(quest|reward|task|mission)\b"),
]
_KIND_ROLE = {"god": "deity", "monster": "monster", "taunt": "demon", "rumor": "oracle",
              "oracle": "oracle", "bark": "survivor"}


def slug(name: str) -> str:
    """``Lt. Piltro`` -> ``lt-piltro`` (valid for the sheet ``id``)."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return (s or "npc")[:40]


def guess_role(name: str, lines: list[Line]) -> str:
    for role, pat in _ROLES:
        if re.search(pat, name, re.I):
            return role
    text = " ".join(ln.line for ln in lines[:200])
    keys = " ".join(" ".join(map(str, ln.context.get("keywords", []))) for ln in lines)
    scores = {role: len(re.findall(pat, f"{text} {keys} {keys}", re.I)) for role, pat in _ROLES}
    best = max(scores, key=lambda r: scores[r])
    if scores[best] >= 3:
        return best
    kinds = {ln.kind for ln in lines}
    for kind, role in _KIND_ROLE.items():
        if kind in kinds:
            return role
    if "quest" in kinds:
        return "quest leader" if "guardian" not in name else "guard"
    return "townsperson"


def pick_examples(lines: list[Line]) -> list[str]:
    """Up to MAX_EXAMPLES lines of a comfortable length, spread over the list."""
    good = [ln.line for ln in lines if 4 <= len(ln.line.split()) <= 40] or [ln.line for ln in lines]
    if len(good) <= MAX_EXAMPLES:
        return good
    step = len(good) / MAX_EXAMPLES
    return [good[int(i * step)] for i in range(MAX_EXAMPLES)]


def derive_sheets(lines: Iterable[Line], settings: dict[str, str]) -> dict[str, dict]:
    """``{file stem: sheet}`` for every (source, speaker) with >= MIN_LINES lines."""
    groups: dict[tuple[str, str], list[Line]] = defaultdict(list)
    for ln in lines:
        if ln.kind in _NOT_CHARACTERS or ln.speaker.lower() in _NOT_SPEAKERS:
            continue
        groups[(ln.source, ln.speaker)].append(ln)
    sheets: dict[str, dict] = {}
    for (source, speaker), group in sorted(groups.items()):
        if len(group) < MIN_LINES:
            continue
        stem = f"{source}__{slug(speaker)}"
        if stem in sheets:  # two spellings of one name: keep the first
            continue
        sheets[stem] = {
            "name": speaker,
            "id": re.sub(r"[^a-z0-9_-]", "-", stem.lower())[:64],
            "role": guess_role(speaker, group),
            "setting": settings.get(source, ""),
            "examples": pick_examples(group),
            "source": source,
            "licence": group[0].licence,
            "line_count": len(group),
        }
    return sheets
