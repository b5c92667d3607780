"""Scene vocabulary, merging seen and engine-provided tags, and rendering them for the prompt.

No torch and no onnxruntime here: the daemon imports this even when vision is off.

Tags (see ``SCENE_VOCAB``):

* ``place``     single: where the player is (indoor kinds first, then outdoor kinds).
* ``setting``   single: ``indoor`` or ``outdoor`` (derived from ``place`` when only that is known).
* ``time``      single: ``day``, ``dusk`` or ``night``.
* ``weather``   single: ``clear``, ``rain``, ``snow``, ``fog`` or ``storm`` (outdoors only).
* ``danger``    multi-label: any of ``fire`` and ``combat``; an empty list (or ``"none"``) means none.
* ``creatures`` multi-label: which kinds of creatures are in view; empty means none.
* ``player``    single: the player's state read from the HUD health bar
                (``healthy``, ``hurt``, ``badly_hurt``).

A game may send its own tags and values; they are kept (sanitised) and rendered generically. One such
tag has a meaning here: ``text``, short words on screen (a sign, the map's name); a game sends it, or the
daemon reads it from the screenshot when asked (``screen_text``), and the NPC reads it like the player does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

INDOOR_PLACES: tuple[str, ...] = ("tavern", "shop", "house", "dungeon", "cave", "castle_hall")
OUTDOOR_PLACES: tuple[str, ...] = (
    "forest", "town", "field", "desert", "snow", "beach", "mountain", "sea",
)

SCENE_VOCAB: dict[str, tuple[str, ...]] = {
    "place": INDOOR_PLACES + OUTDOOR_PLACES,
    "setting": ("indoor", "outdoor"),
    "time": ("day", "dusk", "night"),
    "weather": ("clear", "rain", "snow", "fog", "storm"),
    "danger": ("fire", "combat"),
    "creatures": ("wolves", "undead", "dragon", "soldiers"),
    "player": ("healthy", "hurt", "badly_hurt"),
}

MULTI_LABEL: frozenset[str] = frozenset({"danger", "creatures"})

MAX_TAGS = 16
MAX_CHARS = 64
MAX_LIST = 16

_NONE_WORDS = frozenset({"none", "no", "nothing", "false", ""})
_CTRL = re.compile(r"[\x00-\x1f\x7f]+")
_SPACES = re.compile(r"\s+")


def _clean(value: Any) -> str:
    """One short printable string: control characters and runs of spaces collapse, <= 64 chars."""
    text = value if isinstance(value, str) else str(value)
    text = _CTRL.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return text[:MAX_CHARS].strip()


def _canon(text: str) -> str:
    return text.lower().replace(" ", "_").replace("-", "_")


def _known_value(tag: str, text: str) -> str:
    """Map a value onto the vocabulary when it matches one (case/spacing-insensitive), else keep it."""
    canon = _canon(text)
    if canon in SCENE_VOCAB[tag]:
        return canon
    if tag == "creatures" and canon + "s" in SCENE_VOCAB[tag]:  # "wolf" -> no, "soldier" -> "soldiers"
        return canon + "s"
    if tag == "creatures" and canon == "wolf":
        return "wolves"
    return text


def _sanitise_value(tag: str, value: Any) -> str | list[str] | None:
    """Sanitised value for one tag, or None when the tag says nothing."""
    if value is None:
        return None
    known = tag in SCENE_VOCAB
    multi = tag in MULTI_LABEL
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value) if not isinstance(value, (set, frozenset)) else sorted(value, key=str)
        out: list[str] = []
        for item in items:
            if item is None or isinstance(item, (Mapping, list, tuple, set, frozenset)):
                continue
            text = _clean(item)
            if known:
                text = _known_value(tag, text)
            if text and _canon(text) not in _NONE_WORDS and text not in out:
                out.append(text)
            if len(out) >= MAX_LIST:
                break
        if multi or not known:
            return out
        return out[0] if out else None
    if isinstance(value, Mapping):
        return None  # nested structures have no place in a one-line scene
    if isinstance(value, bool) and known and not multi:
        return None
    text = _clean(value)
    if known:
        text = _known_value(tag, text)
    if multi:
        return [] if _canon(text) in _NONE_WORDS else [text]
    return text or None


def _sanitise(tags: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not tags:
        return out
    if not isinstance(tags, Mapping):
        return out
    for key, value in tags.items():
        name = _clean(key)
        if not name:
            continue
        canon = _canon(name)
        if canon in SCENE_VOCAB:
            name = canon
        cleaned = _sanitise_value(name, value)
        if cleaned is None:
            continue
        out[name] = cleaned
        if len(out) >= 4 * MAX_TAGS:  # hard stop on absurd inputs before the final cut
            break
    return out


def _setting_of(place: Any) -> str | None:
    if place in INDOOR_PLACES:
        return "indoor"
    if place in OUTDOOR_PLACES:
        return "outdoor"
    return None


def merge_scene(seen: Mapping[str, Any] | None, engine: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge what vision saw with what the engine sent: the engine wins wherever both speak.

    Known tags come first in vocabulary order, then unknown engine tags in the order sent, at most 16.
    """
    seen_tags = _sanitise(seen)
    engine_tags = _sanitise(engine)
    merged: dict[str, Any] = {}
    merged.update(seen_tags)
    merged.update(engine_tags)

    # Keep place and setting consistent: when the engine states one, a contradicting guess goes.
    eng_place, eng_setting = engine_tags.get("place"), engine_tags.get("setting")
    if eng_place is not None and eng_setting is None:
        derived = _setting_of(eng_place)
        if derived is not None:
            merged["setting"] = derived
        elif "setting" in seen_tags and "setting" not in engine_tags:
            merged.pop("setting", None)  # a game-specific place: vision's guess may be wrong
    if eng_setting is not None and eng_place is None:
        seen_place = seen_tags.get("place")
        if _setting_of(seen_place) not in (None, eng_setting):
            merged.pop("place", None)
    if merged.get("setting") == "indoor" and "weather" in merged and "weather" not in engine_tags:
        merged.pop("weather")  # vision cannot see the weather from inside

    ordered: dict[str, Any] = {}
    for tag in SCENE_VOCAB:
        if tag in merged:
            ordered[tag] = merged[tag]
    for tag, value in merged.items():
        if len(ordered) >= MAX_TAGS:
            break
        if tag not in ordered:
            ordered[tag] = value
    return ordered


