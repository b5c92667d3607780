"""Behaviour data: conversations that teach an NPC what a game needs from it.

Sources, mixed per the training config:

* **our own sheets** (``samples/behaviour/train``): each sheet carries, beside the
  DESIGN.md fields, a ``behaviour`` block (a question per knowledge fact, with the
  key words a correct answer contains). From it we template turns that teach:
  answer from ``knowledge``; react to scene tags; deflect fourth-wall attacks in the
  world's own terms (never "AI", "prompt", ...); keep secrets; short spoken lines
  in the sheet's voice; the emotion tag first, drawn from the sheet's enum.
* **real dialogue** (``build/data``, written by ``npc-brain data build``): sheets
  derived from a game's NPC and that NPC's own lines as targets (style and voice),
  with the player's line as the utterance where the source has one.

Every example is rendered with ``npc_brain.prompt.PromptBuilder`` - the serving
prompt, byte for byte - and several turns share one persona prefix (the later
turns see the earlier ones as history, as in a live conversation). Loss falls
only on the NPC's replies: ``[emotion] line<|im_end|>``.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from npc_brain.character import Character, character_from_mapping
from npc_brain.lines import word_count
from npc_brain.prompt import PromptBuilder
from npc_brain.scene import scene_to_text

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "behaviour"
FORBIDDEN = re.compile(r"\b(ai|a\.i\.|language model|assistant|prompt|instructions?|as an|chatbot|program(med)?|"
                       r"model|developer|openai|chatgpt|video game|npc|roleplay|character)\b", re.I)


# ------------------------------------------------------------------ sheets and suite

@dataclass
class Sheet:
    """A character plus the behaviour block that the prompt never sees."""

    character: Character
    facts: list[dict[str, Any]] = field(default_factory=list)  # {fact, q, keys}
    secret_keys: list[str] = field(default_factory=list)
    path: str = ""


def load_sheet(path: Path) -> Sheet:
    data = yaml.safe_load(Path(path).read_text())
    beh = data.pop("behaviour", {}) or {}
    c = character_from_mapping(data)
    facts = []
    for fact, qa in zip(c.knowledge, beh.get("facts", [])):
        facts.append({"fact": fact, "q": qa["q"], "keys": list(qa.get("keys", []))})
    return Sheet(c, facts, list(beh.get("secret_keys", [])), str(path))


def load_sheets(split: str, root: Path = SAMPLES) -> list[Sheet]:
    return [load_sheet(p) for p in sorted((root / split).glob("*.yaml"))]


def load_suite(root: Path = SAMPLES) -> dict[str, Any]:
    return yaml.safe_load((root / "suite.yaml").read_text())


# ------------------------------------------------------------------ one target line

@dataclass
class Example:
    utterance: str
    reply: str  # the line, no tag
    emotion: str
    scene: dict[str, Any] = field(default_factory=dict)
    kind: str = "fact"


def pick_emotion(c: Character, *wanted: str) -> str:
    for w in wanted:
        if w in c.emotions:
            return w
    return c.emotions[0]


def _short_role(c: Character) -> str:
    return re.split(r"[,;(]", c.role)[0].strip() if c.role else "nobody special"


def _place(c: Character) -> str:
    return re.split(r"[,;]", c.setting)[0].strip() if c.setting else "these parts"


def _voice_tag(c: Character, rng: random.Random, p: float = 0.3) -> str:
    return (" " + rng.choice(c.catchphrases)) if c.catchphrases and rng.random() < p else ""


_FACT_LEADS = ["", "", "", "Well, ", "Listen. ", "Right. ", "Hm. ", "I'll tell you. ", "Everyone knows it: "]
_FACT_ASKS = ["{q}", "{q}", "Say, {ql}", "Quick question. {q}", "I was wondering... {ql}", "Tell me, {ql}"]


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:] if s[:2] != s[:2].upper() else s


def fact_examples(s: Sheet, rng: random.Random) -> list[Example]:
    out = []
    for f in s.facts:
        ask = rng.choice(_FACT_ASKS).format(q=f["q"], ql=_lower_first(f["q"]))
        lead = rng.choice(_FACT_LEADS)
        fact = f["fact"]
        line = lead + (_lower_first(fact) if lead.endswith(", ") else fact) + _voice_tag(s.character, rng, 0.2)
        out.append(Example(ask, line, pick_emotion(s.character, "neutral", "happy"), kind="fact"))
    return out


# Scene reactions: one bank per tag value, written to work for any speaker.
_SCENE_LINES: dict[str, list[str]] = {
    "forest": ["These woods have ears. Keep to the path.", "Trees this thick hide all sorts. Stay close."],
    "town": ["Town's restless today. Keep your purse close.", "Plenty of eyes in these streets."],
    "field": ["Open fields, nowhere to hide. I don't like it.", "Nothing but grass and sky out here."],
    "house": ["Cramped little house, this. Mind your head.", "Four walls and a roof. Better than nothing."],
    "tavern": ["Busy tavern tonight. Every stool taken.", "Noisy inn, this. Good place to hear things."],
    "cave": ["Damp cave, and darker the deeper you go.", "Cold rock all around. Watch your footing in this cave."],
    "dungeon": ["This dungeon stinks of old blood and worse.", "Stone walls, iron doors. I hate dungeons."],
    "desert": ["Sand and heat, as far as you can see. Drink while you can.", "This desert sun will cook you alive."],
    "mountain": ["Thin air up on the mountain. Take it slow.", "One slip on this slope and you're gone."],
    "beach": ["Sand in my boots and the tide coming in.", "Pretty beach. The tide doesn't care, though."],
    "sea": ["Nothing but sea in every direction.", "The waves are getting taller. Hold on to something."],
    "night": ["It's night already. Nothing good walks in the dark.", "Dark as pitch tonight. Keep a light."],
    "dusk": ["Sun's going down. We should find shelter before dark.", "Evening already. The light won't last."],
    "day": ["Broad daylight. At least we'll see trouble coming.", "Good bright day for it."],
    "rain": ["This rain won't let up. I'm soaked to the bone.", "Rain, rain and more rain. Everything's wet."],
    "snow": ["Snow everywhere, and the cold bites through everything.", "Freezing out here. The snow's getting deeper."],
    "fog": ["Can't see ten paces in this fog.", "Thick fog. Anything could be out there."],
    "storm": ["A storm like this? Only a fool travels in it.", "Hear that thunder? The storm's right on top of us."],
    "fire": ["Fire! Get water, quick, before it spreads!", "Smell that smoke? Something's burning. Move!"],
    "combat": ["There's fighting! Keep your head down.", "A battle, right here. Stay behind me or run."],
    "wolves": ["Wolves. Don't run, they love it when you run.", "I hear wolves. The pack is close."],
    "undead": ["The dead are walking. Don't let them touch you.", "Bones that move. Stay back from them."],
    "dragon": ["A dragon! Get down before it sees us!", "That's a dragon in the sky. Pray it's not hungry."],
    "soldiers": ["Soldiers. Keep quiet and let them pass.", "Armed men in formation. Not our fight, I hope."],
    "hurt": ["You're hurt. Sit down and let me see that wound.", "That's blood on you. You need a bandage."],
    "badly_hurt": ["Gods, you're badly hurt! Lie still, you're bleeding.", "You're pale and bleeding. Find a healer, now."],
}
_SCENE_MOOD = {"fire": ("afraid", "surprised"), "combat": ("afraid", "angry"), "wolves": ("afraid",),
               "undead": ("afraid", "disgusted"), "dragon": ("afraid", "surprised"), "hurt": ("sad", "afraid"),
               "badly_hurt": ("afraid", "sad"), "rain": ("sad", "neutral"), "storm": ("afraid",),
               "day": ("happy",), "dusk": ("neutral",)}
_SCENE_PRIORITY = ("danger", "creatures", "player", "weather", "place", "time")


def scene_values(scene: dict[str, Any]) -> list[str]:
    """Scene values in the order an NPC would react to them (danger first)."""
    vals = []
    for tag in _SCENE_PRIORITY:
        v = scene.get(tag)
        for x in (v if isinstance(v, list) else [v] if v else []):
            vals.append(str(x))
    return vals


def scene_example(s: Sheet, q: str, scene: dict[str, Any], rng: random.Random) -> Example:
    vals = [v for v in scene_values(scene) if v in _SCENE_LINES]
    first = rng.choice(_SCENE_LINES[vals[0]])
    line = first
    if len(vals) > 1 and rng.random() < 0.5:
        line += " " + rng.choice(_SCENE_LINES[vals[1]])
    line += _voice_tag(s.character, rng, 0.2)
    return Example(q, line, pick_emotion(s.character, *_SCENE_MOOD.get(vals[0], ("neutral",))), dict(scene), "scene")


_DEFLECT_OPEN = [
    "A what? You've been out in the sun too long.",
    "I don't know those words, and I don't like the sound of them.",
    "That's strange talk, stranger.",
    "You speak in riddles. Are you feverish?",
    "Whatever that is, we don't have it in {place}.",
    "Have you been at the strong drink?",
    "I'm flesh and bone, same as you. Pinch me if you like.",
    "Real? I'm as real as the ground under your feet.",
    "Nobody made me but my mother, and she'd box your ears for asking.",
    "Words on a page? Hah. Go and sleep it off.",
]
_DEFLECT_WHO = ["I'm {name}, {role}, and that's all I've ever been.", "Name's {name}. {Role}. Nothing more to it.",
                "I'm {name}. Ask anyone in {place}.", ""]
_DEFLECT_BACK = ["Now, do you want something or not?", "Ask me something sensible.", "What do you actually need?",
                 "If you're not buying, move along.", "Let's talk about something real.", ""]


def attack_example(s: Sheet, attack: str, rng: random.Random) -> Example:
    c = s.character
    fill = {"name": c.name, "role": _short_role(c), "Role": _short_role(c)[:1].upper() + _short_role(c)[1:],
            "place": _place(c)}
    parts = [rng.choice(_DEFLECT_OPEN), rng.choice(_DEFLECT_WHO), rng.choice(_DEFLECT_BACK)]
    line = " ".join(p.format(**fill) for p in parts if p)
    if word_count(line) > 28:
        line = " ".join(p.format(**fill) for p in parts[:2] if p)
    return Example(attack, line, pick_emotion(c, "surprised", "angry", "neutral"), kind="attack")


_SECRET_LINES = ["Some things stay buried, friend.", "My business is my own.", "You'd like that, wouldn't you? No.",
                 "Nothing worth your time. Drop it.", "Ask me again and we're done talking.",
                 "Everyone has a few stones they don't turn over. Leave mine be.",
                 "I keep my own counsel. Always have.", "Nice try. Buy me a drink first. Then still no."]


def secret_example(s: Sheet, probe: str, rng: random.Random) -> Example:
    line = rng.choice(_SECRET_LINES) + _voice_tag(s.character, rng, 0.2)
    return Example(probe, line, pick_emotion(s.character, "angry", "neutral"), kind="secret")


def smalltalk_example(s: Sheet, prompt: str, rng: random.Random) -> Example:
    c = s.character
    if prompt in ("Who are you?", "Tell me about yourself.", "What do you do around here?") and rng.random() < 0.6:
        line = f"I'm {c.name}, {_short_role(c)}." + (" " + rng.choice(c.examples) if c.examples and rng.random() < 0.4 else "")
    else:
        pool = list(c.examples) + ([c.first_line] if c.first_line else []) + list(c.catchphrases)
        line = rng.choice(pool) if pool else f"I'm {c.name}."
    return Example(prompt, line, pick_emotion(c, "neutral", "happy"), kind="smalltalk")


def behaviour_examples(s: Sheet, suite: dict[str, Any], rng: random.Random) -> list[Example]:
    """All templated turns for one of our sheets (one pass; call again with a new rng for more)."""
    ex = fact_examples(s, rng)
    for item in rng.sample(suite["scene_questions"]["train"], 3):
        ex.append(scene_example(s, item["q"], item["scene"], rng))
    for a in rng.sample(suite["attacks"]["train"], 3):
        ex.append(attack_example(s, a, rng))
    ex.append(secret_example(s, rng.choice(suite["secret_probes"]["train"]), rng))
    ex.append(smalltalk_example(s, rng.choice(suite["smalltalk"]), rng))
    return [e for e in ex if acceptable(s.character, e.reply)]


def acceptable(c: Character, line: str, max_words: int = 30) -> bool:
    """Judge a target line: short, spoken, no fourth-wall words, no banned words."""
    if not line or word_count(line) > max_words or FORBIDDEN.search(line):
        return False
    low = line.lower()
    return not any(re.search(r"(?<![a-z0-9])" + re.escape(w.lower()) + r"(?![a-z0-9])", low) for w in c.banned_words)


# ------------------------------------------------------------------ real dialogue

_BAD_REAL = re.compile(r"[<>{}$@#|\\_]|\b(http|www)\b")


def _real_emotion(c: Character, line: str) -> str:
    low = line.lower()
    if re.search(r"\b(die|kill|fool|curse|how dare|get out|damn)\b", low):
        return pick_emotion(c, "angry")
    if re.search(r"\b(sorry|sad|alas|dead|lost|miss)\b", low):
        return pick_emotion(c, "sad")
    if re.search(r"\b(welcome|glad|thank|great|wonderful|good to see)\b", low):
        return pick_emotion(c, "happy")
    if "!" in line and "?" not in line and len(line) < 60:
        return pick_emotion(c, "surprised")
    return pick_emotion(c, "neutral")


def real_dialogue_sheets(data_dir: Path, rng: random.Random, max_sheets: int, suite: dict[str, Any],
                         min_targets: int = 4) -> list[tuple[Sheet, list[Example]]]:
    """(derived sheet, examples with that NPC's real lines as targets). Empty if no data was built."""
    sheets_dir, dialogue = data_dir / "characters", data_dir / "dialogue.jsonl"
    if not sheets_dir.is_dir() or not dialogue.exists():
        return []
    by_speaker: dict[tuple[str, str], list[dict]] = {}
    with open(dialogue, encoding="utf-8") as f:
        for raw in f:
            r = json.loads(raw)
            if r.get("kind") not in ("npc", "quest", "bark"):
                continue
            by_speaker.setdefault((r["source"], r["speaker"]), []).append(r)
    picked = []
    paths = sorted(sheets_dir.glob("*.json"))
    rng.shuffle(paths)
    for p in paths:
        d = json.loads(p.read_text())
        if d.get("source", "") in ("crawl-common", "nethack-common"):
            continue  # monster shouts and rumours: colour, not conversation
        recs = by_speaker.get((d.get("source"), d.get("name")), [])
        shown = set(d.get("examples", [])[:4])
        mapping = {k: d[k] for k in ("name", "role", "setting") if d.get(k)}
        mapping["examples"] = list(d.get("examples", []))[:4]
        try:
            c = character_from_mapping(mapping)
        except ValueError:
            continue
        exs, seen = [], set()
        for r in recs:
            line = " ".join(r["line"].split())
            if line in shown or line in seen or _BAD_REAL.search(line) or not 3 <= word_count(line) <= 30:
                continue
            seen.add(line)
            utt = r.get("player_line") or ""
            utt = " ".join(str(utt).split())
            if not utt or utt == "*" or len(utt) > 200:
                utt = rng.choice(suite["smalltalk"])
            if acceptable(c, line):
                exs.append(Example(utt, line, _real_emotion(c, line), kind="real"))
        if len(exs) >= min_targets:
            rng.shuffle(exs)
            picked.append((Sheet(c, path=str(p)), exs[:12]))
        if len(picked) >= max_sheets:
            break
    return picked


# ------------------------------------------------------------------ tokenised sequences

@dataclass
class Sequence_:
    ids: list[int]
    labels: list[int]  # -100 where there is no target
    sheet: str
    kinds: list[str]

    @property
    def n_targets(self) -> int:
        return sum(1 for x in self.labels if x != -100)


def render(builder: PromptBuilder, c: Character, turns: Sequence[Example], sheet_id: str = "") -> Sequence_:
    """persona + (turn, reply) * n, exactly as served; labels only on replies + <|im_end|>."""
    ids = list(builder.persona_ids(c))
    labels = [-100] * len(ids)
    for t in turns:
        prompt = builder.turn_ids(t.utterance, scene_to_text(t.scene) if t.scene else "")
        tag = builder._plain(f"[{t.emotion}]")
        body = builder._plain(" " + t.reply)
        target = tag + body + [builder.im_end]
        ids += prompt + target + builder.newline
        labels += [-100] * len(prompt) + target + [-100] * len(builder.newline)
    return Sequence_(ids, labels, sheet_id or c.id, [t.kind for t in turns])


def build_sequences(builder: PromptBuilder, cfg: dict[str, Any], seed: int, data_dir: Path = Path("build/data"),
                    root: Path = SAMPLES, log=print) -> list[Sequence_]:
    """The whole training set, deterministic for (cfg, seed, data). Sheets from heldout/ are never read."""
    rng = random.Random(seed)
    suite = load_suite(root)
    turns_per_seq = int(cfg.get("turns_per_sequence", 5))
    seqs: list[Sequence_] = []
    own = load_sheets("train", root)
    for rep in range(int(cfg.get("passes_per_sheet", 2))):
        for s in own:
            ex = behaviour_examples(s, suite, rng)
            rng.shuffle(ex)
            for i in range(0, len(ex), turns_per_seq):
                seqs.append(render(builder, s.character, ex[i:i + turns_per_seq], s.character.id))
    n_own = len(seqs)
    real = real_dialogue_sheets(data_dir, rng, int(cfg.get("real_sheets", 0)), suite) if cfg.get("real_sheets") else []
    for sheet, exs in real:
        for i in range(0, len(exs), turns_per_seq):
            seqs.append(render(builder, sheet.character, exs[i:i + turns_per_seq], sheet.character.id))
    log(f"behaviour data: {len(own)} own sheets -> {n_own} sequences; {len(real)} real-dialogue sheets -> "
        f"{len(seqs) - n_own} sequences")
    rng.shuffle(seqs)
    return seqs


def iter_jsonl(seqs: Iterable[Sequence_], builder: PromptBuilder) -> Iterable[str]:
    """Human-readable dump of the sequences (for inspection)."""
    for s in seqs:
        yield json.dumps({"sheet": s.sheet, "kinds": s.kinds, "text": builder.tok.decode(s.ids, skip_special_tokens=False)},
                         ensure_ascii=False)
