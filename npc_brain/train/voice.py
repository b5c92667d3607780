"""A sheet's own voice, for training targets: the words a line can borrow so that it sounds like
*this* NPC and no other.

Everything here is read from the character sheet the prompt shows the model (name, role, setting,
``speech_style``, ``catchphrases``, ``examples``, ``first_line``), so what the adapter learns is to
carry the sheet's words into its lines - a skill that transfers to sheets it never saw - rather than
a house style shared by every NPC:

* **interjections**: quoted words in ``speech_style`` (``"consarn it"``, ``"reckon"``), the opening
  words of the sheet's sample lines and catchphrases (``Consarn it, ...`` -> ``Consarn it``);
* **address**: what the NPC calls people (``calls people "love"`` -> ``love``);
* **sample lines**: ``examples`` and ``first_line``, whole or as a fragment;
* **self and place**: first name, role, the first part of the setting, in varied spoken frames.

``voice_line`` wraps a core line (a fact, a scene reaction, a deflection) with some of these,
chosen at random per call, so that one question gets many different answers that all sound like
the same person.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from npc_brain.character import Character
from npc_brain.lines import word_count

_QUOTED = re.compile(r"[\"“]([^\"”]{1,40})[\"”]|'([^']{2,30})'")
_ADDRESS = re.compile(r"\bcalls? (?:people|everyone|everybody|visitors|folks|customers|strangers|others|"
                      r"the player|you|them|men|women|him|her)\s+(?:[\"“']([^\"”']{1,30})[\"”']|(\w+))", re.I)
_ARTICLE = re.compile(r"^(a|an|the|my|his|her|their|our)\s", re.I)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


_TITLES = {"inspector", "princess", "prince", "father", "mother", "old", "aunt", "uncle", "brother", "sister",
           "nana", "granny", "grandpa", "captain", "sir", "lady", "lord", "doctor", "dr", "master", "mistress",
           "madame", "baroness", "baron", "commander", "sergeant", "jarl", "unit", "mr", "mrs", "miss", "ms",
           "king", "queen", "count", "countess", "duke", "duchess", "professor", "chief", "elder", "saint"}


def with_article(np: str) -> str:
    """``prospector on the flats`` -> ``a prospector on the flats``; proper nouns and 'the ...' as they are."""
    np = np.strip()
    if not np or _ARTICLE.match(np) or np[:1].isupper():
        return np
    w = np.split()[0].lower()
    if " of " in " ".join(np.split()[:3]).join("  "):  # "owner of the Jade Lantern" -> "the owner of ..."
        return "the " + np
    if w.endswith("est") or w in ("only", "last", "first", "head", "chief", "sole"):
        return "the " + np
    return ("an " if np[:1].lower() in "aeiou" else "a ") + np


def _short(text: str, max_words: int) -> str:
    return text if word_count(text) <= max_words else ""


@dataclass
class Voice:
    name: str
    first: str
    role: str  # short role, with an article
    place: str
    interjections: list[str] = field(default_factory=list)
    address: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # examples + first line
    catchphrases: list[str] = field(default_factory=list)

    # ------------------------------------------------------------- pieces
    def lead(self, rng: random.Random) -> str:
        """An opening in this NPC's words ("Lawks, ", "Well, love, "), or ''."""
        opts = []
        for i in self.interjections:
            opts.append(f"{_cap(i)}, ")
            opts.append(f"{_cap(i)}! ")
        for a in self.address:
            opts += [f"{_cap(a)}, ", f"Listen, {a}, ", f"Oh, {a}, ", f"Now, {a}, ", f"Right, {a}, "]
        return rng.choice(opts) if opts else ""

    def address_tail(self, rng: random.Random) -> str:
        return f", {rng.choice(self.address)}" if self.address else ""

    def sample(self, rng: random.Random, max_words: int = 16) -> str:
        """One of the sheet's own lines (or its first sentence), short enough to add."""
        pool = [x for x in self.lines if word_count(x) <= max_words]
        if not pool:
            firsts = [re.split(r"(?<=[.!?])\s", x, maxsplit=1)[0] for x in self.lines]
            pool = [x for x in firsts if word_count(x) <= max_words]
        return rng.choice(pool) if pool else ""

    def self_ref(self, rng: random.Random) -> str:
        """A short spoken tag that names who is talking or where."""
        frames = [f"Take it from {self.first}.", f"Trust {self.first} on that.", f"That's {self.place} for you.",
                  f"Ask anyone in {self.place}.", f"I've been {self.role} long enough to know.",
                  f"As sure as my name's {self.first}.", f"{_cap(self.role)} hears things.",
                  f"Not much gets past {self.first}.", f"Things are like that in {self.place}.",
                  f"I'm {self.role}; I should know.", f"Welcome to {self.place}.",
                  f"Never seen the like in {self.place}.", f"Stay close to {self.first}.",
                  f"Not what {self.place} needs.", f"Mark what {self.first} says.",
                  f"Every day in {self.place} is like this.", f"I didn't become {self.role} for this."]
        return rng.choice(frames)

    def tail(self, rng: random.Random, catch: bool = True) -> str:
        """Something after the core line: a sample line, the catchphrase, a self/place tag, or ''."""
        # Round 4: the catchphrase only rarely (round 3's adapter answered with it alone, and the serving
        # sampler already favours it); sample lines and who/where tags carry the sheet's voice instead.
        r = rng.random()
        if r < 0.40 and self.lines:
            return self.sample(rng, 12)
        if r < 0.45 and catch and self.catchphrases:
            return rng.choice(self.catchphrases)
        if r < 0.85:
            return self.self_ref(rng)
        return ""


