"""Wire protocol codec: msgpack frames <-> typed requests, and reply builders.

The spec is ``protocol/SPEC.md``; the golden byte vectors in ``protocol/vectors``
pin the encoding. This module does no I/O: the daemon reads a frame from its
ROUTER socket, calls :func:`parse_request` (``decode`` + ``validate``), and
sends back frames built with the ``*_msg`` helpers and :func:`encode`.

Every failure to understand a frame is a :class:`ProtocolError` carrying the
error code to send and, when it could be recovered, the request id to name.
"""

from __future__ import annotations

import enum
import math
import re
import struct
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

import msgpack

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

# ---------------------------------------------------------------------------
# Limits (mirrored in protocol/SPEC.md and sent in `welcome.limits`).
# ---------------------------------------------------------------------------
MiB = 1024 * 1024
MAX_FRAME_BYTES = 8 * MiB  # also the daemon's ZMQ_MAXMSGSIZE
MAX_SCREENSHOT_BYTES = 6 * MiB
MAX_SCREENSHOT_SIDE = 4096
MAX_SCREENSHOT_PIXELS = 4096 * 4096  # 16,777,216
MAX_SESSION_STATE_BYTES = 4 * MiB
MAX_BIN_BYTES = max(MAX_SCREENSHOT_BYTES, MAX_SESSION_STATE_BYTES)
MAX_UTTERANCE_CHARS = 1000
MAX_STRING_CHARS = 4000  # any string inside a character sheet
MAX_STRING_BYTES = 4 * MAX_STRING_CHARS  # UTF-8 worst case, checked while decoding
MAX_DEPTH = 8  # the top-level map is depth 1
MAX_CONTAINER_LEN = 1024  # entries in any one map or array
MAX_NODES = 20_000  # objects in one frame, all levels together
MAX_HISTORY = 32
MAX_SCENE_KEYS = 64
MAX_SCENE_VALUES = 32  # items in one list-valued scene entry
MAX_SCENE_KEY_CHARS = 64
MAX_SCENE_VALUE_CHARS = 256
MAX_VERSIONS = 16
MAX_DEADLINE_MS = 120_000
MAX_SEED = 2**63 - 1
MAX_TOKENS = 512
IDEMPOTENCY_WINDOW_S = 300

LIMITS: dict[str, int] = {
    "max_frame_bytes": MAX_FRAME_BYTES,
    "max_utterance_chars": MAX_UTTERANCE_CHARS,
    "max_screenshot_bytes": MAX_SCREENSHOT_BYTES,
    "max_screenshot_pixels": MAX_SCREENSHOT_PIXELS,
    "max_screenshot_side": MAX_SCREENSHOT_SIDE,
    "max_session_state_bytes": MAX_SESSION_STATE_BYTES,
    "max_string_chars": MAX_STRING_CHARS,
    "max_depth": MAX_DEPTH,
    "max_container_len": MAX_CONTAINER_LEN,
    "max_history": MAX_HISTORY,
    "max_scene_keys": MAX_SCENE_KEYS,
    "max_deadline_ms": MAX_DEADLINE_MS,
    "max_tokens": MAX_TOKENS,
    "idempotency_window_s": IDEMPOTENCY_WINDOW_S,
}

DEFAULT_EMOTIONS: tuple[str, ...] = (
    "neutral", "happy", "sad", "angry", "afraid", "surprised", "disgusted",
)
DEFAULT_SESSION = "default"
SCREENSHOT_FORMATS = ("png", "jpeg", "rgb", "rgba")
SPEAKERS = ("player", "npc")

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")  # npc and session ids
CHARACTER_REF_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class ErrorCode(str, enum.Enum):
    BAD_REQUEST = "BAD_REQUEST"  # malformed frame, wrong type, missing field, bad value
    TOO_LARGE = "TOO_LARGE"  # a size, length or count limit was exceeded
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    BAD_IMAGE = "BAD_IMAGE"  # screenshot bytes do not match their format/size
    BAD_CHARACTER = "BAD_CHARACTER"  # the character sheet failed validation
    UNKNOWN_CHARACTER = "UNKNOWN_CHARACTER"  # character_ref not registered
    BAD_STATE = "BAD_STATE"  # import_session state not understood
    DUPLICATE_ID = "DUPLICATE_ID"  # request id reused with a different request
    OVERLOADED = "OVERLOADED"  # queue full; retry after retry_after_ms
    NOT_READY = "NOT_READY"  # daemon still loading; retry after retry_after_ms
    TIMEOUT = "TIMEOUT"  # deadline_ms ran out
    CANCELLED = "CANCELLED"  # a cancel for this request arrived
    INTERNAL = "INTERNAL"

    def __str__(self) -> str:
        return self.value


