"""Cataclysm: Dark Days Ahead (``cataclysm-dda-data``): JSON talk topics.

``json/npcs/**`` holds ``talk_topic`` objects: ``dynamic_line`` (what the NPC
says; may be nested conditionals whose leaves are alternative lines) and
``responses`` (player lines, each leading to another topic). ``npc`` objects
name the topic a character opens with; walking response links from there tells
us who speaks each topic. ``snippet`` objects are banks of barks (greetings,
insults) and fill the ``<tag>`` slots inside lines.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .clean import pick
from .record import Line

PACKAGES = ["cataclysm-dda-data"]
LICENCE = "CC-BY-SA-3.0"
SETTING = "Cataclysm: Dark Days Ahead: a post-apocalyptic survival world overrun by zombies and monsters"
NPCS = "usr/share/games/cataclysm-dda/json/npcs"
GENERIC = "survivor"

# Topics shared by every NPC: they must not be claimed by whoever reaches them first.
_SHARED = re.compile(r"^TALK_(DONE|NONE|FRIEND|COMMON|MISSION|STRANGER|AGREE|DENY|ALLY|COMBAT|MISC|"
                     r"TRAIN|SIZE_UP|LOOK_AT|OPINION|SHOUT|DEMAND|SHELTER|CAMP|FACTION|SUGGEST|"
                     r"HOW_MUCH|LEADER|NPC_|FREE_MERCHANT_STOCKS|TRADE|GIVE|USE_ITEM|WAKE|BGSS|CWH)")
_IDENT = re.compile(r"^[A-Za-z0-9_:.\-]*$")
_TAG = re.compile(r"</?[A-Za-z_!]+>")
# Slots that are not snippet banks (filled by the engine from game state).
_FIXED = {"<mypronoun>": "they", "<topic_item>": "that", "<punc>": ".", "<yrwp>": "your weapon",
          "<mywp>": "my weapon", "<interval>": "a while", "<u_name>": "friend", "<npc_name>": "me",
          "<mission_name>": "the job", "<zombie>": "zombie", "<zombies>": "zombies",
          "<freaking>": "freaking", "<the_cataclysm>": "the Cataclysm", "<ammo>": "ammo",
          "<current_activity>": "working", "<kill_npc>": "", "<okay>": "okay"}


def text_of(value: Any) -> str | None:
    """A CDDA translatable string: plain str or ``{"str": ...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("str"), str):
        return value["str"]
    return None


def dynamic_lines(value: Any) -> list[str]:
    """All alternative NPC lines inside a (possibly conditional) ``dynamic_line``.

    Conditions and lines are both strings; condition values are identifiers
    (``talked_to_cop``), lines are prose, so prose-looking leaves are lines.
    """
    if isinstance(value, str):
        return [value] if value.strip() and not _IDENT.match(value.strip()) else []
    if isinstance(value, list):
        return [x for v in value for x in dynamic_lines(v)]
    if isinstance(value, dict):
        if "str" in value and isinstance(value["str"], str):
            return dynamic_lines(value["str"])
        return [x for k, v in value.items() if k != "condition" for x in dynamic_lines(v)]
    return []


def response_texts(resp: dict[str, Any]) -> list[str]:
    t = text_of(resp.get("text"))
    if t:
        return [t]
    tf = resp.get("truefalsetext") or {}
    return [x for x in (text_of(tf.get("true")), text_of(tf.get("false"))) if x]


def response_targets(resp: dict[str, Any]) -> list[str]:
    out = [resp.get("topic")]
    for branch in ("success", "failure"):
        if isinstance(resp.get(branch), dict):
            out.append(resp[branch].get("topic"))
    return [t for t in out if isinstance(t, str)]


