"""Character sheets: load, validate and fingerprint an NPC's persona.

Everything downstream (prompt builder, sampler biases, the KV-prefix cache, batch, daemon) trusts a
``Character`` to be valid, so all checking happens here, once. Sheets arrive from writers (YAML/JSON),
from games over the wire (msgpack maps) and from community tools (Character Card V2/V3 as JSON or PNG),
so every bad input -- wrong type, oversized file, broken YAML, corrupt PNG -- must surface as a
``CharacterError`` whose message names the field to fix, never as a raw traceback.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, Mapping

import msgpack
import yaml

__all__ = [
    "Character",
    "CharacterError",
    "DEFAULT_EMOTIONS",
    "MAX_SHEET_BYTES",
    "MAX_CARD_PNG_BYTES",
    "character_from_mapping",
    "load_character",
]

DEFAULT_EMOTIONS = ("neutral", "happy", "sad", "angry", "afraid", "surprised", "disgusted")
MAX_SHEET_BYTES = 256 * 1024
# Card PNGs carry an avatar picture, so real ones are routinely several hundred KiB; the sheet limit
# would reject most of them. Their text is still bounded by Pillow's own text-chunk limits.
MAX_CARD_PNG_BYTES = 8 * 1024 * 1024
# The card chunk usually sits after the pixel data, and Pillow decodes the pixels to reach it, so a
# tiny file could still cost a lot of memory: cap the picture well below Pillow's bomb limit.
MAX_CARD_PIXELS = 4096 * 4096

MAX_TEXT_CHARS = 4000  # role, setting, personality, speech_style, backstory, first_line
MAX_ITEMS = 64  # per list, and per relationships map
MAX_ITEM_CHARS = 1000  # knowledge, goals, secrets, examples items; relationship descriptions
MAX_SHORT_CHARS = 200  # name, catchphrases, banned_words, emotions, relationship names
MAX_EXTRA_NODES = 10_000  # unknown keys are kept, but must not smuggle in unbounded data
MAX_EXTRA_DEPTH = 32
USER_STAND_IN = "traveler"  # what a card's {{user}} becomes: NPCs rarely know the player's name

_HASH_TAG = b"npc-brain/character-sheet/v1\n"  # bump when the canonical form changes, to drop caches
_ID_RE = re.compile(r"[a-z0-9_-]{1,64}")
_EMOTION_RE = re.compile(r"[a-z_]{1,32}")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_TEXT_FIELDS = ("role", "setting", "personality", "speech_style", "backstory", "first_line")
_LONG_LISTS = ("knowledge", "goals", "secrets", "examples")
_SHORT_LISTS = ("catchphrases", "banned_words")
_KNOWN_KEYS = frozenset(
    ("name", "id", "relationships", "emotions", *_TEXT_FIELDS, *_LONG_LISTS, *_SHORT_LISTS)
)
_CARD_SPECS = ("chara_card_v2", "chara_card_v3")
# Where an imported card's field came from, so a validation error can point at the card field.
_CARD_SOURCES = {
    "name": "data.name",
    "backstory": "data.description",
    "personality": "data.personality",
    "setting": "data.scenario",
    "first_line": "data.first_mes",
    "examples": "data.mes_example",
}
_CARD_MAPPED = frozenset(("name", "description", "personality", "scenario", "first_mes", "mes_example"))


class CharacterError(ValueError):
    """A sheet that cannot be used. The message says what to fix; ``field`` names the sheet key at
    fault (for a card's own fields, the card key such as ``description``), or is None when the
    problem is the file or its format."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Character:
    """A validated, immutable NPC persona.

    Build it with ``character_from_mapping`` or ``load_character``: direct construction skips
    validation and is meant only for code that already holds validated values.
    """

    name: str
    id: str
    role: str = ""
    setting: str = ""
    personality: str = ""
    speech_style: str = ""
    backstory: str = ""
    knowledge: tuple[str, ...] = ()
    goals: tuple[str, ...] = ()
    relationships: tuple[tuple[str, str], ...] = ()  # (name, description), sorted by name
    catchphrases: tuple[str, ...] = ()
    banned_words: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    emotions: tuple[str, ...] = DEFAULT_EMOTIONS
    first_line: str = ""
    examples: tuple[str, ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()  # unknown keys (sorted), read-only; kept, never used

    def to_dict(self) -> dict[str, Any]:
        """The sheet as plain JSON-able data in the DESIGN.md schema; ``character_from_mapping``
        of the result gives back an equal Character (unknown keys included)."""
        out: dict[str, Any] = {"name": self.name, "id": self.id}
        for key in ("role", "setting", "personality", "speech_style", "backstory"):
            out[key] = getattr(self, key)
        out["knowledge"] = list(self.knowledge)
        out["goals"] = list(self.goals)
        out["relationships"] = dict(self.relationships)
        out["catchphrases"] = list(self.catchphrases)
        out["banned_words"] = list(self.banned_words)
        out["secrets"] = list(self.secrets)
        out["emotions"] = list(self.emotions)
        out["first_line"] = self.first_line
        out["examples"] = list(self.examples)
        for key, value in self.extra:
            out[key] = _thaw(value)
        return out

    def sheet_hash(self) -> str:
        """sha256 hex of the canonical sheet: the persona-prefix cache key, so it must not depend on
        key order, file format or the run."""
        return self._sheet_hash

    @cached_property
    def _sheet_hash(self) -> str:
        canonical = json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
        return hashlib.sha256(_HASH_TAG + canonical.encode("ascii")).hexdigest()

    def __hash__(self) -> int:  # extras may hold read-only maps, which Python cannot hash itself
        return hash(self._sheet_hash)


# --------------------------------------------------------------------------- validation


def sheet_text_lower(c: Character) -> str:
    """The whole sheet as lower-case text, for "does the sheet itself use this word?" (the guards and the
    name check spare what the sheet says)."""
    return json.dumps(c.to_dict(), ensure_ascii=False).lower()


def character_from_mapping(data: Mapping[str, Any]) -> Character:
    """Validate a sheet (DESIGN.md schema, or a Character Card V2/V3 dict) into a Character."""
    if not isinstance(data, Mapping):
        raise CharacterError(
            f"a character sheet must be a map of key: value pairs, got {_describe(data)}"
        )
    card_fields: set[str] = set()
    if _card_spec(data) is not None:
        data, card_fields = _card_to_sheet(data)
    try:
        return _validate(data)
    except CharacterError as exc:
        if exc.field in card_fields:
            raise CharacterError(
                f"{exc} (imported from the card's {_CARD_SOURCES[exc.field]})", exc.field
            ) from None
        raise
    except RecursionError:
        raise CharacterError("the sheet is nested too deeply") from None


def _validate(data: Mapping[str, Any]) -> Character:
    name = _name(data)
    values: dict[str, Any] = {"name": name, "id": _id(data, name)}
    for key in _TEXT_FIELDS:
        values[key] = _text(data, key, MAX_TEXT_CHARS)
    for key in _LONG_LISTS:
        values[key] = _str_list(data, key, MAX_ITEM_CHARS, dedupe=False)
    for key in _SHORT_LISTS:
        values[key] = _str_list(data, key, MAX_SHORT_CHARS, dedupe=True)
    values["relationships"] = _relationships(data)
    values["emotions"] = _emotions(data)
    values["extra"] = _extra(data)
    return Character(**values)


def _describe(value: Any) -> str:
    """A user-facing type name: sheet authors think in YAML terms, not Python ones."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})" if len(repr(value)) < 30 else "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _short(text: str, limit: int = 40) -> str:
    """Quote a user value in a message without echoing a whole backstory back."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _clean(value: str, field: str, limit: int) -> str:
    value = value.strip()
    if len(value) > limit:
        raise CharacterError(
            f"{field} is {len(value)} characters long; the limit is {limit}", _root(field)
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CharacterError(
            f"{field} contains invalid Unicode (a lone surrogate); re-save it as UTF-8", _root(field)
        ) from None
    return value


def _root(field: str) -> str:
    """'knowledge[3]' -> 'knowledge': ``CharacterError.field`` names a key, not a list position."""
    return field.split("[", 1)[0]


def _name(data: Mapping[str, Any]) -> str:
    value = data.get("name")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CharacterError("name is required: give the NPC a non-empty name", "name")
    if not isinstance(value, str):
        raise CharacterError(f"name must be a string, got {_describe(value)}", "name")
    return _clean(value, "name", MAX_SHORT_CHARS)


def _id(data: Mapping[str, Any], name: str) -> str:
    value = data.get("id")
    if value is None or value == "":
        return _slugify(name)
    if not isinstance(value, str):
        raise CharacterError(f"id must be a string, got {_describe(value)}", "id")
    value = value.strip()
    if not _ID_RE.fullmatch(value):
        raise CharacterError(
            f"id {_short(value)} must be 1-64 characters from a-z, 0-9, '_' and '-' "
            "(or leave it out to derive it from the name)",
            "id",
        )
    return value


def _slugify(name: str) -> str:
    """Derive a stable id from the name; non-Latin names fall back to a hash so ids never clash."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:64].strip("_")
    return slug or "npc_" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]


def _text(data: Mapping[str, Any], key: str, limit: int) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CharacterError(f"{key} must be a string, got {_describe(value)}", key)
    return _clean(value, key, limit)


def _str_list(data: Mapping[str, Any], key: str, item_limit: int, dedupe: bool) -> tuple[str, ...]:
    """A list of strings; a lone string is taken as a one-item list because YAML authors write
    ``goals: find the lost hammer`` and mean exactly that. Blank items are dropped."""
    value = data.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise CharacterError(
            f"{key} must be a list of strings (a single string also works), got {_describe(value)}",
            key,
        )
    if len(value) > MAX_ITEMS:
        raise CharacterError(f"{key} has {len(value)} items; the limit is {MAX_ITEMS}", key)
    items: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise CharacterError(
                f"{key}[{index}] must be a string, got {_describe(item)}", key
            )
        item = _clean(item, f"{key}[{index}]", item_limit)
        if item and not (dedupe and item in items):
            items.append(item)
    return tuple(items)


def _relationships(data: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    value = data.get("relationships")
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise CharacterError(
            "relationships must be a map of name to how the NPC sees them "
            f"(e.g. Mara: old friend), got {_describe(value)}",
            "relationships",
        )
    if len(value) > MAX_ITEMS:
        raise CharacterError(
            f"relationships has {len(value)} entries; the limit is {MAX_ITEMS}", "relationships"
        )
    pairs: dict[str, str] = {}
    for other, description in value.items():
        if not isinstance(other, str) or not other.strip():
            raise CharacterError(
                f"relationships keys must be non-empty names, got {_describe(other)}",
                "relationships",
            )
        other = _clean(other, "relationships name", MAX_SHORT_CHARS)
        if not isinstance(description, str):
            raise CharacterError(
                f"relationships[{_short(other)}] must be a string, got {_describe(description)}",
                "relationships",
            )
        pairs[other] = _clean(description, f"relationships[{_short(other)}]", MAX_ITEM_CHARS)
    return tuple(sorted(pairs.items()))  # a map has no order: sorting keeps the hash stable


def _emotions(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The enum the sampler constrains the emotion tag to, so it must be small and token-friendly."""
    if data.get("emotions") is None:
        return DEFAULT_EMOTIONS
    raw = _str_list(data, "emotions", MAX_SHORT_CHARS, dedupe=False)
    if not raw:
        raise CharacterError(
            "emotions must list at least one emotion (or be left out to use the default set: "
            + ", ".join(DEFAULT_EMOTIONS)
            + ")",
            "emotions",
        )
    emotions: list[str] = []
    for emotion in raw:
        emotion = emotion.lower()
        if not _EMOTION_RE.fullmatch(emotion):
            raise CharacterError(
                f"emotion {_short(emotion)} must be 1-32 letters a-z or '_' (like 'neutral' or "
                "'smug')",
                "emotions",
            )
        if emotion in emotions:
            raise CharacterError(f"emotions lists {emotion!r} twice", "emotions")
        emotions.append(emotion)
    return tuple(emotions)


def _extra(data: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    budget = [MAX_EXTRA_NODES]
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key in _KNOWN_KEYS:
            continue
        kept[str(key)] = _freeze(value, budget, 0, str(key))
    return tuple(sorted(kept.items()))


def _freeze(value: Any, budget: list[int], depth: int, key: str) -> Any:
    """Copy an unknown key's value into read-only, JSON-able form, within a size budget (a YAML
    alias bomb is small on disk but huge once walked)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise CharacterError(f"unknown keys hold too much data (limit {MAX_EXTRA_NODES} values)", key)
    if depth > MAX_EXTRA_DEPTH:
        raise CharacterError(f"unknown key {_short(key)} is nested too deeply", key)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if value.bit_length() > 64:
            raise CharacterError(f"unknown key {_short(key)} holds an integer too large to keep", key)
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return MappingProxyType(
            {str(k): _freeze(v, budget, depth + 1, key) for k, v in value.items()}
        )
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, budget, depth + 1, key) for v in value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)  # dates from YAML, msgpack extension types: keep a readable form


def _thaw(value: Any) -> Any:
    if isinstance(value, MappingProxyType):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


# --------------------------------------------------------------------------- Character Cards


def _card_spec(data: Mapping[str, Any]) -> str | None:
    spec = data.get("spec")
    if not isinstance(spec, str) or not spec.startswith("chara_card"):
        return None
    if spec not in _CARD_SPECS:
        raise CharacterError(
            f"unsupported card spec {_short(spec)}; expected one of {', '.join(_CARD_SPECS)}", "spec"
        )
    return spec


def _card_to_sheet(card: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Map a Character Card V2/V3 onto the sheet schema.

    Chat-oriented fields become persona text; game fields come from ``data.extensions.npc_brain``
    and win over the mapped ones, since they were written for npc-brain. Everything else is kept
    under the unknown key ``card``. Returns the sheet and the keys that came from card fields.
    """
    spec = _card_spec(card)
    data = card.get("data")
    if not isinstance(data, Mapping):
        raise CharacterError(
            f"data must be a map holding the card's fields, got {_describe(data)}", "data"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CharacterError("name is required: the card's data.name is missing or empty", "name")
    nickname = data.get("nickname")
    # V3 says {{char}} stands for the nickname when there is one.
    speaker = nickname.strip() if spec == "chara_card_v3" and isinstance(nickname, str) else ""
    speaker = speaker or name.strip()

    def card_text(key: str, fill: bool = True) -> str:
        value = data.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise CharacterError(f"data.{key} must be a string, got {_describe(value)}", key)
        return _fill_macros(value, speaker) if fill else value

    sheet: dict[str, Any] = {
        "name": name,
        "backstory": card_text("description"),
        "personality": card_text("personality"),
        "setting": card_text("scenario"),
        "first_line": card_text("first_mes"),
        "examples": split_card_examples(card_text("mes_example", fill=False), speaker, name),
    }
    extensions = data.get("extensions")
    if extensions is None:
        extensions = {}
    if not isinstance(extensions, Mapping):
        raise CharacterError(
            f"data.extensions must be a map, got {_describe(extensions)}", "extensions"
        )
    game = extensions.get("npc_brain")
    if game is None:
        game = {}
    if not isinstance(game, Mapping):
        raise CharacterError(
            f"data.extensions.npc_brain must be a map of sheet fields, got {_describe(game)}",
            "npc_brain",
        )
    game = {k: v for k, v in game.items() if k != "spec"}  # a sheet is never a card twice over
    leftovers: dict[str, Any] = {str(k): v for k, v in data.items() if k not in _CARD_MAPPED}
    other_extensions = {str(k): v for k, v in extensions.items() if k != "npc_brain"}
    if other_extensions:
        leftovers["extensions"] = other_extensions
    else:
        leftovers.pop("extensions", None)
    sheet["card"] = {"spec": spec, "spec_version": card.get("spec_version"), "data": leftovers}
    sheet.update(game)
    from_card = {key for key in _CARD_SOURCES if key not in game}
    return sheet, from_card


_CHAR_MACRO = re.compile(r"\{\{\s*char\s*\}\}|<bot>", re.IGNORECASE)
_USER_MACRO = re.compile(r"\{\{\s*user\s*\}\}|<user>", re.IGNORECASE)
_CHAR_TURN = re.compile(r"^\s*(?:\{\{\s*char\s*\}\}|<bot>)\s*:\s?(.*)$", re.IGNORECASE)
_USER_TURN = re.compile(r"^\s*(?:\{\{\s*user\s*\}\}|<user>)\s*:", re.IGNORECASE)


def _fill_macros(text: str, speaker: str) -> str:
    text = _CHAR_MACRO.sub(lambda _m: speaker, text)
    return _USER_MACRO.sub(lambda _m: USER_STAND_IN, text)


def split_card_examples(block: str, speaker: str, name: str = "") -> list[str]:
    """Turn a card's raw ``mes_example`` into the NPC's own sample lines.

    The block is chat dialogue in ``<START>``-separated scenes with ``{{char}}:`` / ``{{user}}:``
    turn prefixes (some cards write the character's name instead of ``{{char}}``). Only the
    character's turns are useful as NPC lines; a turn's continuation lines are joined with spaces
    because an NPC reply is a single line. Macros are filled in afterwards.
    """
    own_prefixes = tuple(f"{n.strip().casefold()}:" for n in (speaker, name) if n and n.strip())
    lines: list[str] = []

    def flush(turn: list[str] | None) -> None:
        if turn:
            line = " ".join(part.strip() for part in turn if part.strip())
            if line:
                lines.append(_fill_macros(line, speaker))

    for scene in re.split(r"<start>", block, flags=re.IGNORECASE):
        turn: list[str] | None = None  # None while the user is speaking
        for raw_line in scene.splitlines():
            own = _CHAR_TURN.match(raw_line)
            stripped = raw_line.strip()
            if own is None and stripped.casefold().startswith(own_prefixes):
                own = re.match(r"[^:]*:\s?(.*)$", stripped)
            if own is not None:
                flush(turn)
                turn = [own.group(1)]
            elif _USER_TURN.match(raw_line):
                flush(turn)
                turn = None
            elif turn is not None:
                turn.append(raw_line)
        flush(turn)
    return lines


# --------------------------------------------------------------------------- loading


def load_character(source: str | os.PathLike[str] | bytes | Mapping[str, Any]) -> Character:
    """Load a sheet from a path (.json/.yaml/.yml/.png/.msgpack), raw bytes (format sniffed) or a
    map. A ``str`` is always a path; pass sheet text as bytes."""
    if isinstance(source, Mapping):
        return character_from_mapping(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        label = "sheet"
        limit = MAX_CARD_PNG_BYTES if raw.startswith(_PNG_SIGNATURE) else MAX_SHEET_BYTES
        if len(raw) > limit:
            raise CharacterError(f"{label} is {len(raw)} bytes; the limit is {limit} bytes")
        kind = None
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = os.fsdecode(path)
        kind = _kind_from_suffix(label)
        raw = _read_file(path, label, MAX_CARD_PNG_BYTES if kind == "png" else MAX_SHEET_BYTES)
    else:
        raise CharacterError(
            f"cannot load a character from {_describe(source)}; pass a path, bytes or a map"
        )
    data = _parse(raw, kind, label)
    try:
        return character_from_mapping(data)
    except CharacterError as exc:
        raise CharacterError(f"{label}: {exc}", exc.field) from None


def _kind_from_suffix(path: str) -> str | None:
    suffix = os.path.splitext(path)[1].lower()
    return {
        ".json": "json",
        ".yaml": "yaml",
        ".yml": "yaml",
        ".png": "png",
        ".msgpack": "msgpack",
        ".mpk": "msgpack",
    }.get(suffix)


def _read_file(path: str | bytes, label: str, limit: int) -> bytes:
    """Read at most ``limit`` bytes, checking the size first: a sheet path can come from a game
    request, and must not make the daemon swallow a huge (or endless, like /dev/zero) file."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise CharacterError(f"{label} is a folder, not a character sheet file")
        if info.st_size > limit:
            raise CharacterError(f"{label} is {info.st_size} bytes; the limit is {limit} bytes")
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except CharacterError:
        raise
    except FileNotFoundError:
        raise CharacterError(f"{label}: no such file (a str is always a path; pass sheet text as "
                             "bytes)") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CharacterError(f"cannot read {label}: {reason}") from None
    if len(raw) > limit:
        raise CharacterError(f"{label} is over the limit of {limit} bytes")
    return raw


def _parse(raw: bytes, kind: str | None, label: str) -> Any:
    if kind is None:
        kind = _sniff(raw)
    if kind == "png":
        return _parse_png(raw, label)
    if kind == "msgpack":
        try:
            return msgpack.unpackb(raw, raw=False)
        except Exception as exc:  # untrusted binary: any parser failure is the sheet's fault
            if raw[:1] in _MSGPACK_MAP_MARKERS:  # sniffed: maybe it was YAML text after all
                try:
                    return _parse_text(raw, "yaml", label)
                except CharacterError:
                    pass
            raise CharacterError(f"{label}: not valid msgpack ({exc})") from None
    return _parse_text(raw, kind, label)


_MSGPACK_MAP_MARKERS = {bytes([b]) for b in (*range(0x80, 0x90), 0xDE, 0xDF)}


def _sniff(raw: bytes) -> str:
    if raw.startswith(_PNG_SIGNATURE):
        return "png"
    if raw[:1] in _MSGPACK_MAP_MARKERS:
        return "msgpack"
    if raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "json-or-yaml"
    return "yaml"


def _parse_text(raw: bytes, kind: str, label: str) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CharacterError(f"{label}: not UTF-8 text (bad byte at offset {exc.start})") from None
    if kind == "yaml":
        return _parse_yaml(text, label)
    try:
        return _parse_json(text, label)
    except CharacterError:
        if kind == "json":
            raise
        try:  # '{' also starts a YAML flow map such as {name: Brom}
            return _parse_yaml(text, label)
        except CharacterError:
            pass
        raise


def _parse_json(text: str, label: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CharacterError(
            f"{label}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise CharacterError(f"{label}: invalid JSON: {exc}") from None


def _parse_yaml(text: str, label: str) -> Any:
    try:
        return yaml.safe_load(text)  # never yaml.load: sheets may come from anyone
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CharacterError(f"{label}: invalid YAML{where}: {problem}") from None
    except Exception as exc:  # constructor bugs on odd scalars (bad dates), deep nesting
        raise CharacterError(f"{label}: invalid YAML: {type(exc).__name__}: {exc}") from None


def _parse_png(raw: bytes, label: str) -> Any:
    """Read the card JSON from a PNG's ``ccv3`` (V3, preferred) or ``chara`` (V2) text chunk."""
    from PIL import Image  # only card PNGs need Pillow

    try:
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as image:
            width, height = image.size
            limit = min(MAX_CARD_PIXELS, Image.MAX_IMAGE_PIXELS or MAX_CARD_PIXELS)
            if width * height > limit:
                raise CharacterError(
                    f"{label}: the card picture is {width}x{height}; the limit is {limit} pixels"
                )
            chunks = {str(k).lower(): v for k, v in image.text.items()}  # .text reads past IDAT
    except CharacterError:
        raise
    except Image.UnidentifiedImageError:
        raise CharacterError(f"{label}: not a readable PNG image") from None
    except Exception as exc:  # untrusted binary: any Pillow failure means a corrupt card
        raise CharacterError(f"{label}: corrupt PNG ({type(exc).__name__}: {exc})") from None
    payload = chunks.get("ccv3") or chunks.get("chara")
    if payload is None:
        raise CharacterError(f"{label}: PNG holds no character card (no 'ccv3' or 'chara' chunk)")
    payload = str(payload).strip()
    if not payload.startswith("{"):  # the specs say base64; a few tools write the JSON as is
        try:
            payload = base64.b64decode(payload).decode("utf-8")
        except (binascii.Error, ValueError):
            raise CharacterError(f"{label}: the card chunk is not valid base64 UTF-8 JSON") from None
    return _parse_json(payload, f"{label} (card chunk)")
