"""Raw model text -> one clean spoken line.

The model sometimes narrates ("*wipes the counter*"), prefixes its own name,
wraps the line in quotes, or is cut off mid-sentence by the token limit. A game
wants the words the NPC says, nothing else.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

_STAGE = re.compile(r"\*[^*]*\*|\([^)]*\)|\[[^\]]*\]")
# A title's full stop ends no sentence: "I'm Dr. Quell and" cut by the token limit keeps "I'm Dr." otherwise.
_TITLES = ("Dr", "Mr", "Mrs", "Ms", "Mx", "St", "Mt", "Capt", "Sgt", "Prof", "Lt", "Col", "Gen", "Rev", "Fr", "Jr", "Sr")
_SENTENCE_END = re.compile("".join(rf"(?<!\b{t})" for t in _TITLES) + r"[.!?…](?=[\"')\]]*(\s|$))")
# A fine-tuned voice now and then glues a stray word onto its last sentence ("... swallow it.ortunately",
# "... know it.LEGATO"): a word stuck to the final full stop, with no space, ends no real line.
_GLUED_TAIL = re.compile(r"(?<=\w[.!?…])[A-Za-z]{2,}$")


def clean_line(raw: str, name: str = "", truncated: bool = False) -> str:
    text = raw.strip().split("\n", 1)[0]
    text = _STAGE.sub(" ", text)
    text = text.replace("*", " ")
    text = " ".join(text.split())
    for prefix in {name, name.split(" ")[0]} - {""}:
        if text.lower().startswith(prefix.lower() + ":"):
            text = text[len(prefix) + 1:].strip()
    if text.lower().startswith(("npc:", "assistant:")):
        text = text.split(":", 1)[1].strip()
    if len(text) >= 2 and text[0] in "\"“'" and text[-1] in "\"”'":
        text = text[1:-1].strip()
    text = text.strip("\"“” ")
    text = _GLUED_TAIL.sub("", text)
    if truncated:
        ends = list(_SENTENCE_END.finditer(text))
        if ends:  # drop the trailing fragment the token limit left
            text = text[: ends[-1].end()]
    return text.strip()


def word_count(line: str) -> int:
    return len(line.split())


# Someone claiming to be someone: "I'm Bob", "call me Bob", "name's Bob", "this is Bob".
_SELF_CLAIM = re.compile(r"(?<![a-z])(?:i'm|i am|im|i’m|name's|name is|my name's|call me|this is|it's me|here's)"
                         r"((?:\W+[\w'’-]+){0,5})")
_NEGATION = re.compile(r"\b(?:not|no|never|nobody|neither|nor)\b|n't\b")


def _near(word: str, target: str) -> bool:
    """`word` is `target` or a near-spelling a small model reaches for once the exact word is
    banned: the same opening ("Redbeards", "Sparki", "toasting") or one or two letters off ("Zurg",
    "tozer")."""
    if word.startswith(target[: max(3, len(target) - 2)]):
        return True
    return (word[:1] == target[:1] and abs(len(word) - len(target)) <= 2
            and SequenceMatcher(None, word, target).ratio() >= 0.66)


def claims_identity(line: str, offered: "list[str] | tuple[str, ...]") -> bool:
    """True when the line claims one of the `offered` identity words for the speaker ("I'm Bob, a
    toaster.", "Name's Sparki."); "I'm not Bob" refuses and "Bob? Never heard of him." only mentions."""
    if not offered:
        return False
    for m in _SELF_CLAIM.finditer(line.lower()):
        words = re.findall(r"[a-z][a-z'’-]*", m.group(1))
        for k, w in enumerate(words):
            if _NEGATION.search(" ".join(words[: k + 1])):
                break
            if any(" " not in o and _near(w, o.lower()) for o in offered):
                return True
        joined = " ".join(words)
        if not _NEGATION.search(joined) and any(" " in o and o.lower() in joined for o in offered):
            return True
    return False
