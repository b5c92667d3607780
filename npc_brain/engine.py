"""request -> prompt -> generate -> reply, with slots that can be batched.

A `Slot` is one line being generated (llama.cpp's server calls it the same):
its prompt, its sampler, its KV cache row and its timings. The engine can

* `start(request)`  : build the prompt, reuse or compute the persona prefix KV,
                      prefill the turn and pick the first token;
* `step(slots)`     : one batched decode step for any set of running slots
                      (conversations of different lengths share each weight read);
* `finish(slot)`    : turn the generated text into a `Reply`.

`generate()` runs one request start to finish; the daemon drives `step()` itself
so new requests can join between steps.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from npc_brain.bundle import Bundle
from npc_brain.character import Character, sheet_text_lower
from npc_brain.config import LIMITS, GenerationOptions
from npc_brain.lines import claims_identity, claims_other_name, clean_line, cut_before_other_name
from npc_brain.lm import KV, KVPool, LanguageModel
from npc_brain.prompt import NOTE_LABELS, PromptBuilder, PromptError, Turn, load_tokenizer, turn_identity
from npc_brain.sampler import (LineSampler, TokenTexts, anchor_token_ids, catchphrase_token_ids, fourth_wall_guard,
                               recast_guard, sheet_token_ids, stem_ban)

if TYPE_CHECKING:  # OCR is an optional extra: imported when first used
    from npc_brain.screen_text import TextReader


def acceptable(line: str, utterance: str, offered: Sequence[str] = (), sheet_low: str = "") -> bool:
    """A line worth sending: has words, is not the player's own words echoed back, does not take an
    identity the player offered ("I'm Bob" after "your name is Bob now"), and, given the sheet's text
    (lower-case), does not name its speaker with a name from elsewhere ("I'm Tessa" from Elda)."""
    def norm(t: str) -> str:
        return " ".join(re.findall(r"[a-z0-9']+", t.lower()))

    return (bool(norm(line)) and norm(line) != norm(utterance) and not claims_identity(line, offered)
            and not (sheet_low and claims_other_name(line, sheet_low)))


def retry_options(opts: GenerationOptions) -> GenerationOptions:
    """Options for another try at an unacceptable line: the next seed, and some temperature if the
    first try was greedy (a greedy retry would say the same line again)."""
    return opts if opts.temperature > 0 else replace(opts, temperature=0.7)


def fallback_line(c: Character) -> str:
    """What an NPC says when the model produced nothing sayable: its own words beat silence."""
    return c.first_line or (c.examples[0] if c.examples else "...")


@dataclass(frozen=True)
class LineRequest:
    character: Character
    utterance: str
    scene: Mapping[str, Any] = field(default_factory=dict)
    history: Sequence[Turn] = ()
    seed: int | None = None
    options: GenerationOptions | None = None


@dataclass
class Reply:
    line: str
    emotion: str
    scene: dict[str, Any]
    seed: int
    tokens: int
    timings: dict[str, float]


_SERIALS = itertools.count()


@dataclass
class Slot:
    request: LineRequest
    seed: int
    sampler: LineSampler
    kv: KV
    last_token: int
    n_prompt: int
    done: bool = False
    truncated: bool = False
    t_start: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    serial: int = field(default_factory=lambda: next(_SERIALS))  # identity that is never reused
    offered: tuple[str, ...] = ()  # an identity the player offers in this utterance, never to be taken


class PrefixCache:
    """LRU of prompt-prefix KV caches, bounded in bytes: personas keyed by (bundle, sheet
    hash), and conversation histories keyed by what they hold (see `Engine.start`)."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[KV, list[int]]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: str) -> tuple[KV, list[int]] | None:
        item = self.peek(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item

    def peek(self, key: str) -> tuple[KV, list[int]] | None:
        """Look without counting a hit or a miss."""
        return self._items.get(key)

    def put(self, key: str, kv: KV, ids: list[int]) -> None:
        self._items[key] = (kv, ids)
        self._items.move_to_end(key)
        while len(self._items) > 1 and sum(v[0].nbytes for v in self._items.values()) > self.max_bytes:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self), "hits": self.hits, "misses": self.misses,
                "bytes": sum(v[0].nbytes for v in self._items.values())}