class ProtocolError(Exception):
    """A frame the daemon cannot serve; answer it with :func:`error_from`."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None):
        super().__init__(f"{code.value}: {message}")
        self.code = ErrorCode(code)
        self.message = message
        self.request_id = request_id


def _bad(message: str, request_id: str | None = None) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message, request_id)


def _large(message: str, request_id: str | None = None) -> ProtocolError:
    return ProtocolError(ErrorCode.TOO_LARGE, message, request_id)


# ---------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------

def encode(msg: Mapping[str, Any]) -> bytes:
    """One message -> one frame. Floats go out as float64, ints in their
    shortest form, str as str and bytes as bin (see SPEC "Encoding")."""
    return msgpack.packb(msg, use_bin_type=True)


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"ext type {code} not allowed")


def _scan(frame: bytes) -> None:
    """Walk the msgpack structure without building it.

    Checks, before anything is allocated: well-formedness, nesting depth,
    container lengths, total object count, str/bin sizes, string-only map
    keys and no ext types. Raises ProtocolError (request id unknown here).
    """
    n = len(frame)
    pos = 0
    nodes = 0
    # each stack entry: [items left, is_map, items consumed]
    stack: list[list[Any]] = []
    root_done = False
    while True:
        if stack and stack[-1][0] == 0:
            stack.pop()
            continue
        if not stack and root_done:
            break
        expect_key = False
        if stack:
            top = stack[-1]
            expect_key = top[1] and top[2] % 2 == 0
            top[0] -= 1
            top[2] += 1
        else:
            root_done = True
        if pos >= n:
            raise _bad("truncated frame")
        b = frame[pos]
        pos += 1
        nodes += 1
        if nodes > MAX_NODES:
            raise _large(f"more than {MAX_NODES} objects in one frame")
        is_str = 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB)
        if expect_key and not is_str:
            raise _bad("map keys must be strings")
        count = -1  # container children, if any
        size = 0  # payload bytes to skip
        if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
            pass
        elif 0x80 <= b <= 0x8F:
            count, is_map = 2 * (b & 0x0F), True
        elif 0x90 <= b <= 0x9F:
            count, is_map = b & 0x0F, False
        elif 0xA0 <= b <= 0xBF:
            size = b & 0x1F
        elif b in (0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2, 0xD3):
            size = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
                    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}[b]
        elif b in (0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF):
            width = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4,
                     0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}[b]
            if pos + width > n:
                raise _bad("truncated frame")
            length = int.from_bytes(frame[pos:pos + width], "big")
            pos += width
            if b in (0xC4, 0xC5, 0xC6):
                if length > MAX_BIN_BYTES:
                    raise _large(f"bin of {length} bytes (max {MAX_BIN_BYTES})")
                size = length
            elif b in (0xD9, 0xDA, 0xDB):
                if length > MAX_STRING_BYTES:
                    raise _large(f"string of {length} bytes (max {MAX_STRING_BYTES})")
                size = length
            else:
                if length > MAX_CONTAINER_LEN:
                    raise _large(f"container of {length} entries (max {MAX_CONTAINER_LEN})")
                is_map = b >= 0xDE
                count = 2 * length if is_map else length
        elif b == 0xC1:
            raise _bad("reserved byte 0xc1")
        else:  # 0xC7-0xC9, 0xD4-0xD8
            raise _bad("msgpack ext types are not allowed")
        if size:
            if pos + size > n:
                raise _bad("truncated frame")
            pos += size
        if count >= 0:
            if len(stack) + 1 > MAX_DEPTH:
                raise _bad(f"nesting deeper than {MAX_DEPTH}")
            if count > n - pos:  # every child needs at least one byte
                raise _bad("truncated frame")
            stack.append([count, is_map, 0])
    if pos != n:
        raise _bad("trailing bytes after the message")


def decode(frame: bytes) -> dict[str, Any]:
    """One frame -> one message map (str keys, bin as bytes, arrays as lists).

    Raises ProtocolError(BAD_REQUEST / TOO_LARGE) with ``request_id=None``.
    """
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise _bad("frame must be bytes")
    frame = bytes(frame)
    if len(frame) > MAX_FRAME_BYTES:
        raise _large(f"frame of {len(frame)} bytes (max {MAX_FRAME_BYTES})")
    if not frame:
        raise _bad("empty frame")
    if frame[0] not in range(0x80, 0x90) and frame[0] not in (0xDE, 0xDF):
        raise _bad("a message must be a msgpack map")
    _scan(frame)
    try:
        msg = msgpack.unpackb(
            frame, raw=False, strict_map_key=True, use_list=True,
            max_bin_len=MAX_BIN_BYTES, max_str_len=MAX_STRING_BYTES,
            max_array_len=MAX_CONTAINER_LEN, max_map_len=MAX_CONTAINER_LEN,
            max_ext_len=0, ext_hook=_reject_ext,
        )
    except UnicodeDecodeError:
        raise _bad("string is not valid UTF-8") from None
    except Exception as exc:  # defence in depth; _scan should catch these first
        raise _bad(f"undecodable frame: {exc}") from None
    if not isinstance(msg, dict):  # pragma: no cover - _scan checked the first byte
        raise _bad("a message must be a msgpack map")
    return msg


# ---------------------------------------------------------------------------
# Typed requests
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Screenshot:
    format: str  # png | jpeg | rgb | rgba
    data: bytes
    width: int  # for png/jpeg read from the image header
    height: int
    read_text: bool = False  # also read short on-screen text (OCR) into the scene's `text` tag


@dataclass(frozen=True)
class Options:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_tokens: int | None = None
    min_p: float | None = None  # added later: last, so positional construction keeps working

    def as_dict(self) -> dict[str, Any]:
        """Only the options the client set."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Turn:
    speaker: str  # player | npc
    text: str


