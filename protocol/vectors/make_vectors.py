#!/usr/bin/env python3
"""Writes the golden vectors of the npc-brain wire protocol (deterministic).

    python protocol/vectors/make_vectors.py            # rewrite the vectors
    python protocol/vectors/make_vectors.py --check    # exit 1 if any differ

For every message NAME there is NAME.json (readable; a bin field is written
as {"$bin": "<base64>"}) and NAME.msgpack (the exact frame bytes). bad/ holds
malformed frames and bad/expected.json the error each must produce.

Encoding rules the bytes pin (see SPEC.md "Encoding"): map entries in the
order written in the JSON, ints in their shortest msgpack form (unsigned
formats for non-negative values), floats as float64, text as str, bytes as bin.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import msgpack

HERE = Path(__file__).resolve().parent
BAD = HERE / "bad"


# -- JSON <-> message --------------------------------------------------------

def from_json(obj: Any) -> Any:
    """Vector JSON -> the Python message (bin fields become bytes)."""
    if isinstance(obj, dict):
        if list(obj) == ["$bin"]:
            return base64.b64decode(obj["$bin"], validate=True)
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return obj


def to_json(obj: Any) -> Any:
    """Python message -> vector JSON."""
    if isinstance(obj, (bytes, bytearray)):
        return {"$bin": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    return obj


def pack(msg: Any) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


# -- sample content (written for these vectors) ------------------------------

SHEET = {
    "name": "Maren Oakhollow",
    "id": "maren",
    "role": "blacksmith of the river village",
    "setting": "a low-fantasy valley where the ferry is the only way out",
    "personality": "gruff, patient with children, suspicious of nobles",
    "speech_style": "short sentences, smithing metaphors, never swears in front of customers",
    "backstory": (
        "Maren took over the forge when her uncle lost his sight. She has shod every horse in the "
        "valley for twenty winters and keeps a ledger of who still owes her. When the ferryman's "
        "daughter went missing she was the first to row across in the storm, and she has not "
        "forgiven the reeve for waiting until morning. She hums while she works and stops when "
        "she is lying."
    ),
    "knowledge": ["the ferry runs at dawn and dusk", "iron ore comes from the north quarry"],
    "goals": ["pay off the forge debt"],
    "relationships": {"reeve": "distrusts him", "ferryman": "old friend"},
    "catchphrases": ["Strike while it glows."],
    "banned_words": ["okay", "internet"],
    "secrets": ["she forged the reeve's seal once"],
    "emotions": ["neutral", "happy", "angry", "suspicious"],
    "first_line": "Mind the sparks.",
}


def rgb_pixels(width: int, height: int) -> bytes:
    return bytes((x * 40 + y * 7 + c * 90) % 256
                 for y in range(height) for x in range(width) for c in range(3))


def png_header(width: int, height: int) -> bytes:
    """Signature and IHDR only: enough for a size check, nothing to decode."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF))


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    """A valid 8-bit RGB PNG, stored (level 0) deflate so the bytes never
    depend on the zlib version."""
    raw = b"".join(b"\x00" + rgb_pixels(width, 1) for _ in range(height))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))


LIMITS = {
    "max_frame_bytes": 8388608, "max_utterance_chars": 1000, "max_screenshot_bytes": 6291456,
    "max_screenshot_pixels": 16777216, "max_screenshot_side": 4096,
    "max_session_state_bytes": 4194304, "max_string_chars": 4000, "max_depth": 8,
    "max_container_len": 1024, "max_history": 32, "max_scene_keys": 64,
    "max_deadline_ms": 120000, "max_tokens": 512, "idempotency_window_s": 300,
}
EMOTIONS = ["neutral", "happy", "sad", "angry", "afraid", "surprised", "disgusted"]
BUNDLE = "sha256:5f1c0e9ab2d44c7e"
TIMINGS = {"queue_ms": 0.4, "vision_ms": 12.5, "prefill_ms": 81.25, "decode_ms": 402.0,
           "total_ms": 496.15}