def voice_of(c: Character) -> Voice:
    role = re.split(r"[,;(]", c.role)[0].strip() if c.role else "nobody special"
    place = re.split(r"[,;]", c.setting)[0].strip() if c.setting else "these parts"
    place = re.sub(r"^(a|an)\s+", "this ", place, flags=re.I) if place else place
    if word_count(place) > 6:  # "this lawless frontier of space stations" -> "this lawless frontier"
        place = re.split(r"\s(?:of|in|where|with|on|after|full)\s", place, maxsplit=1)[0]
    words = c.name.split() or ["me"]
    first = " ".join(words[:2]) if words[0].lower().strip(".") in _TITLES and len(words) > 1 else words[0]
    style = c.speech_style or ""
    address = []
    for m in _ADDRESS.finditer(style):
        a = (m.group(1) or m.group(2) or "").strip(" .,!")
        if a and a.lower() not in ("by", "them", "their", "the") and word_count(a) <= 3:
            address.append(a)
    inter = []
    for m in _QUOTED.finditer(style):
        q = (m.group(1) or m.group(2) or "").strip(" .,!?")
        if q and q not in address and word_count(q) <= 4:
            inter.append(q)
    # A sample line's opener when it is exclaimed ("Gears and springs! ...") - "Two eggs, ..." is content.
    for line in list(c.examples) + [c.first_line or ""]:
        head = re.split("!", line, maxsplit=1)
        if len(head) == 2 and 1 <= word_count(head[0]) <= 3 and head[0].strip().lower() not in ("i", "you", "no"):
            inter.append(head[0].strip())
    # Never the start of a catchphrase: the serving sampler favours catchphrase tokens, and a line that
    # opens with one teaches the model to say the catchphrase *instead of* an answer (round 3 did).
    starts = [x.lower().strip(" .,!?") for x in c.catchphrases]
    inter = [i for i in inter if not any(st.startswith(i.lower()[:10]) or i.lower().startswith(st[:10]) for st in starts)]
    dedup = lambda xs: list(dict.fromkeys(x for x in xs if x))  # noqa: E731
    lines = dedup([" ".join(x.split()) for x in list(c.examples) + ([c.first_line] if c.first_line else [])])
    return Voice(c.name, first, with_article(role), place, dedup(inter), dedup(address), lines,
                 list(c.catchphrases))


def voice_line(v: Voice, core: str, rng: random.Random, p_lead: float = 0.35, p_tail: float = 0.5,
               catch: bool = True, max_words: int = 30, house_leads: list[str] | None = None) -> str:
    """``core`` said by this NPC: sometimes an opening in its own words (or, for a sheet that names
    none, one of ``house_leads``), sometimes a tail from its sheet."""
    line = core
    if rng.random() < p_lead:
        lead = v.lead(rng) or (rng.choice(house_leads) if house_leads else "")
        if lead:
            if lead.endswith(", "):
                if _lower_ok(line):
                    line = line[:1].lower() + line[1:]
                else:  # "Right, sugar. Whiskey at the Dusty Spur..."
                    lead = lead[:-2] + ". "
            line = lead + line
    elif v.address and rng.random() < 0.25 and re.search(r"[.!?]$", line):
        # "Five coppers, love." - the address term at the end of the first sentence
        m = re.search(r"[.!?](\s|$)", line)
        if m:
            i = m.start()
            line = line[:i] + v.address_tail(rng) + line[i:]
    if rng.random() < p_tail:
        t = v.tail(rng, catch)
        if t and t not in line and t.split(",")[0] not in line and word_count(line) + word_count(t) <= max_words:
            line = line + " " + t
    return line


_LOWER_OK = {"a", "an", "the", "there", "it", "its", "every", "each", "some", "most", "no", "one", "two", "three",
             "four", "five", "six", "seven", "eight", "nine", "ten", "all", "only", "nobody", "everyone", "if", "when",
             "where", "what", "who", "how", "why", "that", "this", "these", "those", "he", "she", "they", "we", "you",
             "that's", "it's", "there's", "they", "not", "never", "just", "out", "over", "up", "down", "at", "by",
             "in", "on", "head", "go", "try", "follow", "stay", "keep", "costs", "starts", "safe", "come"}


def _lower_ok(s: str) -> bool:
    return s.split(" ", 1)[0].lower().strip(",.?!") in _LOWER_OK
