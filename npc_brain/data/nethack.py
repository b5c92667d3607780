"""NetHack (``nethack-common``): quest speech, the Oracle, rumours.

Everything sits in the dlb archive ``nhdat`` (see ``dlb.py``). ``quest.dat``
is binary: a class table (3-letter role codes, ``-`` for messages shared by all
roles), per-class tables of ``(msgnum, delivery, offset, size, summary_size)``
and obfuscated text at those offsets. Message numbers tell who speaks
(guardians, the quest leader, the nemesis ...); only the quoted parts of a
message are speech. ``%x`` slots are filled with neutral words. ``rumors`` and
``oracles`` are what the Oracle says. The encyclopedia (``data``) is skipped.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from pathlib import Path

from .dlb import decode_lines, read_dlb_file
from .record import Line

PACKAGES = ["nethack-common"]
LICENCE = "NetHack General Public License"
SETTING = "NetHack: a dungeon of the Mazes of Menace, where the hero seeks the Amulet of Yendor"
NHDAT = "usr/lib/games/nethack/nhdat"

ROLES = {"Arc": "archeologist", "Bar": "barbarian", "Cav": "caveman", "Hea": "healer", "Kni": "knight",
         "Mon": "monk", "Pri": "priest", "Ran": "ranger", "Rog": "rogue", "Sam": "samurai",
         "Tou": "tourist", "Val": "valkyrie", "Wiz": "wizard"}
# Quest leaders and nemeses by role (names as they appear in the game).
LEADERS = {"Arc": "Lord Carnarvon", "Bar": "Pelias", "Cav": "Shaman Karnov", "Hea": "Hippocrates",
           "Kni": "King Arthur", "Mon": "the Grand Master", "Pri": "the Arch Priest", "Ran": "Orion",
           "Rog": "the Master of Thieves", "Sam": "Lord Sato", "Tou": "Twoflower", "Val": "the Norn",
           "Wiz": "Neferet the Green"}
NEMESES = {"Arc": "Minion of Huhetotl", "Bar": "Thoth Amon", "Cav": "Chromatic Dragon", "Hea": "Cyclops",
           "Kni": "Ixoth", "Mon": "Master Kaen", "Pri": "Nalzok", "Ran": "Scorpius",
           "Rog": "Master Assassin", "Sam": "Ashikaga Takauji", "Tou": "the Master of Thieves",
           "Val": "Lord Surtur", "Wiz": "the Dark One"}


def speaker_for(role: str, num: int) -> str | None:
    """Who says quest message NUM (3.6 numbering); None for narration."""
    if role == "-":
        if 10 <= num <= 19:
            return "minion of the gods"
        if 30 <= num <= 49:
            return "the Wizard of Yendor"
        return None
    if 5 <= num <= 14:
        return f"{ROLES[role]} quest guardian"
    if 15 <= num <= 34 or 81 <= num <= 99:
        return LEADERS[role]
    if 50 <= num <= 69:
        return NEMESES[role]
    return None


def fill_slots(text: str, role: str) -> str:
    """``%p`` (player), ``%l`` (leader), ``%n`` (nemesis) ... -> neutral words.
    A trailing ``C`` capitalises, ``s`` makes a possessive, ``a``/``A`` adds an
    article, ``h``/``i``/``j`` are pronoun forms."""
    words = {"p": "adventurer", "c": ROLES.get(role, "adventurer"), "r": "novice", "R": "novice",
             "s": "sibling", "S": "god", "l": LEADERS.get(role, "your leader"),
             "n": NEMESES.get(role, "the enemy"), "o": "the artifact", "i": "the enemy's lair",
             "H": "home", "d": "your god", "D": "the dark god", "a": "lawful", "A": "Lawful",
             "g": "guard", "G": "guardian", "Z": "the guardians", "L": "the leader", "N": "the nemesis",
             "O": "the artifact", "x": "the land", "C": "the dungeon", "h": "he", "E": "the enemy"}

    def sub(m: re.Match[str]) -> str:
        word = words.get(m.group(1), "it")
        for mod in m.group(2):
            if mod == "C":
                word = word[:1].upper() + word[1:]
            elif mod == "s":
                word += "'s"
            elif mod == "P":
                word += "s"
            elif mod in "aA":
                word = ("an " if word[:1].lower() in "aeiou" else "a ") + word
            elif mod == "t":
                word = re.sub(r"^the ", "", word)
            elif mod in "hi":  # pronoun forms of the slot: he / him
                word = "it"
            elif mod == "j":
                word = "its"
        return word

    return re.sub(r"%([A-Za-z])([CsPaAthij]?)", sub, text)


def quoted_speech(text: str) -> str | None:
    """Quoted paragraphs of a quest message (a paragraph's quote may stay open
    until the next paragraph reopens it, NetHack style)."""
    parts = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if para.startswith('"'):
            parts.append(para.strip('"'))
        else:
            parts += re.findall(r'"([^"]+)"', para)
    return " ".join(p for p in parts if p.strip()) or None


def parse_quest(data: bytes, file: str, source: str = PACKAGES[0]) -> Iterator[Line]:
    """Speech lines from a ``quest.dat`` member."""
    nclass = struct.unpack_from("<i", data, 0)[0]
    roles = [data[4 + 3 * i: 7 + 3 * i].rstrip(b"\0").decode("latin-1") for i in range(nclass)]
    offsets = struct.unpack_from(f"<{nclass}q", data, 4 + 3 * nclass)
    for role, off in zip(roles, offsets):
        count = struct.unpack_from("<i", data, off)[0]
        for j in range(count):
            num, _delivery, start, size, _summary = struct.unpack_from("<ic3xqqq", data, off + 4 + 32 * j)
            speaker = speaker_for(role, num)
            if speaker is None:
                continue
            text = "\n".join(decode_lines(data[start:start + size]))
            said = quoted_speech(text)
            if said:
                yield Line(speaker=speaker, line=fill_slots(said, role), source=source, file=file,
                           licence=LICENCE, kind="quest",
                           context={"role": ROLES.get(role, "any"), "message": num})


def parse_rumors(data: bytes, file: str, source: str = PACKAGES[0]) -> Iterator[Line]:
    """Rumours (true and false); padding underscores removed."""
    for i, line in enumerate(decode_lines(data)):
        if i < 2 or not line or line.startswith("#"):
            continue  # header comment and the section index
        yield Line(speaker="the Oracle", line=line.rstrip("_").strip(), source=source, file=file,
                   licence=LICENCE, kind="rumor", context={"topic": "rumour"})


def parse_oracles(data: bytes, file: str, source: str = PACKAGES[0]) -> Iterator[Line]:
    """Major consultations: long passages, split into chunks of a few sentences.

    Layout: header, a plain-text offset index, then passages separated by plain
    ``---`` lines, each passage obfuscated. Passages citing a book (``[Author,
    year]``) quote third-party text and are skipped.
    """
    passages = data.split(b"\n---\n")[1:]
    for raw in passages:
        body = " ".join(ln.strip() for ln in decode_lines(raw) if ln.strip())
        if re.search(r"\[[A-Z][^\]]*\d{4}|\[[A-Z][a-z]+ and [A-Z]", body):
            continue
        sentences = re.split(r"(?<=[.!?])\s+", body)
        chunk: list[str] = []
        for s in sentences + [None]:
            if chunk and (s is None or len(" ".join(chunk + [s]).split()) > 60):
                yield Line(speaker="the Oracle", line=" ".join(chunk), source=source, file=file,
                           licence=LICENCE, kind="oracle", context={"topic": "consultation"})
                chunk = []
            if s is not None:
                chunk.append(s)


def extract(root: Path) -> Iterator[Line]:
    """Quest speech, rumours and oracles from an extracted ``nethack-common``."""
    members = read_dlb_file(root / NHDAT)
    base = NHDAT + ":"
    if "quest.dat" in members:
        yield from parse_quest(members["quest.dat"], base + "quest.dat")
    if "rumors" in members:
        yield from parse_rumors(members["rumors"], base + "rumors")
    if "oracles" in members:
        yield from parse_oracles(members["oracles"], base + "oracles")