ERROR_TEXT = {
    "BAD_REQUEST": "missing field 'utterance'",
    "TOO_LARGE": "'utterance' is longer than 1000 characters",
    "UNSUPPORTED_VERSION": "protocol version 7 is not supported",
    "BAD_IMAGE": "rgb screenshot of 4x3 needs 36 bytes, got 35",
    "BAD_CHARACTER": "character sheet has no 'name'",
    "UNKNOWN_CHARACTER": "no character registered as 'sha256:00ff'",
    "BAD_STATE": "session state is from another bundle",
    "DUPLICATE_ID": "request id 'r-17' was used for a different request",
    "OVERLOADED": "queue is full (8 waiting)",
    "NOT_READY": "bundle still loading",
    "TIMEOUT": "deadline of 1500 ms passed",
    "CANCELLED": "cancelled by request c-3",
    "INTERNAL": "generation failed; see daemon log",
}


def messages() -> dict[str, dict[str, Any]]:
    m: dict[str, dict[str, Any]] = {}
    # client -> daemon
    m["hello"] = {"v": 1, "type": "hello", "versions": [1]}
    m["say_minimal"] = {"v": 1, "type": "say", "id": "r-1", "npc": "maren",
                        "character": {"name": "Maren Oakhollow"}, "utterance": "Hello there."}
    m["say_full"] = {
        "v": 1, "type": "say", "id": "r-2", "npc": "maren", "session": "save-3",
        "character": SHEET,
        "utterance": "Où est le passeur ? ⚒ Can you fix my sword before the ferry leaves?",
        "screenshot": {"format": "rgb", "data": rgb_pixels(4, 3), "width": 4, "height": 3},
        "scene": {"location": "forge", "time_of_day": "dusk", "visible": ["anvil", "player", "horse"]},
        "history": [{"speaker": "player", "text": "Good evening."},
                    {"speaker": "npc", "text": "Mind the sparks."}],
        "options": {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1,
                    "max_tokens": 48},
        "seed": 9223372036854775807, "deadline_ms": 2500, "stream": True,
    }
    m["say_png"] = {"v": 1, "type": "say", "id": "r-3", "npc": "maren", "character_ref": "maren",
                    "utterance": "What do you see?",
                    "screenshot": {"format": "png", "data": tiny_png()}, "seed": 42}
    m["say_read_text"] = {"v": 1, "type": "say", "id": "r-4", "npc": "maren", "character_ref": "maren",
                          "utterance": "What does that sign say?",
                          "screenshot": {"format": "png", "data": tiny_png(), "read_text": True}}
    m["register"] = {"v": 1, "type": "register", "id": "reg-1", "character": SHEET}
    m["cancel"] = {"v": 1, "type": "cancel", "id": "c-1", "target": "r-2"}
    m["reset_session"] = {"v": 1, "type": "reset_session", "id": "s-1", "npc": "maren",
                          "session": "save-3"}
    m["export_session"] = {"v": 1, "type": "export_session", "id": "s-2", "npc": "maren",
                           "session": "save-3"}
    m["import_session"] = {"v": 1, "type": "import_session", "id": "s-3", "npc": "maren",
                           "session": "save-3", "state": b"\x01npc-brain-session\x00\xff"}
    m["status_request"] = {"v": 1, "type": "status", "id": "st-1"}
    m["health_request"] = {"v": 1, "type": "health", "id": "h-1"}
    # daemon -> client
    m["welcome"] = {"v": 1, "type": "welcome", "version": 1, "bundle_id": BUNDLE,
                    "server": "npc-brain/0.1.0", "limits": LIMITS, "emotions_default": EMOTIONS}
    m["registered"] = {"v": 1, "type": "registered", "id": "reg-1",
                       "character_ref": "sha256:3b7e21aa90c4"}
    m["partial_0"] = {"v": 1, "type": "partial", "id": "r-2", "seq": 0,
                      "text": "Sword's chipped near the hilt."}
    m["partial_1"] = {"v": 1, "type": "partial", "id": "r-2", "seq": 1,
                      "text": " Ferry won't wait, and neither will I."}
    line = {"v": 1, "type": "line", "id": "r-2",
            "text": "Sword's chipped near the hilt. Ferry won't wait, and neither will I.",
            "emotion": "neutral",
            "scene": {"location": "forge", "time_of_day": "dusk", "visible": ["anvil", "player", "horse"]},
            "tokens": 19, "timings": TIMINGS, "bundle_id": BUNDLE, "seed": 9223372036854775807}
    m["line"] = line
    m["line_cached"] = dict(line, cached=True)
    m["ok"] = {"v": 1, "type": "ok", "id": "c-1"}
    m["session_state"] = {"v": 1, "type": "session_state", "id": "s-2", "npc": "maren",
                          "session": "save-3", "state": b"\x01npc-brain-session\x00\xff"}
    status = {"v": 1, "id": "st-1", "live": True, "ready": True, "bundle_id": BUNDLE,
              "queue_depth": 3, "active": 2, "capacity": 4, "uptime_s": 3600.5}
    m["status_reply"] = {"v": 1, "type": "status", **status}
    m["health_reply"] = {"v": 1, "type": "health", **dict(status, id="h-1", queue_depth=0)}
    for code, text in ERROR_TEXT.items():
        err: dict[str, Any] = {"v": 1, "type": "error", "id": "r-17", "code": code, "message": text}
        if code in ("OVERLOADED", "NOT_READY"):
            err["retry_after_ms"] = 250 if code == "OVERLOADED" else 5000
        if code == "UNSUPPORTED_VERSION":
            err["supported"] = [1]
        m["error_" + code.lower()] = err
    m["error_null_id"] = {"v": 1, "type": "error", "id": None, "code": "BAD_REQUEST",
                          "message": "truncated frame"}
    return m


