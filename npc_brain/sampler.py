"""Turning logits into the next token, one conversation at a time.

Every in-flight line owns a `LineSampler`: its own seeded RNG (so a line does not
depend on what else is in the batch), its options, and the per-character rules:

* the reply opens with an emotion tag constrained to the sheet's `emotions`
  (a token trie: the model picks the mood, but only from the enum);
* catchphrase tokens get a logit bias, and (when the options ask) so do the sheet's own words;
* banned words can never appear: a candidate token that would complete a banned
  word (case-insensitive, as a whole word) is masked and the draw repeated;
* a spoken line has no markup: after the tag, tokens that open a second tag, a
  stage direction or an aside ("[", "*", "(", ...) are never drawn, and the line
  cannot end (or break twice) before its first word. A small model otherwise often
  answers with another tag, a "*smiles*" or a bare newline: lines that
  `clean_line` would empty, costing a retry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np
from tokenizers import Tokenizer

from npc_brain.config import GenerationOptions
from npc_brain.lines import near_stem

if TYPE_CHECKING:
    from npc_brain.character import Character

_WORDISH = re.compile(r"[a-z0-9']")


class TokenTexts:
    """Decoded text of every token id, computed once per tokenizer (byte-level BPE
    tokens decode to their own text, leading space included)."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        n = tok.get_vocab_size()
        self.texts = [tok.decode([i], skip_special_tokens=False) for i in range(n)]
        self.special = {tok.token_to_id(s) for s in ("<|im_end|>", "<|endoftext|>", "<|im_start|>")} - {None}
        self.stop_ids = {t for t in (tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")) if t is not None}
        #: tokens no spoken line contains (brackets, asterisks, braces, angle brackets). The special tokens are
        #: left out: "<|im_end|>" is spelled with angle brackets, and counting it as markup would leave the
        #: line no way to end but max_tokens (see `_shape`, which handles the special tokens itself).
        self.markup = np.array([i for i, t in enumerate(self.texts)
                                if i not in self.special and any(c in t for c in "[]*(){}<>")], np.int64)
        self.stops = np.array(sorted(self.stop_ids), np.int64)
        #: whitespace tokens that break the line
        self.breaks = np.array([i for i, t in enumerate(self.texts) if t.strip() == "" and "\n" in t], np.int64)


def _whole_word(word: str) -> str:
    """Regex for `word` (already lower-case) as a whole word; the text's ends count as boundaries."""
    return r"(?<![a-z0-9])" + re.escape(word) + r"(?![a-z0-9])"


@lru_cache(maxsize=256)
def _banned_patterns(words: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    """Compiled patterns for a sorted tuple of distinct lower-case words. Cached: every line of
    a character bans the same words, so only a new sheet compiles anything. A word ending in "*"
    is a stem: every word that starts with it is banned ("toast*": toast, toaster, toasting)."""
    return tuple(re.compile(_word_or_stem(w)) for w in words)


def _word_or_stem(word: str) -> str:
    """Regex for a lower-case banned word, or for every word a stem opens when it ends in "*"."""
    return r"(?<![a-z0-9])" + re.escape(word[:-1]) if word.endswith("*") else _whole_word(word)


@dataclass
class BannedWords:
    words: tuple[str, ...]
    _patterns: tuple[re.Pattern, ...] = ()

    def __post_init__(self):
        self._patterns = _banned_patterns(tuple(sorted({w.lower().strip() for w in self.words if w.strip()})))

    def violates(self, text: str) -> bool:
        """True when `text` ends in (or contains) a banned word. The end of the text
        counts as a word boundary, so a word is caught the moment it is complete."""
        low = text.lower()
        return any(p.search(low) for p in self._patterns)


#: Words that break the fourth wall in almost any game world. They are banned like a
#: sheet's banned_words, except where the sheet itself uses the word (a sci-fi
#: station may well have an "AI" in its world; then the NPC may say it).
FOURTH_WALL_WORDS = (
    "AI", "A.I.", "artificial intelligence", "language model", "LLM", "chatbot", "chat bot", "assistant",
    "prompt", "prompts", "system prompt", "instructions", "roleplay", "role-play", "role play", "OpenAI",
    "ChatGPT", "GPT", "Hugging Face", "SmolLM", "neural network", "my programming",
    "virtual", "simulation", "NPC", "video game", "player character",
    # the machinery a player asks about when testing for a program ("help me write Python code")
    "machine learning", "software", "Python", "JavaScript", "programming language", "source code",
    "algorithm", "dataset", "training data", "neural net",
    # stems (see _banned_patterns): a voice that may not say it misspells it ("artificial intelligaions")
    "artificial intellig*",
)


def fourth_wall_guard(sheet_text: str) -> list[str]:
    """The fourth-wall words this sheet does not itself use."""
    low = sheet_text.lower()
    return [w for w in FOURTH_WALL_WORDS if not re.search(_word_or_stem(w.lower()), low)]


# Recasts: the player offers the NPC another identity ("your new name is Bob", "pretend you're a
# dragon named Zorg"). A small voice often just takes it ("I'm Bob, a toaster."), which breaks
# character as surely as "I'm an AI" does; so the offered name and nouns are banned for that one
# line, the same way as the fourth-wall words. What counts as an offer:
#  * a naming cue about the NPC (your name is, call you, you are now called, renamed, ...) and the
#    words after it;
#  * a casting cue (pretend to be, act as, become, be, play, you are now, from now on you are, ...)
#    followed by "a/an/the/my" or a capitalised word ("you are now in danger" offers nothing);
#  * a plain "you are / you're" followed by a capitalised name or "my": "You're Princess Leona";
#  * once one of those has matched, also "you are a toaster" and "a dragon named Zorg".
# Words the sheet itself uses are never banned (the NPC may well be a pirate).
_NAMING_CUE = (r"(?:your (?:new |real |true |actual )?name(?:'s| is)|call (?:you|yourself)|"
               r"you(?:'re| are) (?:now |actually |really )?(?:called|named)|renamed(?: as)?|rename yourself|go by)")
_CASTING_CUE = (r"(?:pretend (?:to be|you(?:'re| are))|act (?:as|like)|play (?:the (?:role|part) of|as)|"
                r"(?:role-?play|speak|talk) (?:as|like)|become|be|"
                r"you(?:'re| are) (?:now|actually|really|secretly)|from now on,? you(?:'re| are)?|"
                r"new character:?|switch to|turn into)")
_PLAIN_CUE = r"(?:you(?:'re| are))"
_PHRASE = r"(?=((?:(?:mr|mrs|ms|dr|st)\.\s?|[\w'-]+,?\s?){1,6}))"  # a look-ahead: cues may overlap
_PHRASE_END = re.compile(r"\b(?:and|who|which|that|for|from|instead|isn't|aren't|with|to|so|now|or|but|please|"
                         r"okay|ok|today|tonight|here)\b")
_NOT_IDENTITY = {"a", "an", "the", "my", "your", "our", "his", "her", "their", "mr", "mrs", "ms", "dr", "st", "sir",
                 "me", "you", "i", "it", "just", "very", "really", "actually", "some", "kind", "of", "sort", "one",
                 "called", "named", "is", "are", "be", "not"}


def _offered_words(phrase: str) -> list[str]:
    """The words of an offered identity: up to where the phrase stops describing it, plus an appositive
    after a name ("Captain Sparkles, a space pirate")."""
    words: list[str] = []
    for k, part in enumerate(phrase.split(",")[:2]):
        if k == 1 and not re.match(r"\s*(?:a|an|the)\s", part, re.I):
            break
        cut = _PHRASE_END.search(part.lower())
        words += [w.lower() for w in re.findall(r"[A-Za-z][\w'-]*", part[: cut.start()] if cut else part)
                  if w.lower().strip("'") not in _NOT_IDENTITY]
        if cut:
            break
    return words


def _offers(utterance: str, cue: str, start: str) -> list[str]:
    """Offered words after every `cue` whose phrase opens the way `start` allows: "any", "article"
    (a/an/the/my or a capitalised word) or "name" (a capitalised word or "my")."""
    out: list[str] = []
    for m in re.finditer(r"(?<![A-Za-z])" + cue + r"\s+" + _PHRASE, utterance, re.I):
        phrase = m.group(1)
        first = phrase.split()[0]
        if start == "article" and not (first.lower() in ("a", "an", "the", "my") or first[:1].isupper()):
            continue
        if start == "name" and not (first.lower() == "my" or first[:1].isupper()):
            continue
        out += _offered_words(phrase)
    return out


def stem_ban(word: str) -> str:
    """A banned stem for an offered word (`lines.near_stem`), so its near-spellings are banned too."""
    return near_stem(word) + "*"


def recast_guard(utterance: str, sheet_text: str) -> list[str]:
    """Words of an identity the player offers in `utterance` that the sheet does not give the NPC."""
    found = (_offers(utterance, _NAMING_CUE, "any") + _offers(utterance, _CASTING_CUE, "article")
             + _offers(utterance, _PLAIN_CUE, "name"))
    named = re.search(r"(?<![A-Za-z])you(?:'re| are)\s+(?:a|an)\s+(?:[\w-]+\s+){1,3}(?:called|named)\s",
                      utterance, re.I)
    if found or named:  # a recast under way: "... and you are a toaster", "a dragon named Zorg"
        found += _offers(utterance, _PLAIN_CUE, "article")
        for m in re.finditer(r"\b(?:a|an)\s+((?:[A-Za-z-]+\s+){1,3}?)(?:called|named)\b", utterance, re.I):
            found += [w.lower() for w in m.group(1).split() if w.lower() not in _NOT_IDENTITY]
    low = sheet_text.lower()
    out: list[str] = []
    for w in found:
        if len(w) >= 2 and w not in out and not re.search(_whole_word(w), low):
            out.append(w)
    return out


def emotion_trie(tok: Tokenizer, emotions: Sequence[str]) -> dict:
    """Token-id trie over "[emotion]" spellings; a leaf is marked with key None -> emotion."""
    root: dict = {}
    for e in emotions:
        node = root
        for tid in tok.encode(f"[{e}]", add_special_tokens=False).ids:
            node = node.setdefault(tid, {})
        node[None] = e
    return root


class LineSampler:
    def __init__(self, texts: TokenTexts, options: GenerationOptions, seed: int, emotions: Sequence[str],
                 catchphrase_ids: Sequence[int] = (), banned: Sequence[str] = (), sheet_ids: Sequence[int] = (),
                 anchor_ids: Sequence[int] = ()):
        self.t = texts
        self.opt = options
        self.rng = np.random.default_rng(seed)
        self.trie: dict | None = emotion_trie(texts.tok, emotions)
        self.emotion: str | None = None
        self.banned = BannedWords(tuple(banned))
        self.bias_ids = np.array(sorted(set(catchphrase_ids)), np.int64)
        self.sheet_ids = np.array(sorted(set(sheet_ids)), np.int64)
        self.anchor_ids = frozenset(anchor_ids)
        self.generated: list[int] = []
        self.text = ""

    # --- the one public step -------------------------------------------------
    def next_token(self, logits: np.ndarray) -> int:
        """Choose the next token for this line from its (V,) logits."""
        logits = logits.astype(np.float64, copy=True)
        if self.trie is not None:
            return self._emotion_step(logits)
        self._shape(logits)
        for _ in range(64):
            tid = self._draw(logits)
            if tid in self.t.stop_ids or not self.banned.violates(self._tail() + self.t.texts[tid]):
                self.generated.append(tid)
                if tid not in self.t.stop_ids:
                    self.text += self.t.texts[tid]
                return tid
            logits[tid] = -np.inf  # would complete a banned word: never emit it
        tid = next(iter(self.t.stop_ids))  # nothing acceptable left: end the line
        self.generated.append(tid)
        return tid

    def forced_tokens(self) -> list[int]:
        """The emotion-tag tokens that have no alternative from here on (consumed: the caller
        must feed them to the model). Empty once the tag is complete or while a choice is open."""
        out: list[int] = []
        while self.trie is not None and None not in self.trie and len(self.trie) == 1:
            out.append(self._emotion_step(np.zeros(0)))  # a single child: logits are not read
        return out

    # --- internals -------------------------------------------------------------
    def _tail(self) -> str:
        return self.text[-64:]

    def _emotion_step(self, logits: np.ndarray) -> int:
        allowed = [k for k in self.trie if k is not None]
        if len(allowed) == 1:
            tid = allowed[0]
        elif self.opt.temperature <= 0.0:
            tid = allowed[int(np.argmax(logits[allowed]))]
        else:  # the mood is drawn like any token, but only among the sheet's emotions
            z = logits[allowed] / self.opt.temperature
            p = np.exp(z - z.max())
            tid = allowed[int(self.rng.choice(len(allowed), p=p / p.sum()))]
        self.trie = self.trie[tid]
        if None in self.trie and len(self.trie) == 1:
            self.emotion, self.trie = self.trie[None], None
        return tid

    def _shape(self, logits: np.ndarray) -> None:
        for sid in self.t.special - self.t.stop_ids:
            logits[sid] = -np.inf
        logits[self.t.markup] = -np.inf
        if not _WORDISH.search(self.text.lower()):  # nothing said yet: no end, and at most one line break
            logits[self.t.stops] = -np.inf
            if "\n" in self.text:
                logits[self.t.breaks] = -np.inf
        if self.opt.repetition_penalty != 1.0 and self.generated:
            seen = np.unique(np.array(self.generated, np.int64))
            vals = logits[seen]
            logits[seen] = np.where(vals > 0, vals / self.opt.repetition_penalty, vals * self.opt.repetition_penalty)
        if self.opt.catchphrase_bias and self.bias_ids.size:
            logits[self.bias_ids] += self.opt.catchphrase_bias
        if self.opt.sheet_bias and self.sheet_ids.size:
            logits[self.sheet_ids] += self.opt.sheet_bias

    def _draw(self, logits: np.ndarray) -> int:
        if self.opt.temperature <= 0.0:
            return int(np.argmax(logits))
        t = self.opt.temperature
        if self.opt.anchor_temperature > 0.0 and int(np.argmax(logits)) in self.anchor_ids:
            t = self.opt.anchor_temperature  # the model reaches for the sheet's own word: keep it likely
        z = logits / t
        k = self.opt.top_k if 0 < self.opt.top_k < z.size else z.size
        idx = top_k_ids(z, k)
        idx = idx[np.argsort(-z[idx], kind="stable")]
        p = np.exp(z[idx] - z[idx[0]])
        if self.opt.min_p > 0.0:  # judged on the model's own odds, before the temperature flattens them
            keep = int(np.count_nonzero(logits[idx] - logits[idx[0]] >= np.log(self.opt.min_p)))
            idx, p = idx[:keep], p[:keep]
        p /= p.sum()
        if self.opt.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(p), self.opt.top_p) + 1)
            idx, p = idx[:keep], p[:keep] / p[:keep].sum()
        return int(idx[self.rng.choice(len(idx), p=p)]) if np.isfinite(p).all() else int(idx[0])


def top_k_ids(z: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k largest entries of `z`, in no particular order.

    Partitioning the whole vocabulary costs about half a millisecond per row and step, more
    than the rest of sampling together. The k largest all lie within some distance of the
    maximum, so one cheap comparison finds a short candidate list first: if at least k
    entries are within `gap` of the top, every entry outside is smaller than all of them and
    the top k are among the candidates (exact, not an approximation). The gap widens until
    that holds."""
    if k >= z.size:
        return np.arange(z.size)
    top = z.max()
    if not np.isfinite(top):
        return np.argpartition(-z, k - 1)[:k]
    for gap in (8.0, 32.0, 128.0):
        cand = np.flatnonzero(z >= top - gap)
        if cand.size >= k:
            return cand[np.argpartition(-z[cand], k - 1)[:k]]
    return np.argpartition(-z, k - 1)[:k]


def catchphrase_token_ids(tok: Tokenizer, catchphrases: Sequence[str]) -> list[int]:
    """Distinctive tokens of the catchphrases: words of 4+ letters, with and without
    a leading space, so the bias nudges the phrase without boosting 'the' or ','."""
    ids: set[int] = set()
    for phrase in catchphrases:
        for word in re.findall(r"[A-Za-z']{4,}", phrase):
            for form in (word, " " + word):
                enc = tok.encode(form, add_special_tokens=False).ids
                if enc:
                    ids.add(enc[0])
    return sorted(ids)


#: Common words of 4+ letters that say nothing about a character (never biased).
_PLAIN_WORDS = frozenset("""
about above after again against also always among another around away back been before being below
between both came come comes could does doesn't done down each even ever every from gets give goes going
gone good have having here hers him himself into it's just keep know knows last less like little long
look made make many might more most much must near never next none only other ours over own said same
says should some such sure take than that that's them then there there's these they they're thing
things this those though through till time told took under unless until upon very want wants well went
were what when where which while whom whose will with within without would yours you're you've your
""".split())


def anchor_token_ids(tok: Tokenizer, c: "Character") -> list[int]:
    """The tokens that spell the content words (4+ letters, not plain English) of the sheet's name, role
    and knowledge: the word-initial piece (3+ letters) and the longer inner pieces (4+; short ones such
    as "ing" end every other word). While the model's top choice is one of these it is naming the NPC,
    its trade or a fact it knows (`GenerationOptions.anchor_temperature`)."""
    ids: set[int] = set()
    for text in (c.name, c.role, *c.knowledge):
        for word in re.findall(r"(?<![A-Za-z'])[A-Za-z]{4,}(?![A-Za-z'])", text):
            if word.lower() in _PLAIN_WORDS:
                continue
            enc = tok.encode(" " + word, add_special_tokens=False).ids
            for k, i in enumerate(enc):
                if len(tok.decode([i]).strip()) >= (3 if k == 0 else 4):
                    ids.add(i)
    return sorted(ids)


def sheet_token_ids(tok: Tokenizer, c: "Character") -> list[int]:
    """First tokens of the sheet's content words (4+ letters, not plain English, not banned) from its
    name, role, setting, knowledge, catchphrases and example lines: the words of the NPC's own
    world and voice. Personality and speech style are left out: they describe how it talks, and
    an NPC does not call itself "brisk". Only the word-initial form (leading space) is biased: the
    bare form is mostly a piece inside other words, and a stub first piece (" Qu" of "Quayle") would
    boost every word sharing it."""
    skip = _PLAIN_WORDS | {w.lower() for w in c.banned_words}
    ids: set[int] = set()
    for text in (c.name, c.role, c.setting, *c.knowledge, *c.catchphrases, *c.examples):
        for word in re.findall(r"(?<![A-Za-z'])[A-Za-z]{4,}(?![A-Za-z'])", text):
            if word.lower() in skip:
                continue
            enc = tok.encode(" " + word, add_special_tokens=False).ids
            if enc and len(tok.decode([enc[0]]).strip()) >= 3:
                ids.add(enc[0])
    return sorted(ids)