def load_objects(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every JSON object under ``json/npcs`` with the file it came from."""
    out = []
    for path in sorted((root / NPCS).rglob("*.json")):
        if path.name.startswith("TALK_TEST"):
            continue  # the developers' test dialogue, not a character
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        for obj in data if isinstance(data, list) else [data]:
            if isinstance(obj, dict):
                out.append((str(path.relative_to(root)), obj))
    return out


def snippet_banks(objects: list[tuple[str, dict[str, Any]]]) -> dict[str, list[str]]:
    banks: dict[str, list[str]] = {}
    for _, obj in objects:
        if obj.get("type") == "snippet" and isinstance(obj.get("category"), str):
            items = []
            for t in obj.get("text", []):
                t = text_of(t) or (text_of(t.get("text")) if isinstance(t, dict) else None)
                if t:
                    items.append(t)
            banks.setdefault(obj["category"], []).extend(items)
    return banks


def fill_tags(text: str, banks: dict[str, list[str]], depth: int = 0) -> str | None:
    """Replace ``<tag>`` slots with a deterministic pick from the snippet bank.
    Colour markup is removed; a slot we cannot fill drops the line (None)."""
    text = re.sub(r"</?color[^>]*>", "", text)

    def sub(m: re.Match[str]) -> str:
        tag = m.group(0)
        if tag in banks and banks[tag] and depth < 4:
            filled = fill_tags(pick(banks[tag], text + tag), banks, depth + 1)
            return filled if filled is not None else "\0"
        return _FIXED.get(tag, "\0")

    out = _TAG.sub(sub, text)
    return None if "\0" in out else out


def assign_speakers(objects: list[tuple[str, dict[str, Any]]],
                    topics: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Map topic id -> (speaker name, npc class) by walking from each NPC's chat topic."""
    owner: dict[str, tuple[str, str]] = {}
    for _, obj in objects:
        if obj.get("type") != "npc" or not isinstance(obj.get("chat"), str):
            continue
        name = obj.get("name_unique") or obj.get("name_suffix") or obj.get("id", GENERIC)
        name = str(name if not isinstance(name, dict) else text_of(name) or GENERIC)
        name = name[:1].upper() + name[1:]
        queue = deque([obj["chat"]])
        while queue:
            tid = queue.popleft()
            if tid in owner or tid not in topics or _SHARED.match(tid):
                continue
            owner[tid] = (name, str(obj.get("class", "")))
            for resp in topics[tid].get("responses", []):
                if isinstance(resp, dict):
                    queue.extend(response_targets(resp))
    return owner


def extract(root: Path) -> Iterator[Line]:
    """All NPC lines and barks from an extracted ``cataclysm-dda-data`` package."""
    objects = load_objects(root)
    banks = snippet_banks(objects)
    topics: dict[str, dict[str, Any]] = {}
    topic_file: dict[str, str] = {}
    for file, obj in objects:
        if obj.get("type") == "talk_topic":
            ids = obj.get("id")
            for tid in ids if isinstance(ids, list) else [ids]:
                if isinstance(tid, str):
                    topics.setdefault(tid, obj)
                    topic_file.setdefault(tid, file)
    # The player line that leads into each topic (first one found).
    prompt: dict[str, str] = {}
    for tid, obj in topics.items():
        for resp in obj.get("responses", []):
            if isinstance(resp, dict):
                texts = response_texts(resp)
                for target in response_targets(resp):
                    if texts and target not in prompt:
                        prompt[target] = texts[0]
    owner = assign_speakers(objects, topics)
    # A topic nobody reached usually belongs to the one character of its file.
    by_file: dict[str, set[tuple[str, str]]] = {}
    for tid, who in owner.items():
        by_file.setdefault(topic_file[tid], set()).add(who)
    for tid in topics:
        owners = by_file.get(topic_file[tid], set())
        if tid not in owner and len(owners) == 1:
            owner[tid] = next(iter(owners))
    done: set[int] = set()
    for tid, obj in topics.items():
        if id(obj) in done:
            continue
        done.add(id(obj))
        speaker, klass = owner.get(tid, (GENERIC, ""))
        player = prompt.get(tid)
        player = fill_tags(player, banks) if player else None
        for raw in dynamic_lines(obj.get("dynamic_line")):
            line = fill_tags(raw, banks)
            if line is None:
                continue
            ctx = {"topic": tid}
            if klass:
                ctx["class"] = klass
            yield Line(speaker=speaker, line=line, player_line=player, source=PACKAGES[0],
                       file=topic_file[tid], licence=LICENCE, kind="npc", context=ctx)
    # Snippet banks of whole sentences are barks any survivor might say.
    for file, obj in objects:
        if obj.get("type") != "snippet" or not isinstance(obj.get("category"), str):
            continue
        items = banks.get(obj["category"], [])
        if not items or sum(len(t.split()) for t in items) / len(items) < 3:
            continue  # word banks (<swear>, <very>) are slot fillers, not lines
        for raw in obj.get("text", []):
            t = text_of(raw) or (text_of(raw.get("text")) if isinstance(raw, dict) else None)
            line = fill_tags(t, banks) if t else None
            if line:
                yield Line(speaker=GENERIC, line=line, source=PACKAGES[0], file=file, licence=LICENCE,
                           kind="bark", context={"topic": obj["category"].strip("<>")})