@dataclass(frozen=True)
class Hello:
    versions: tuple[int, ...]
    id: str | None = None


@dataclass(frozen=True)
class Say:
    id: str
    npc: str
    utterance: str
    session: str = DEFAULT_SESSION
    character: dict[str, Any] | None = None  # inline sheet, unvalidated (character.py does that)
    character_ref: str | None = None
    screenshot: Screenshot | None = None
    scene: dict[str, str | list[str]] | None = None
    history: tuple[Turn, ...] = ()
    options: Options = field(default_factory=Options)
    seed: int | None = None
    deadline_ms: int | None = None
    stream: bool = False


@dataclass(frozen=True)
class Register:
    id: str
    character: dict[str, Any]


@dataclass(frozen=True)
class Cancel:
    id: str
    target: str


@dataclass(frozen=True)
class ResetSession:
    id: str
    npc: str
    session: str = DEFAULT_SESSION


@dataclass(frozen=True)
class ExportSession:
    id: str
    npc: str
    session: str = DEFAULT_SESSION


@dataclass(frozen=True)
class ImportSession:
    id: str
    npc: str
    state: bytes
    session: str = DEFAULT_SESSION


@dataclass(frozen=True)
class Status:
    id: str


@dataclass(frozen=True)
class Health:
    id: str


Request = (Hello | Say | Register | Cancel | ResetSession | ExportSession
           | ImportSession | Status | Health)


# -- field helpers ----------------------------------------------------------

def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)