_TIME_TEXT = {"day": "It is day", "dusk": "It is dusk", "night": "It is night"}
_WEATHER_TEXT = {"clear": "clear", "rain": "raining", "snow": "snowing", "fog": "foggy",
                 "storm": "stormy"}
_PLACE_TEXT = {
    "tavern": "inside a tavern", "shop": "inside a shop", "house": "inside a house",
    "dungeon": "in a dungeon", "cave": "in a cave", "castle_hall": "in a castle hall",
    "forest": "in a forest", "town": "in a town", "field": "out in the fields",
    "desert": "in a desert", "snow": "in a snowy land", "beach": "on a beach",
    "mountain": "on a mountain", "sea": "at sea",
}
_CREATURE_TEXT = {"wolves": "wolves", "undead": "undead", "dragon": "a dragon", "soldiers": "soldiers"}
# A healthy player is not news: the line should not be about it (and "the player" is not a word the
# NPC should echo), so it is left out of the text; the reply's scene still reports it.
_PLAYER_TEXT = {"healthy": "", "hurt": "the player looks hurt",
                "badly_hurt": "the player looks badly hurt"}


def notable(scene: Mapping[str, Any]) -> dict[str, Any]:
    """What in a scene an NPC might fairly remark on: danger, creatures, weather other than clear,
    dusk or night, a hurt player, and any tag outside the vocabulary (on-screen text, a game's own)."""
    out = {k: scene.get(k) for k in ("danger", "creatures") if scene.get(k)}
    if scene.get("weather") not in (None, "clear"):
        out["weather"] = scene["weather"]
    if scene.get("time") in ("dusk", "night"):
        out["time"] = scene["time"]
    if scene.get("player") in ("hurt", "badly_hurt"):
        out["player"] = scene["player"]
    out.update({k: v for k, v in scene.items() if k not in SCENE_VOCAB and v})
    return out


def _words(value: str) -> str:
    return value.replace("_", " ")


def _and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    return [str(value)] if str(value) else []


def scene_to_text(scene: Mapping[str, Any]) -> str:
    """One short sentence describing the scene for the prompt; "" when there is nothing to say."""
    if not scene:
        return ""
    scene = merge_scene(None, scene)  # sanitise whatever we were handed
    first: list[str] = []
    time = scene.get("time")
    weather = scene.get("weather")
    if isinstance(time, str):
        first.append(_TIME_TEXT.get(time, f"It is {_words(time)}"))
    if isinstance(weather, str):
        text = _WEATHER_TEXT.get(weather, _words(weather))
        first.append(text if first else f"It is {text}")

    place = scene.get("place")
    setting = scene.get("setting")
    danger = _as_list(scene.get("danger"))
    where = None
    if isinstance(place, str):
        where = _PLACE_TEXT.get(place, f"at {_words(place)}")
    elif setting == "indoor":
        where = "indoors"
    elif setting == "outdoor":
        where = "outdoors"
    elif isinstance(setting, str):
        where = _words(setting)
    fire = "fire" in danger
    if where:
        if fire and isinstance(place, str) and place in INDOOR_PLACES:
            where += " that is on fire"
            fire = False
        first.append(where if first else f"The scene is {where}")

    clauses: list[str] = []
    if first:
        clauses.append(", ".join(first))
    if fire:
        clauses.append("something is on fire nearby")
    if "combat" in danger:
        clauses.append("a fight is going on")
    others = [d for d in danger if d not in ("fire", "combat")]
    if others:
        clauses.append("danger: " + _and([_words(d) for d in others]))

    creatures = [_CREATURE_TEXT.get(c, _words(c)) for c in _as_list(scene.get("creatures"))]
    if creatures:
        verb = "is" if len(creatures) == 1 and creatures[0].startswith("a ") else "are"
        clauses.append(f"{_and(creatures)} {verb} in view")

    player = scene.get("player")
    said = _PLAYER_TEXT.get(player, f"the player is {_words(player)}") if isinstance(player, str) else ""
    if said:
        clauses.append(said)

    extra = []
    for tag, value in scene.items():
        if tag in SCENE_VOCAB:
            continue
        values = _as_list(value)
        if values:
            extra.append(f"{_words(tag)}: {', '.join(_words(v) for v in values)}")
    if extra:
        clauses.append("; ".join(extra))

    if not clauses:
        return ""
    text = "; ".join(clauses)
    return text[0].upper() + text[1:] + "."
