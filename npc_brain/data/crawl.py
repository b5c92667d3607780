"""Dungeon Crawl Stone Soup (``crawl-common``): monster and god speech.

``dat/database/*.txt`` are databases of entries separated by ``%%%%``: the
first line is the key, then alternatives separated by blank lines (``w:N``
gives a weight). ``@_key_@`` pulls a random alternative of another entry;
``@The_monster@``-style slots are filled by the game. Speech is the quoted part
of a line (``@The_monster@ says, "..."``), so we expand each top-level entry
(a bounded, seeded enumeration), keep quoted speech and fill or drop slots.
``quotes.txt`` (third-party quotations) is never read.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

from .clean import pick
from .record import Line

PACKAGES = ["crawl-common"]
LICENCE = "GPL-2+"
SETTING = "Dungeon Crawl Stone Soup: a deep fantasy dungeon full of monsters, demons and gods"
DATABASE = "usr/share/crawl/dat/database"
FILES = {"monspeak.txt": "monster", "godspeak.txt": "god", "insult.txt": "taunt", "shout.txt": "monster"}
MAX_EXPANSIONS = 12

_REF = re.compile(r"@(_?[A-Za-z0-9_' ]+?_?)@")
_SPEECH = re.compile(r'"([^"]+)"')
# Game-filled slots that can appear inside speech, and neutral fillers.
_SLOTS = {"player_name": "stranger", "foe_name": "stranger", "foe": "you", "to_foe": "", "at_foe": "",
          "player": "you", "the_monster": "the monster", "The_monster": "The monster", "monster": "monster",
          "a_monster": "a monster", "A_monster": "A monster", "possessive": "its", "Possessive": "Its",
          "subjective": "it", "Subjective": "It", "objective": "it", "reflexive": "itself",
          "player_genus": "human", "player_genus_plural": "humans", "foe_genus": "human",
          "foe_genus_plural": "humans", "surface": "ground", "god_name": "my god", "player_god": "your god",
          "player_species": "human", "species": "human", "class": "adventurer", "says": "says",
          "player_only": "", "player_job": "adventurer"}
_MODIFIERS = re.compile(r"\b(default|friendly|fleeing|confused|silenced|stupid|related|hostile|"
                        r"smart|winged|unseen|seen|common|medium|rare)\b")


def parse_database(text: str) -> dict[str, list[tuple[int, str]]]:
    """``{key: [(weight, alternative), ...]}`` from a crawl database file."""
    entries: dict[str, list[tuple[int, str]]] = {}
    for chunk in text.split("%%%%"):
        lines = [ln for ln in chunk.split("\n") if not ln.startswith("#")]
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            continue
        key, body = lines[0].strip(), "\n".join(lines[1:])
        alts: list[tuple[int, str]] = []
        for para in re.split(r"\n\s*\n", body):
            para = para.strip()
            weight = 10
            m = re.match(r"w:(\d+)\s*\n?", para)
            if m:
                weight, para = int(m.group(1)), para[m.end():].strip()
            if para:
                alts.append((weight, para))
        entries.setdefault(key, []).extend(alts)
    return entries


def expand(text: str, db: dict[str, list[tuple[int, str]]], rng: random.Random, depth: int = 0) -> Iterator[str]:
    """Expansions of one alternative: a reference that is the whole text yields
    every alternative of its entry; inline references are sampled with RNG."""
    m = _REF.search(text)
    while m and m.group(1) not in db:
        m = _REF.search(text, m.end() - 1)
    if m is None or depth > 5:
        yield text
        return
    alts = db[m.group(1)]
    whole = m.start() == 0 and m.end() == len(text)
    chosen = [a for _, a in alts] if whole else [rng.choices([a for _, a in alts], [w for w, _ in alts])[0]]
    for alt in chosen:
        yield from expand(text[:m.start()] + alt + text[m.end():], db, rng, depth + 1)


def fill_slots(text: str) -> str | None:
    """Fill game slots with neutral words; None if an unknown slot is left.
    Inline choices ``[ploy|trick|trap]`` get a deterministic pick."""
    text = re.sub(r"\[([^\[\]]*\|[^\[\]]*)\]", lambda m: pick(m.group(1).split("|"), text), text)
    text = re.sub(r"@([A-Za-z_]+)@", lambda m: _SLOTS.get(m.group(1), "\0"), text)
    return None if "\0" in text or "@" in text else re.sub(r"\s+([,.!?])", r"\1", text)


def speech_of(alternative: str) -> str | None:
    """The spoken part of a message line (quoted text), or None for narration."""
    spoken = []
    for ln in alternative.split("\n"):
        ln = re.sub(r"^(VISUAL|SOUND|SPELL|ENCHANT|WARN|DANGER|PLAIN|TALK|SPEECH)\w*:", "", ln.strip())
        spoken += _SPEECH.findall(ln)
    return " ".join(s.strip() for s in spoken) if spoken else None


def speaker_name(key: str, tails: dict[str, int] | None = None) -> str:
    """``default friendly fleeing humanoid`` -> ``humanoid``; ``'&'`` -> ``demon``;
    ``Roxanne blink_other_closer`` -> ``Roxanne``; ``Crypt Donald`` -> ``Donald``
    when many keys end in ``Donald`` (branch/god-specific variants of one speaker)."""
    words = [w for w in key.strip("_").split() if "_" not in w] or [key.strip("_")]
    if tails and len(words) >= 2 and words[-1][:1].isupper() and tails.get(words[-1], 0) >= 3:
        words = words[-1:]
    name = _MODIFIERS.sub("", " ".join(words)).replace("_", " ")
    name = re.sub(r"\s+", " ", name).strip(" '")
    glyphs = {"&": "demon", "1": "demon", "2": "demon", "3": "demon", "4": "demon", "5": "demon",
              "cap-G": "giant", "cap-J": "jelly", "r": "rodent", "l": "lizard", "y": "light", "b": "bat",
              "8": "golem"}
    return glyphs.get(name, name) or "monster"


def parse_file(text: str, kind: str, file: str, source: str = PACKAGES[0], seed: int = 0) -> Iterator[Line]:
    """Speech lines of every top-level (unreferenced) entry of one database file.

    In ``insult.txt`` a whole message is speech (no quotes). Templates with
    inline references are sampled MAX_EXPANSIONS times (seeded: reproducible).
    """
    db = parse_database(text)
    referenced = {m.group(1) for alts in db.values() for _, a in alts for m in _REF.finditer(a)}
    tails: dict[str, int] = {}
    for key in db:
        tails[key.split()[-1]] = tails.get(key.split()[-1], 0) + 1
    whole_is_speech = kind == "taunt"
    for key, alts in db.items():
        if key in referenced or key.startswith("__"):
            continue
        rng = random.Random(f"{seed}:{key}")
        speaker = "demon" if whole_is_speech else speaker_name(key, tails)
        for _, alt in alts:
            rounds = MAX_EXPANSIONS if _REF.search(alt) else 1
            for _ in range(rounds):
                for n, full in enumerate(expand(alt, db, rng)):
                    if n >= MAX_EXPANSIONS * 4:
                        break
                    said = full if whole_is_speech else speech_of(full)
                    said = fill_slots(said) if said else None
                    if said:
                        yield Line(speaker=speaker, line=said, source=source, file=file,
                                   licence=LICENCE, kind=kind, context={"topic": key})


def extract(root: Path) -> Iterator[Line]:
    """All monster, god and taunt speech from an extracted ``crawl-common``."""
    base = root / DATABASE
    for name, kind in FILES.items():
        path = base / name
        if path.exists():
            yield from parse_file(path.read_text(encoding="utf-8", errors="replace"), kind,
                                  str(path.relative_to(root)))