class _Fields:
    """Reads fields of one map, naming the request id in every error."""

    def __init__(self, msg: Mapping[str, Any], rid: str | None, where: str = ""):
        self.msg, self.rid, self.where = msg, rid, where

    def _name(self, key: str) -> str:
        return f"{self.where}{key}"

    def bad(self, message: str) -> ProtocolError:
        return _bad(message, self.rid)

    def large(self, message: str) -> ProtocolError:
        return _large(message, self.rid)

    def get(self, key: str, kind: type | tuple[type, ...], required: bool) -> Any:
        if key not in self.msg or self.msg[key] is None:
            if required:
                raise self.bad(f"missing field '{self._name(key)}'")
            return None
        value = self.msg[key]
        if isinstance(value, bool) and kind is not bool:
            raise self.bad(f"'{self._name(key)}' has the wrong type")
        if not isinstance(value, kind):
            raise self.bad(f"'{self._name(key)}' has the wrong type")
        return value

    def text(self, key: str, *, required: bool = True, max_chars: int,
             pattern: re.Pattern[str] | None = None, min_chars: int = 0) -> str | None:
        value = self.get(key, str, required)
        if value is None:
            return None
        if len(value) > max_chars:
            raise self.large(f"'{self._name(key)}' is longer than {max_chars} characters")
        if len(value) < min_chars:
            raise self.bad(f"'{self._name(key)}' is empty")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.bad(f"'{self._name(key)}' must match {pattern.pattern}")
        return value

    def integer(self, key: str, lo: int, hi: int, *, required: bool = False) -> int | None:
        value = self.get(key, int, required)
        if value is not None and not lo <= value <= hi:
            raise self.bad(f"'{self._name(key)}' must be in {lo}..{hi}")
        return value

    def number(self, key: str, lo: float, hi: float, *, lo_open: bool = False) -> float | None:
        value = self.get(key, (int, float), False)
        if value is None:
            return None
        if not _is_num(value) or value > hi or value < lo or (lo_open and value == lo):
            bracket = "(" if lo_open else "["
            raise self.bad(f"'{self._name(key)}' must be in {bracket}{lo}, {hi}]")
        return float(value)


def _recover_id(msg: Any) -> str | None:
    if isinstance(msg, dict):
        rid = msg.get("id")
        if isinstance(rid, str) and REQUEST_ID_RE.fullmatch(rid):
            return rid
    return None