# -- malformed frames ----------------------------------------------------------

def say(**changes: Any) -> dict[str, Any]:
    """A minimal valid say request with `changes` applied; a None value removes that field.
    tests/test_protocol.py builds its requests with it too."""
    msg = {"v": 1, "type": "say", "id": "b-1", "npc": "maren",
           "character": {"name": "Maren"}, "utterance": "Hello."}
    for key, value in changes.items():
        if value is None:
            msg.pop(key, None)
        else:
            msg[key] = value
    return msg


def bad_frames() -> dict[str, tuple[bytes, str, str | None]]:
    """name -> (frame, expected error code, expected request id)."""
    good = pack(messages()["say_full"])
    nested: Any = "deep"
    for _ in range(9):
        nested = {"k": nested}
    rng = random.Random(20240611)
    b: dict[str, tuple[bytes, str, str | None]] = {
        "empty": (b"", "BAD_REQUEST", None),
        "truncated": (good[: len(good) // 2], "BAD_REQUEST", None),
        "truncated_header": (b"\x8f", "BAD_REQUEST", None),
        "random_bytes": (bytes([0x8a]) + bytes(rng.randrange(256) for _ in range(63)),
                         "BAD_REQUEST", None),
        "not_a_map": (pack(["say", "r-1"]), "BAD_REQUEST", None),
        "nil_frame": (b"\xc0", "BAD_REQUEST", None),
        "trailing_bytes": (pack({"v": 1, "type": "health", "id": "h-1"}) + b"\x00",
                           "BAD_REQUEST", None),
        "reserved_c1": (b"\x81\xa1v\xc1", "BAD_REQUEST", None),
        "deep_nesting": (pack(say(character={"name": "M", "x": nested})), "BAD_REQUEST", None),
        "very_deep": (b"\x81\xa1x" + b"\x91" * 100000 + b"\xc0", "BAD_REQUEST", None),
        "huge_array_len": (b"\x81\xa1x\xdd\xff\xff\xff\xff", "TOO_LARGE", None),
        "huge_map_len": (b"\xdf\xff\xff\xff\xff", "TOO_LARGE", None),
        "huge_str_len": (b"\x81\xa1x\xdb\xff\xff\xff\xff", "TOO_LARGE", None),
        "huge_bin_len": (b"\x81\xa1x\xc6\xff\xff\xff\xff", "TOO_LARGE", None),
        "bin_beyond_frame": (b"\x81\xa1x\xc6\x00\x00\x10\x00abc", "BAD_REQUEST", None),
        "array_beyond_frame": (b"\x81\xa1x\xdc\x03\xe8\x01\x02", "BAD_REQUEST", None),
        "ext_fixext": (b"\x81\xa1x\xd4\x05\x00", "BAD_REQUEST", None),
        "ext_timestamp": (b"\x81\xa1x\xd6\xff\x00\x00\x00\x01", "BAD_REQUEST", None),
        "ext8": (b"\x81\xa1x\xc7\x02\x01ab", "BAD_REQUEST", None),
        "int_key": (b"\x82\xa1v\x01\x07\xa3say", "BAD_REQUEST", None),
        "bin_key": (b"\x82\xa1v\x01\xc4\x04type\xa3say", "BAD_REQUEST", None),
        "invalid_utf8": (b"\x83\xa1v\x01\xa4type\xa3say\xa2id\xa2\xc3\x28", "BAD_REQUEST", None),
        "missing_type": (pack({"v": 1, "id": "b-1"}), "BAD_REQUEST", "b-1"),
        "missing_v": (pack({"type": "status", "id": "b-1"}), "BAD_REQUEST", "b-1"),
        "v_is_string": (pack({"v": "1", "type": "status", "id": "b-1"}), "BAD_REQUEST", "b-1"),
        "future_version": (pack({"v": 7, "type": "status", "id": "b-1"}),
                           "UNSUPPORTED_VERSION", "b-1"),
        "unknown_type": (pack({"v": 1, "type": "dance", "id": "b-1"}), "BAD_REQUEST", "b-1"),
        "missing_id": (pack({"v": 1, "type": "status"}), "BAD_REQUEST", None),
        "bad_id": (pack({"v": 1, "type": "status", "id": "has space"}), "BAD_REQUEST", None),
        "hello_no_versions": (pack({"v": 1, "type": "hello", "versions": []}), "BAD_REQUEST", None),
        "say_utterance_int": (pack(say(utterance=5)), "BAD_REQUEST", "b-1"),
        "say_utterance_empty": (pack(say(utterance="")), "BAD_REQUEST", "b-1"),
        "say_utterance_too_long": (pack(say(utterance="a" * 1001)), "TOO_LARGE", "b-1"),
        "say_no_character": (pack(say(character=None)), "BAD_REQUEST", "b-1"),
        "say_both_characters": (pack(say(character_ref="maren")), "BAD_REQUEST", "b-1"),
        "say_character_list": (pack(say(character=["Maren"])), "BAD_REQUEST", "b-1"),
        "say_sheet_string_too_long": (pack(say(character={"name": "M", "backstory": "x" * 4001})),
                                      "TOO_LARGE", "b-1"),
        "say_bad_npc": (pack(say(npc="Maren!")), "BAD_REQUEST", "b-1"),
        "say_bad_session": (pack(say(session="")), "BAD_REQUEST", "b-1"),
        "say_seed_negative": (pack(say(seed=-1)), "BAD_REQUEST", "b-1"),
        "say_seed_bool": (pack(say(seed=True)), "BAD_REQUEST", "b-1"),
        "say_seed_too_big": (pack(say(seed=2**63)), "BAD_REQUEST", "b-1"),
        "say_deadline_zero": (pack(say(deadline_ms=0)), "BAD_REQUEST", "b-1"),
        "say_deadline_float": (pack(say(deadline_ms=100.0)), "BAD_REQUEST", "b-1"),
        "say_stream_int": (pack(say(stream=1)), "BAD_REQUEST", "b-1"),
        "say_history_too_long": (pack(say(history=[{"speaker": "player", "text": "hi"}] * 33)),
                                 "TOO_LARGE", "b-1"),
        "say_history_bad_speaker": (pack(say(history=[{"speaker": "narrator", "text": "hi"}])),
                                    "BAD_REQUEST", "b-1"),
        "say_scene_int_value": (pack(say(scene={"location": 3})), "BAD_REQUEST", "b-1"),
        "say_unknown_option": (pack(say(options={"temprature": 0.5})), "BAD_REQUEST", "b-1"),
        "say_temperature_range": (pack(say(options={"temperature": 5.0})), "BAD_REQUEST", "b-1"),
        "say_top_p_zero": (pack(say(options={"top_p": 0.0})), "BAD_REQUEST", "b-1"),
        "say_nan_temperature": (pack(say(options={"temperature": float("nan")})),
                                "BAD_REQUEST", "b-1"),
        "say_screenshot_bad_format": (pack(say(screenshot={"format": "bmp", "data": b"BM"})),
                                      "BAD_REQUEST", "b-1"),
        "say_screenshot_data_str": (pack(say(screenshot={"format": "png", "data": "iVBOR"})),
                                    "BAD_REQUEST", "b-1"),
        "say_rgb_no_size": (pack(say(screenshot={"format": "rgb", "data": bytes(12)})),
                            "BAD_REQUEST", "b-1"),
        "say_rgb_wrong_length": (pack(say(screenshot={"format": "rgb", "data": bytes(35),
                                                       "width": 4, "height": 3})), "BAD_IMAGE", "b-1"),
        "say_rgb_too_wide": (pack(say(screenshot={"format": "rgb", "data": bytes(3),
                                                   "width": 4097, "height": 1})), "TOO_LARGE", "b-1"),
        "say_read_text_int": (pack(say(screenshot={"format": "png", "data": tiny_png(), "read_text": 1})),
                              "BAD_REQUEST", "b-1"),
        "say_png_bad_magic": (pack(say(screenshot={"format": "png", "data": b"GIF89a" + bytes(30)})),
                              "BAD_IMAGE", "b-1"),
        "say_png_huge_header": (pack(say(screenshot={"format": "png", "data": png_header(5000, 5000)})),
                                "TOO_LARGE", "b-1"),
        "say_jpeg_truncated": (pack(say(screenshot={"format": "jpeg", "data": b"\xff\xd8\xff\xe0"})),
                               "BAD_IMAGE", "b-1"),
        "cancel_no_target": (pack({"v": 1, "type": "cancel", "id": "b-1"}), "BAD_REQUEST", "b-1"),
        "import_state_str": (pack({"v": 1, "type": "import_session", "id": "b-1", "npc": "maren",
                                   "state": "abc"}), "BAD_REQUEST", "b-1"),
        "register_empty_sheet": (pack({"v": 1, "type": "register", "id": "b-1", "character": {}}),
                                 "BAD_REQUEST", "b-1"),
    }
    return b


# -- write / check ---------------------------------------------------------------

def render() -> dict[Path, bytes]:
    files: dict[Path, bytes] = {}
    for name, msg in messages().items():
        files[HERE / f"{name}.json"] = dump_json(to_json(msg)).encode("utf-8")
        files[HERE / f"{name}.msgpack"] = pack(msg)
    expected = {}
    for name, (frame, code, rid) in bad_frames().items():
        files[BAD / f"{name}.msgpack"] = frame
        expected[name] = {"code": code, "request_id": rid}
    files[BAD / "expected.json"] = dump_json(expected).encode("utf-8")
    return files


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [str(p.relative_to(HERE)) for p, data in files.items()
                 if not p.exists() or p.read_bytes() != data]
        for name in stale:
            print("differs:", name)
        return 1 if stale else 0
    BAD.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        path.write_bytes(data)
    print(f"wrote {len(files)} files under {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
