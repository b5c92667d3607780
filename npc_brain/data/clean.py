"""Cleaning rules shared by every source.

Each parser strips its own markup first (WML, Lua escapes, crawl templates ...);
this module then applies the same rules everywhere so the corpus is uniform:
normalised whitespace and quotes, 2..80 words, English only, exact dedup.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

from .record import Line

MIN_WORDS = 2
MAX_WORDS = 80

_WS = re.compile(r"\s+")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "...",
                         "\u2013": "-", "\u2014": " - ", "\u00a0": " "})
_PANGO = re.compile(r"</?(?:b|i|u|s|span|big|small|tt|sub|sup|color|font)\b[^>]*>", re.I)
_EMOTE = re.compile(r"<([a-z][a-z ]*[a-z])>")
_JUNK = re.compile(r"https?://|www\.|\S+@\S+\.\w+|\b\w+_xxx\b")  # URLs, e-mail, dev notes
_BBCODE = re.compile(r"\[/?(?:b|i|u|ul|color[^\]]*)\]", re.I)

# Very common English function words: a line of several words with none of
# these is almost certainly not English (or is gibberish / a spell incantation).
_ENGLISH = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been am
    i you he she it we they me him her us them my your his its our their this that these those
    not no yes do does did have has had will would shall should can could may might must
    what who where when why how there here so all any some one up out about just than then
    thee thou thy thine art hast dost""".split()
)


def normalise(text: str) -> str:
    """Unicode NFC, typographic quotes to ASCII, collapsed whitespace."""
    text = unicodedata.normalize("NFC", text).translate(_QUOTES)
    return _WS.sub(" ", text).strip()


def strip_tags(text: str) -> str:
    """Remove Pango/HTML-like and BBCode-like formatting tags used by several
    games; stage directions like ``<sob>`` become the common ``*sob*`` form."""
    text = _BBCODE.sub("", _PANGO.sub("", text))
    return _EMOTE.sub(lambda m: f"*{m.group(1)}*", text)


def word_count(text: str) -> int:
    return len(text.split())


def is_english(text: str) -> bool:
    """Cheap language check: mostly ASCII letters, and (for longer lines) some
    English function words. Good enough to drop translations and gibberish."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    ascii_ratio = sum(c.isascii() for c in letters) / len(letters)
    if ascii_ratio < 0.9:
        return False
    words = re.findall(r"[a-z']+", text.lower())
    if len(words) < 5:
        return True
    hits = sum(w.strip("'") in _ENGLISH for w in words)
    return hits / len(words) >= 0.08


def clean_text(text: str) -> str | None:
    """Return the normalised line, or None when it fails the corpus rules."""
    text = normalise(strip_tags(text))
    if text.count('"') == 2 and text.startswith('"') and text.endswith('"'):
        text = text[1:-1].strip()  # a whole line in quotes: the quotes add nothing
    n = word_count(text)
    if n < MIN_WORDS or n > MAX_WORDS:
        return None
    if not is_english(text) or _JUNK.search(text):
        return None
    return text


def dedup_key(text: str) -> str:
    """Exact match after normalisation (case and trailing punctuation kept)."""
    return hashlib.sha1(normalise(text).encode()).hexdigest()


def clean_lines(lines: Iterable[Line], seen: set[str] | None = None) -> Iterator[Line]:
    """Clean each record's line (and player line) and drop exact duplicates.

    ``seen`` can be shared across sources so the whole corpus is deduplicated.
    """
    seen = set() if seen is None else seen
    for rec in lines:
        text = clean_text(rec.line)
        if text is None:
            continue
        key = dedup_key(text)
        if key in seen:
            continue
        seen.add(key)
        rec.line = text
        if rec.player_line is not None:
            pl = normalise(strip_tags(rec.player_line))
            rec.player_line = pl or None
        yield rec


def pick(options: Sequence[str], salt: str) -> str:
    """Deterministic 'random' choice (stable across runs and Python versions),
    used to fill template slots with varied but reproducible words."""
    h = int.from_bytes(hashlib.sha1(salt.encode()).digest()[:4], "big")
    return options[h % len(options)]