def _check_strings(value: Any, f: _Fields, where: str) -> None:
    """Every string in a character sheet is at most MAX_STRING_CHARS."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if len(item) > MAX_STRING_CHARS:
                raise f.large(f"a string in '{where}' is longer than {MAX_STRING_CHARS} characters")
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, bytes):
            raise f.bad(f"'{where}' may not contain binary data")


def _character(f: _Fields, required: bool) -> dict[str, Any] | None:
    sheet = f.get("character", dict, required)
    if sheet is None:
        return None
    if not sheet:
        raise f.bad("'character' is an empty map")
    _check_strings(sheet, f, "character")
    return sheet


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    if data[:3] != b"\xff\xd8\xff":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        seglen = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        if marker == 0xDA or seglen < 2:  # start of scan before any frame header
            return None
        pos += 2 + seglen
    return None


def _screenshot(f: _Fields) -> Screenshot | None:
    raw = f.get("screenshot", dict, False)
    if raw is None:
        return None
    s = _Fields(raw, f.rid, "screenshot.")
    fmt = s.get("format", str, True)
    if fmt not in SCREENSHOT_FORMATS:
        raise s.bad(f"'screenshot.format' must be one of {', '.join(SCREENSHOT_FORMATS)}")
    data = s.get("data", bytes, True)
    if not data:
        raise s.bad("'screenshot.data' is empty")
    if len(data) > MAX_SCREENSHOT_BYTES:
        raise s.large(f"screenshot of {len(data)} bytes (max {MAX_SCREENSHOT_BYTES})")
    width = s.integer("width", 1, 2**32 - 1, required=fmt in ("rgb", "rgba"))
    height = s.integer("height", 1, 2**32 - 1, required=fmt in ("rgb", "rgba"))
    if fmt in ("png", "jpeg"):
        size = _png_size(data) if fmt == "png" else _jpeg_size(data)
        if size is None:
            raise ProtocolError(ErrorCode.BAD_IMAGE, f"screenshot is not a readable {fmt}", f.rid)
        if (width is not None and width != size[0]) or (height is not None and height != size[1]):
            raise ProtocolError(ErrorCode.BAD_IMAGE,
                                "screenshot width/height differ from the image header", f.rid)
        width, height = size
    if not (1 <= width and 1 <= height):
        raise ProtocolError(ErrorCode.BAD_IMAGE, "screenshot has a zero dimension", f.rid)
    if width > MAX_SCREENSHOT_SIDE or height > MAX_SCREENSHOT_SIDE or width * height > MAX_SCREENSHOT_PIXELS:
        raise s.large(f"screenshot of {width}x{height} pixels (max {MAX_SCREENSHOT_SIDE} a side, "
                      f"{MAX_SCREENSHOT_PIXELS} in all)")
    if fmt in ("rgb", "rgba"):
        channels = 3 if fmt == "rgb" else 4
        if len(data) != width * height * channels:
            raise ProtocolError(
                ErrorCode.BAD_IMAGE,
                f"{fmt} screenshot of {width}x{height} needs {width * height * channels} bytes, "
                f"got {len(data)}", f.rid)
    return Screenshot(fmt, data, width, height, bool(s.get("read_text", bool, False)))


def _scene(f: _Fields) -> dict[str, str | list[str]] | None:
    scene = f.get("scene", dict, False)
    if scene is None:
        return None
    if len(scene) > MAX_SCENE_KEYS:
        raise f.large(f"'scene' has more than {MAX_SCENE_KEYS} keys")
    for key, value in scene.items():
        if not key or len(key) > MAX_SCENE_KEY_CHARS:
            raise f.bad(f"scene keys must be 1..{MAX_SCENE_KEY_CHARS} characters")
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and len(value) > MAX_SCENE_VALUES:
            raise f.large(f"'scene.{key}' has more than {MAX_SCENE_VALUES} values")
        for item in values:
            if not isinstance(item, str):
                raise f.bad(f"'scene.{key}' must be a string or a list of strings")
            if len(item) > MAX_SCENE_VALUE_CHARS:
                raise f.large(f"'scene.{key}' is longer than {MAX_SCENE_VALUE_CHARS} characters")
    return scene


def _history(f: _Fields) -> tuple[Turn, ...]:
    raw = f.get("history", list, False)
    if raw is None:
        return ()
    if len(raw) > MAX_HISTORY:
        raise f.large(f"'history' has more than {MAX_HISTORY} turns")
    turns = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise f.bad(f"'history[{i}]' must be a map")
        t = _Fields(item, f.rid, f"history[{i}].")
        speaker = t.get("speaker", str, True)
        if speaker not in SPEAKERS:
            raise t.bad(f"'history[{i}].speaker' must be 'player' or 'npc'")
        text = t.text("text", max_chars=MAX_UTTERANCE_CHARS)
        turns.append(Turn(speaker, text))
    return tuple(turns)


_OPTION_KEYS = frozenset(f.name for f in fields(Options))  # the keys a client may set


def _options(f: _Fields) -> Options:
    raw = f.get("options", dict, False)
    if raw is None:
        return Options()
    unknown = sorted(set(raw) - _OPTION_KEYS)
    if unknown:
        raise f.bad(f"unknown option(s): {', '.join(unknown)}")
    o = _Fields(raw, f.rid, "options.")
    return Options(
        temperature=o.number("temperature", 0.0, 2.0),
        top_p=o.number("top_p", 0.0, 1.0, lo_open=True),
        min_p=o.number("min_p", 0.0, 0.99),
        top_k=o.integer("top_k", 0, 1000),
        repetition_penalty=o.number("repetition_penalty", 0.0, 3.0, lo_open=True),
        max_tokens=o.integer("max_tokens", 1, MAX_TOKENS),
    )


def _npc_session(f: _Fields) -> tuple[str, str]:
    npc = f.text("npc", max_chars=64, pattern=NAME_RE)
    session = f.text("session", required=False, max_chars=64, pattern=NAME_RE)
    return npc, session or DEFAULT_SESSION


def _say(f: _Fields, rid: str) -> Say:
    npc, session = _npc_session(f)
    character = _character(f, required=False)
    ref = f.text("character_ref", required=False, max_chars=128, pattern=CHARACTER_REF_RE)
    if (character is None) == (ref is None):
        raise f.bad("give exactly one of 'character' and 'character_ref'")
    utterance = f.text("utterance", max_chars=MAX_UTTERANCE_CHARS, min_chars=1)
    stream = f.get("stream", bool, False)
    return Say(
        id=rid, npc=npc, session=session, utterance=utterance,
        character=character, character_ref=ref,
        screenshot=_screenshot(f), scene=_scene(f), history=_history(f),
        options=_options(f),
        seed=f.integer("seed", 0, MAX_SEED),
        deadline_ms=f.integer("deadline_ms", 1, MAX_DEADLINE_MS),
        stream=bool(stream),
    )


def _hello(f: _Fields, rid: str | None) -> Hello:
    versions = f.get("versions", list, True)
    if not versions:
        raise f.bad("'versions' is empty")
    if len(versions) > MAX_VERSIONS:
        raise f.large(f"'versions' has more than {MAX_VERSIONS} entries")
    if not all(_is_int(v) and v >= 1 for v in versions):
        raise f.bad("'versions' must be positive integers")
    return Hello(versions=tuple(versions), id=rid)


def _import(f: _Fields, rid: str) -> ImportSession:
    npc, session = _npc_session(f)
    state = f.get("state", bytes, True)
    if len(state) > MAX_SESSION_STATE_BYTES:
        raise f.large(f"'state' is larger than {MAX_SESSION_STATE_BYTES} bytes")
    return ImportSession(id=rid, npc=npc, session=session, state=state)


REQUEST_TYPES = ("hello", "say", "register", "cancel", "reset_session",
                 "export_session", "import_session", "status", "health")


def validate(msg: Mapping[str, Any]) -> Request:
    """A decoded message -> a typed request, or ProtocolError naming the id
    whenever the message carried a well-formed one."""
    rid = _recover_id(msg)
    if not isinstance(msg, dict):
        raise _bad("a message must be a map")
    f = _Fields(msg, rid)
    mtype = f.get("type", str, True)
    version = f.get("v", int, True)
    if mtype == "hello":  # the hello envelope is the same in every version
        if "id" in msg and msg["id"] is not None and rid is None:
            raise _bad(f"'id' must match {REQUEST_ID_RE.pattern}")
        return _hello(f, rid)
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION,
                            f"protocol version {version} is not supported", rid)
    if mtype not in REQUEST_TYPES:
        raise f.bad(f"unknown message type '{mtype[:64]}'")
    if rid is None:
        if "id" in msg:
            raise _bad(f"'id' must match {REQUEST_ID_RE.pattern}")
        raise _bad("missing field 'id'")
    if mtype == "say":
        return _say(f, rid)
    if mtype == "register":
        return Register(id=rid, character=_character(f, required=True))
    if mtype == "cancel":
        return Cancel(id=rid, target=f.text("target", max_chars=64, pattern=REQUEST_ID_RE))
    if mtype == "reset_session":
        return ResetSession(rid, *_npc_session(f))
    if mtype == "export_session":
        return ExportSession(rid, *_npc_session(f))
    if mtype == "import_session":
        return _import(f, rid)
    if mtype == "status":
        return Status(rid)
    return Health(rid)


def parse_request(frame: bytes) -> Request:
    """decode + validate: the daemon's one call per incoming frame."""
    return validate(decode(frame))


