"""Which of the NPC's facts is the player asking about?

A 135M model reads a persona of several hundred tokens and, asked "how much for a
delivery?", often answers with the wrong fact or none. The fact the player's words
point at is therefore repeated right before the question (see ``prompt.PromptBuilder``),
where a small model looks hardest. Choosing it needs no model: the player's
content words are matched against each fact, rarer words counting more, and a
fact is recalled only when something beyond small talk matches.

A follow-up question ("and how much is it?") names nothing itself: when it matches no
fact, the player's previous line is matched instead (``recall_for_turn``).

Only ``knowledge`` is ever recalled; secrets never reach the prompt at all.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from typing import Sequence

# Words that say nothing about which fact is meant (questions, pronouns, fillers).
_STOP = frozenset("""
a an the and or but if of to in on at by for with from into onto over under about above below
up down out off is are was were be been being am do does did done have has had can could will
would shall should may might must i me my mine you your yours we us our he him his she her it
its they them their this that these those there here what when where which who whom whose why
how any some all no not yes so too very just then than also only still get got go goes going
come tell know say said think want need let please much many more most well really now today
around anything something thing things one ones way like about hey hello hi oh ah okay ok sure
right good bad lot kind
""".split())
_WORD = re.compile(r"[a-z0-9]+")
MAX_RECALLED = 2
# Words that point back at what was said before ("is *it* far?", "how much for *those*?").
_POINTING = frozenset("it its that this those these they them there he she him her one ones".split())
_FOLLOW_OPENERS = ("and ", "so ", "but ", "then ", "what about", "how about")
_REPEAT = frozenset(("again", "repeat"))  # "say that again", "tell me again?"


def _stem(word: str) -> str:
    """Plural and tense endings off, so "flies" meets "fly" and "hunts" meets "hunt"."""
    for suffix, repl in (("ies", "y"), ("ves", "f"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + repl
    return word


def content_terms(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower().replace("'s", "")) if w not in _STOP and len(w) > 1}


def _facts_matching(word: str, index: dict[str, frozenset[int]], ordered: list[str]) -> set[int]:
    """The facts holding `word`, or a word that starts it or that it starts, the shorter of the two
    having four letters or more ("deliver" / "delivery"). Dictionary lookups and one bisection, not a
    scan, so a hostile 1000-character question against 64 long facts costs a few milliseconds."""
    found = set(index.get(word, ()))
    for n in range(4, len(word)):
        found |= index.get(word[:n], frozenset())
    if len(word) >= 4:
        i = bisect.bisect_left(ordered, word)
        while i < len(ordered) and ordered[i].startswith(word):
            found |= index[ordered[i]]
            i += 1
    return found


@functools.lru_cache(maxsize=256)
def _fact_index(knowledge: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, frozenset[int]], list[str]]:
    """The sheet's facts, which facts hold each word, and the words in order; built once per sheet
    (a sheet's knowledge is the same tuple on every turn), not on every line. Every caller shares
    the cached result, so the facts and their sets are immutable."""
    facts = tuple(f for f in knowledge if f.strip())
    index: dict[str, set[int]] = {}
    for i, f in enumerate(facts):
        for t in content_terms(f):
            index.setdefault(t, set()).add(i)
    return facts, {t: frozenset(ids) for t, ids in index.items()}, sorted(index)


def relevant_facts(utterance: str, knowledge: Sequence[str], most: int = MAX_RECALLED) -> list[str]:
    """The facts the utterance asks about, best first; [] when nothing specific matches.

    Score = sum over the utterance's content words found in the fact of log(1 + N/df),
    df being how many of the N facts hold the word, so a word every fact shares counts
    little. A second fact is recalled only when it scores as well as the first."""
    facts, index, ordered = _fact_index(tuple(knowledge))
    asked = content_terms(utterance)
    if not facts or not asked:
        return []
    scores = [0.0] * len(facts)
    for q in asked:
        holders = _facts_matching(q, index, ordered)
        for i in holders:
            scores[i] += math.log(1 + len(facts) / len(holders))
    order = sorted(range(len(facts)), key=lambda i: -scores[i])
    best = scores[order[0]]
    if best <= 0:
        return []
    return [facts[i] for i in order[:most] if scores[i] >= best - 1e-9]


def is_follow_up(utterance: str) -> bool:
    """A short question that points back ("and when does it open?", "is that far?"), or a short
    request to hear it again ("say that again.")."""
    low = utterance.strip().lower()
    words = _WORD.findall(low)
    if not 0 < len(words) <= 12:
        return False
    if any(w in _REPEAT for w in words):
        return True
    return low.endswith("?") and (any(w in _POINTING for w in words) or low.startswith(_FOLLOW_OPENERS))


def recall_for_turn(utterance: str, knowledge: Sequence[str], previous: str = "",
                    most: int = MAX_RECALLED) -> list[str]:
    """``relevant_facts`` of this turn; for a follow-up question that matches nothing itself, of
    the player's previous line. Small talk after a question ("thanks!") recalls nothing."""
    found = relevant_facts(utterance, knowledge, most)
    if found or not previous or not is_follow_up(utterance):
        return found
    return relevant_facts(previous, knowledge, most)
