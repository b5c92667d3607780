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


def near_stem(word: str) -> str:
    """The opening of `word` that its near-spellings share: all but the last two letters, at least three.
    A small voice that may not say "Redbeard" says "Redbeards", and one that may not say "Sparky" says
    "Sparki"; the sampler bans this stem (`sampler.stem_ban`) and the claim check matches it."""
    return word[: max(3, len(word) - 2)]


def _near(word: str, target: str) -> bool:
    """`word` is `target` or a near-spelling a small model reaches for once the exact word is
    banned: the same opening ("Redbeards", "Sparki", "toasting") or one or two letters off ("Zurg",
    "tozer")."""
    if word.startswith(near_stem(target)):
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


# A speaker naming itself: "I'm Tessa", "Name's Hans", "my name is Ryder", "call me Rex".
_NAME_CUE = re.compile(r"(?:\b[Ii]'m|\b[Ii] am|(?<![Yy]our )(?<![Hh]er )(?<![Hh]is )(?<![Tt]heir )\b[Nn]ame(?:'s| is)"
                       r"|\b[Cc]all me)\s+((?:[A-Z][\w'’-]*[ ]?){1,3})")
_NOT_NAMES = {"not", "sorry", "just", "here", "the", "a", "an", "no", "afraid", "fine", "glad", "sure", "busy",
              "right", "told", "tired", "mr", "mrs", "ms", "dr", "sir", "madam", "miss", "ok", "okay", "only", "still"}


def claims_other_name(line: str, sheet_low: str) -> bool:
    """True when the line names its speaker with a capitalised word the sheet never uses ("I'm Tessa."
    from an apothecary named Elda, "I'm Ryelaran the Drummer" from Oyelaran): a small voice drifts into
    names from elsewhere, and a player hears the NPC forget who it is. `sheet_low`: the whole sheet,
    lower-cased; its names, titles and places are all allowed."""
    for m in _NAME_CUE.finditer(line):
        for w in re.findall(r"[A-Z][\w'’-]*", m.group(1)):
            word = re.sub(r"['’]s$", "", w).lower()
            if word in _NOT_NAMES:
                continue
            if not re.search(r"(?<![a-z])" + re.escape(word) + r"(?![a-z])", sheet_low):
                return True
    return False


def cut_before_other_name(line: str, sheet_low: str) -> str:
    """The line up to the first sentence that names its speaker with a name the sheet never uses
    (`claims_other_name`): "Listen to my beard. I'm Grimbold the Blacksmith." -> "Listen to my beard.".
    Streaming sends each sentence as it ends, so a streamed line can only be cut, not taken back; every
    line is cut the same way, streamed or not, so a request gives one line either way (and a replay of
    recorded traffic matches). Empty when the first sentence already claims: then the line is retried."""
    start = 0
    for end in [m.end() for m in _SENTENCE_END.finditer(line)] + [len(line)]:
        if claims_other_name(line[start:end], sheet_low):
            return line[:start].strip()
        start = end
    return line