def negotiate(hello: Hello, supported: Sequence[int] = SUPPORTED_VERSIONS) -> int:
    """The highest version both sides speak, or ProtocolError(UNSUPPORTED_VERSION)."""
    common = set(hello.versions) & set(supported)
    if not common:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION,
                            f"no common protocol version; this daemon speaks {list(supported)}",
                            hello.id)
    return max(common)


def split_envelope(frames: Sequence[bytes]) -> tuple[bytes, bytes]:
    """ROUTER multipart [identity, payload] -> (identity, payload).

    Anything else (a REQ-style empty delimiter, extra frames) is BAD_REQUEST;
    the identity is still needed to answer, so it comes back on the error."""
    if len(frames) != 2:
        err = _bad(f"expected exactly one payload frame, got {max(len(frames) - 1, 0)}")
        err.identity = frames[0] if frames else b""  # type: ignore[attr-defined]
        raise err
    return bytes(frames[0]), bytes(frames[1])


# ---------------------------------------------------------------------------
# Replies (daemon -> client). Each builder returns a plain dict for encode().
# ---------------------------------------------------------------------------

def _msg(mtype: str, request_id: str | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": mtype}
    if request_id is not None or mtype == "error":
        out["id"] = request_id
    for key, value in fields.items():
        if value is not None:
            out[key] = value
    return out


def welcome_msg(*, bundle_id: str, server: str, version: int = PROTOCOL_VERSION,
                limits: Mapping[str, int] | None = None,
                emotions_default: Sequence[str] = DEFAULT_EMOTIONS,
                request_id: str | None = None) -> dict[str, Any]:
    return _msg("welcome", request_id, version=version, bundle_id=bundle_id, server=server,
                limits=dict(LIMITS if limits is None else limits),
                emotions_default=list(emotions_default))


def registered_msg(request_id: str, character_ref: str) -> dict[str, Any]:
    return _msg("registered", request_id, character_ref=character_ref)


def partial_msg(request_id: str, seq: int, text: str) -> dict[str, Any]:
    return _msg("partial", request_id, seq=seq, text=text)


TIMING_KEYS = ("queue_ms", "vision_ms", "prefill_ms", "decode_ms", "total_ms")


def line_msg(request_id: str, *, text: str, emotion: str, scene: Mapping[str, Any],
             tokens: int, timings: Mapping[str, float], bundle_id: str, seed: int,
             cached: bool | None = None) -> dict[str, Any]:
    """The one terminal success reply to a `say`. Timings go out as float64
    milliseconds in TIMING_KEYS order (missing stages as 0.0)."""
    times = {k: float(timings.get(k, 0.0)) for k in TIMING_KEYS}
    return _msg("line", request_id, text=text, emotion=emotion, scene=dict(scene),
                tokens=int(tokens), timings=times, bundle_id=bundle_id, seed=int(seed),
                cached=cached)


def error_msg(code: ErrorCode | str, message: str, request_id: str | None = None, *,
              retry_after_ms: int | None = None,
              supported: Sequence[int] | None = None) -> dict[str, Any]:
    return _msg("error", request_id, code=ErrorCode(code).value, message=message,
                retry_after_ms=retry_after_ms,
                supported=list(supported) if supported is not None else None)


def error_from(exc: ProtocolError) -> dict[str, Any]:
    """The reply to a frame that raised ProtocolError."""
    supported = list(SUPPORTED_VERSIONS) if exc.code is ErrorCode.UNSUPPORTED_VERSION else None
    return error_msg(exc.code, exc.message, exc.request_id, supported=supported)


def ok_msg(request_id: str) -> dict[str, Any]:
    return _msg("ok", request_id)


def session_state_msg(request_id: str, npc: str, session: str, state: bytes) -> dict[str, Any]:
    return _msg("session_state", request_id, npc=npc, session=session, state=bytes(state))


def status_msg(request_id: str, *, live: bool, ready: bool, bundle_id: str | None,
               queue_depth: int, active: int, capacity: int, uptime_s: float,
               type_: str = "status", **extra: Any) -> dict[str, Any]:
    """`status` reply; extra keys (e.g. memory, model stats) follow the fixed ones."""
    return _msg(type_, request_id, live=live, ready=ready, bundle_id=bundle_id,
                queue_depth=queue_depth, active=active, capacity=capacity,
                uptime_s=float(uptime_s), **extra)


def health_msg(request_id: str, *, live: bool, ready: bool, bundle_id: str | None,
               queue_depth: int, active: int, capacity: int, uptime_s: float,
               **extra: Any) -> dict[str, Any]:
    """`health` reply: same fields as status, computed cheaply."""
    return status_msg(request_id, live=live, ready=ready, bundle_id=bundle_id,
                      queue_depth=queue_depth, active=active, capacity=capacity,
                      uptime_s=uptime_s, type_="health", **extra)


REPLY_TYPES = ("welcome", "registered", "partial", "line", "error", "ok",
               "session_state", "status", "health")
TERMINAL_TYPES = ("welcome", "registered", "line", "error", "ok", "session_state",
                  "status", "health")


def decode_reply(frame: bytes) -> dict[str, Any]:
    """Client side: one reply frame -> its map, checked for `v`, a known
    `type` and, except for `welcome`, an `id` field."""
    msg = decode(frame)
    if msg.get("v") != PROTOCOL_VERSION:
        raise _bad(f"reply has protocol version {msg.get('v')!r}")
    if msg.get("type") not in REPLY_TYPES:
        raise _bad(f"unknown reply type {msg.get('type')!r}")
    if msg["type"] != "welcome" and "id" not in msg:
        raise _bad("reply without 'id'")
    return msg