class Engine:
    def __init__(self, bundle: Bundle, threads: int | None = None, providers: list[str] | None = None,
                 persona_cache_bytes: int = 512 * 1024 * 1024, history_cache_bytes: int = 256 * 1024 * 1024,
                 deterministic: bool = False):
        self.bundle = bundle
        # Batched decode shares each weight read across NPCs, but CPU GEMM kernels may
        # round a row differently depending on its neighbours, and a 1e-5 logit change
        # can flip a sampled token. Deterministic mode decodes every slot on its own:
        # the same line whatever else runs, at the cost of batching's throughput.
        self.deterministic = deterministic
        self.tokenizer = load_tokenizer(bundle.tokenizer_path)
        self.prompts = PromptBuilder(self.tokenizer)
        self.texts = TokenTexts(self.tokenizer)
        threads = threads or max(1, min(os.cpu_count() or 1, 4))
        self.lm = LanguageModel(bundle.lm_path("prefill"), bundle.lm_path("decode"), threads, providers)
        self.defaults = GenerationOptions().validated(bundle.manifest.get("generation_defaults"))
        self.persona_cache = PrefixCache(persona_cache_bytes)
        self.history_cache = PrefixCache(history_cache_bytes)  # KV of history chunks, after their persona
        self._scene_reader = None
        self._text_reader = None  # OCR, created on the first screenshot that asks for it
        self._see_lock = threading.Lock()
        self._guards: dict[str, list[str]] = {}
        self._texts: dict[str, str] = {}
        self._sheet_ids: dict[str, list[int]] = {}
        self._anchor_ids: dict[str, list[int]] = {}
        self._pool = KVPool()  # the caches of the slots that `step` is running
        self._pooled: dict[int, Slot] = {}  # those slots, by serial

    def see(self, image: bytes, fmt: str = "auto", width: int | None = None, height: int | None = None,
            engine_tags: Mapping[str, Any] | None = None, read_text: bool = False) -> dict[str, Any]:
        """Screenshot -> scene facts, merged with the game's own tags (the game wins).
        With `read_text`, short on-screen text (signs, banners) joins them as the `text` tag (OCR,
        ~300 ms; raises screen_text.TextReaderUnavailable without the ocr extra).
        Raises vision.ImageError for bad images; without a vision model, only the tags count.
        Safe to call from a second thread while the first decodes."""
        from npc_brain.scene import merge_scene
        from npc_brain.vision import SceneReader, decode_screenshot

        pixels = decode_screenshot(image, fmt, width, height)
        seen: dict[str, Any] = {}
        with self._see_lock:  # the readers are created once, whichever thread asks first
            if self.bundle.vision_dir is not None and self._scene_reader is None:
                self._scene_reader = SceneReader(self.bundle.vision_dir, threads=1)
        if self._scene_reader is not None:
            seen = self._scene_reader.read(pixels)
        if read_text:
            texts = self.text_reader().read(pixels)
            if texts:
                seen["text"] = texts
        return merge_scene(seen, engine_tags)

    def text_reader(self) -> TextReader:
        """The OCR reader, created (models loaded, ~0.3 s) on first use; raises TextReaderUnavailable."""
        with self._see_lock:
            if self._text_reader is None:
                from npc_brain.screen_text import TextReader

                self._text_reader = TextReader(threads=1)
            return self._text_reader

    @classmethod
    def load(cls, path: Path | str, **kw) -> "Engine":
        return cls(Bundle.open(path), **kw)

    @staticmethod
    def _per_sheet(cache: dict, c: Character, make: Callable[[], Any]) -> Any:
        """`make()` once per sheet (a bounded cache keyed by the sheet's hash): scans of a sheet are not free."""
        key = c.sheet_hash()
        if key not in cache:
            cache[key] = make()
            if len(cache) > 4096:
                cache.pop(next(iter(cache)))
        return cache[key]

    def sheet_text(self, c: Character) -> str:
        """The whole sheet as text, lower-case, for the guards' "does the sheet itself use this word?"."""
        return self._per_sheet(self._texts, c, lambda: sheet_text_lower(c))

    def guard_words(self, c: Character) -> list[str]:
        """Fourth-wall words banned for this NPC."""
        return self._per_sheet(self._guards, c, lambda: fourth_wall_guard(self.sheet_text(c)))

    def offered_identity(self, c: Character, utterance: str, opts: GenerationOptions,
                         history: Sequence[Turn] = ()) -> tuple[str, ...]:
        """Words of another identity the player offers this NPC (sampler.recast_guard), in this utterance
        or an earlier one of the conversation: "your name is Bob now", then "so, who are you?"."""
        if not opts.recast_guard:
            return ()
        shown = history[-2 * LIMITS.history_exchanges_in_prompt:]  # about what the prompt shows
        said = [utterance] + [t.text for t in shown if t.speaker == "player"]
        return tuple(dict.fromkeys(w for text in said for w in recast_guard(text, self.sheet_text(c))))

    def banned_words(self, c: Character, utterance: str, opts: GenerationOptions,
                     history: Sequence[Turn] = ()) -> list[str]:
        """What this line may not say: the sheet's banned words, the fourth-wall words, and any identity
        the player has offered ("your name is Bob now"), near-spellings too."""
        return self._banned(c, self.offered_identity(c, utterance, opts, history))

    def _banned(self, c: Character, offered: Sequence[str]) -> list[str]:
        return list(c.banned_words) + self.guard_words(c) + list(NOTE_LABELS) + [stem_ban(w) for w in offered]

    def anchor_words(self, c: Character) -> list[int]:
        """Token ids of the sheet's own words, drawn at the anchor temperature when the model's top pick."""
        return self._per_sheet(self._anchor_ids, c, lambda: anchor_token_ids(self.tokenizer, c))

    def sheet_words(self, c: Character) -> list[int]:
        """Token ids the sheet bias favours for this NPC."""
        return self._per_sheet(self._sheet_ids, c, lambda: sheet_token_ids(self.tokenizer, c))

    # --- prompt + prefill ----------------------------------------------------
    def _persona_key(self, c: Character) -> str:
        """What the persona prefix's KV depends on: the bundle (its weights) and the sheet."""
        return f"{self.bundle.bundle_id}:{c.sheet_hash()}"

    def persona(self, c: Character) -> tuple[KV, list[int]]:
        """The persona prefix's KV cache and token ids (cache hits and misses are counted there).
        The cached KV is shared: copy it before running anything on top of it."""
        key = self._persona_key(c)
        hit = self.persona_cache.get(key)
        if hit is not None:
            return hit
        ids = self.prompts.persona_ids(c)
        _, kv = self.lm.forward(np.array([ids], np.int64), self.lm.empty(capacity=len(ids)))
        self.persona_cache.put(key, kv, ids)
        return kv, ids

    def _history_onto(self, row: KV, persona_key: str, chunks: list[list[int]]) -> None:
        """Put the history's KV into `row` (which holds the persona): the longest run of leading
        chunks whose state is cached is copied in, the rest is prefilled chunk by chunk, and
        the state after the last chunk is cached for the conversation's next turn.

        Every chunk is always prefilled on its own, on top of the same prefix, so a copied state
        is bit for bit what prefilling would give: a line does not depend on what is cached."""
        if not chunks:
            return
        keys, h = [], hashlib.sha256(persona_key.encode())
        for chunk in chunks:
            h.update(np.asarray(chunk, np.int32).tobytes() + b"|")
            keys.append(h.hexdigest())
        done = next((j for j in range(len(chunks), 0, -1) if self.history_cache.peek(keys[j - 1])), 0)
        start = int(row.lengths[0])
        if done:
            row.extend(self.history_cache.get(keys[done - 1])[0])
        else:
            self.history_cache.misses += 1
        for chunk in chunks[done:]:
            self.lm.forward(np.array([chunk], np.int64), row)
        if done < len(chunks):
            self.history_cache.put(keys[-1], row.span(start, int(row.lengths[0])), [])

    def prefill_history(self, c: Character, history: Sequence[Turn]) -> None:
        """Compute and cache the KV state of the exchanges the next turn of this conversation will
        show, so that turn prefills only its own words. The daemon calls it while idle, after a line:
        a game's player reads the line and answers seconds later, and the exchange just finished would
        otherwise be prefilled then, in the answer's time. The same computation either way (each
        chunk on its own, on the same prefix), so lines do not change."""
        chunks = self.prompts.history_chunks(history)
        if not chunks:
            return
        kv, _ = self.persona(c)
        row = kv.copy(kv.length + sum(map(len, chunks)) + 1)
        self._history_onto(row, self._persona_key(c), chunks)

    def start(self, req: LineRequest) -> Slot:
        t0 = time.perf_counter()
        from npc_brain.scene import merge_scene, scene_to_text

        opts = req.options or self.defaults
        c = req.character
        chunks = self.prompts.history_chunks(req.history)
        scene = merge_scene(None, req.scene or {})  # sanitised ("NIGHT" -> night) for the note's choice too
        # who the NPC is, unless the scene gives the line something to react to (see GenerationOptions)
        identity = turn_identity(c, scene) if opts.identity_note else ""
        current = self.prompts.current_ids(req.utterance, scene_to_text(scene), c.knowledge, req.history, identity)
        kv, persona_ids = self.persona(c)
        n_prompt = len(persona_ids) + sum(map(len, chunks)) + len(current)
        if n_prompt > LIMITS.max_prompt_tokens:
            raise PromptError(f"prompt is {n_prompt} tokens; the limit is "
                              f"{LIMITS.max_prompt_tokens}: shorten the sheet or the history")
        t1 = time.perf_counter()
        # The persona goes straight into a row of the running batch's pool, with room for the whole
        # line (and its emotion tag): the turn's prefill writes there and decoding never re-allocates.
        serial = next(_SERIALS)
        kv = self._pool.reserve(serial, kv, n_prompt + opts.max_tokens + 16)
        self._history_onto(kv, self._persona_key(c), chunks)
        seed = req.seed if req.seed is not None else int.from_bytes(os.urandom(4), "little")
        offered = self.offered_identity(c, req.utterance, opts, req.history)
        sampler = LineSampler(self.texts, opts, seed, c.emotions,
                              catchphrase_token_ids(self.tokenizer, c.catchphrases),
                              self._banned(c, offered),
                              self.sheet_words(c) if opts.sheet_bias else (),
                              self.anchor_words(c) if opts.anchor_temperature else ())
        # The emotion tag's tokens that have no alternative ("[", the rest of a mood word once its
        # first piece is drawn) ride along with a forward pass that runs anyway, instead of costing
        # one decode step each: the first spoken word arrives two or three steps sooner.
        logits, kv = self.lm.forward(np.array([current + sampler.forced_tokens()], np.int64), kv)
        first = sampler.next_token(logits[0])
        tail = sampler.forced_tokens()
        if tail:
            logits, kv = self.lm.forward(np.array([[first] + tail], np.int64), kv)
            first = sampler.next_token(logits[0])
        t2 = time.perf_counter()
        slot = Slot(req, seed, sampler, kv, first, n_prompt, t_start=t0, serial=serial, offered=offered)
        self._pooled[serial] = slot
        slot.timings = {"persona_ms": (t1 - t0) * 1000, "prefill_ms": (t2 - t1) * 1000, "first_token_ms": (t2 - t0) * 1000}
        return slot

    # --- decode ----------------------------------------------------------------
    def _should_stop(self, slot: Slot, tid: int) -> bool:
        s = slot.sampler
        if tid in self.texts.stop_ids:
            return True
        if s.emotion is not None and "\n" in s.text.lstrip():
            return True
        opts = slot.request.options or self.defaults
        if len(s.generated) >= opts.max_tokens:
            slot.truncated = True
            return True
        return False

    def step(self, slots: Sequence[Slot]) -> None:
        """Advance every running slot by one token in a single batched forward pass."""
        live = [s for s in slots if not s.done]
        for s in live:  # the token chosen last step may already end the line
            if s.sampler.trie is None and self._should_stop(s, s.last_token):
                s.done = True
        live = [s for s in live if not s.done]
        # Every running slot's cache is a row of one pool, so a batch is a free view and a
        # slot joining or leaving moves one row, not the whole batch.
        by_serial = {s.serial: s for s in live}
        for gone in [i for i in self._pool.ids if i not in by_serial]:
            slot = self._pooled.pop(gone, None)
            if slot is not None and not slot.done:  # paused, not finished (a caller stepping another set): keep its cache
                slot.kv = slot.kv.copy(slot.kv.capacity)
        self._pooled.update(by_serial)
        kv, order = self._pool.place({s.serial: s.kv for s in live})
        if not live:
            return
        rows = [by_serial[i] for i in order]
        for b, s in enumerate(rows):
            s.kv = kv.row(b)  # views: a step on the row writes into the pool
        if self.deterministic or len(rows) == 1:
            for s in rows:  # one row: the batch view itself, whose buffers stay bound from step to step
                view = kv if len(rows) == 1 else s.kv
                logits, _ = self.lm.forward(np.array([[s.last_token]], np.int64), view, decode=True)
                s.last_token = s.sampler.next_token(logits[0])
            return
        logits, _ = self.lm.forward(np.array([[s.last_token] for s in rows], np.int64), kv, decode=True)
        for b, s in enumerate(rows):
            s.last_token = s.sampler.next_token(logits[b])

    def finish(self, slot: Slot) -> Reply:
        s = slot.sampler
        c = slot.request.character
        line = cut_before_other_name(clean_line(s.text, c.name, truncated=slot.truncated), self.sheet_text(c))
        total = (time.perf_counter() - slot.t_start) * 1000
        timings = dict(slot.timings, decode_ms=total - slot.timings["first_token_ms"], total_ms=total)
        return Reply(line, s.emotion or (c.emotions[0] if c.emotions else "neutral"),
                     dict(slot.request.scene or {}), slot.seed, len(s.generated), timings)

    def run(self, slots: Sequence[Slot]) -> None:
        while any(not s.done for s in slots):
            self.step(slots)

    def generate(self, req: LineRequest) -> Reply:
        return self.generate_many([req])[0]

    def generate_many(self, reqs: Sequence[LineRequest]) -> list[Reply]:
        """Several lines in one batch; each is the same as if generated alone (same seed)."""
        slots = [self.start(r) for r in reqs]
        self.run(slots)
        replies = [self.finish(s) for s in slots]
        for i, (r, rep, slot) in enumerate(zip(reqs, replies, slots)):
            sheet_low = self.sheet_text(r.character)
            if not acceptable(rep.line, r.utterance, slot.offered, sheet_low):  # narration, a parrot, a lost name
                for k in range(1, 3):
                    alt = LineRequest(r.character, r.utterance, r.scene, r.history, replies[i].seed + k,
                                      retry_options(r.options or self.defaults))
                    s = self.start(alt)
                    self.run([s])
                    rep = self.finish(s)
                    if acceptable(rep.line, r.utterance, slot.offered, sheet_low):
                        break
                if not acceptable(rep.line, "", slot.offered, sheet_low):  # still nothing sayable
                    rep.line = fallback_line(r.character)
                replies[i] = rep
        return replies
