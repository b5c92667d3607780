"""Wire protocol: codec, validation rules, golden vectors, malformed corpus."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npc_brain import protocol as p
from npc_brain.protocol import ErrorCode, ProtocolError

VECTORS = Path(__file__).resolve().parents[1] / "protocol" / "vectors"
BAD = VECTORS / "bad"
EXPECTED_BAD = json.loads((BAD / "expected.json").read_text())
NAMES = sorted(f.stem for f in VECTORS.glob("*.json"))


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def vector(name: str) -> tuple[dict, bytes]:
    obj = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    return obj, (VECTORS / f"{name}.msgpack").read_bytes()


def frame(**fields) -> bytes:
    return p.encode(fields)


def say(**changes) -> dict:
    """The generator's minimal say request (a None value removes a field), as id r1 saying "Hi."."""
    return gen.say(**{"id": "r1", "utterance": "Hi.", **changes})


def error_of(msg_or_frame) -> ProtocolError:
    raw = msg_or_frame if isinstance(msg_or_frame, bytes) else p.encode(msg_or_frame)
    with pytest.raises(ProtocolError) as info:
        p.parse_request(raw)
    return info.value


# -- golden vectors -----------------------------------------------------------

def test_vector_set_is_complete():
    assert len(NAMES) >= 30
    for code in ErrorCode:
        assert f"error_{code.value.lower()}" in NAMES
    assert {"hello", "welcome", "say_full", "partial_0", "line", "ok"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_vector_json_encodes_to_committed_bytes(name):
    obj, raw = vector(name)
    assert p.encode(gen.from_json(obj)) == raw


@pytest.mark.parametrize("name", NAMES)
def test_vector_bytes_decode_to_json(name):
    obj, raw = vector(name)
    assert gen.to_json(p.decode(raw)) == obj


def test_generator_is_deterministic_and_matches_committed_files():
    for path, data in gen.render().items():
        assert path.read_bytes() == data, path.name


@pytest.mark.parametrize("name", [n for n in NAMES if not n.endswith("_reply")
                                  and json.loads((VECTORS / f"{n}.json").read_text())["type"]
                                  in p.REQUEST_TYPES])
def test_request_vectors_validate(name):
    _, raw = vector(name)
    assert isinstance(p.parse_request(raw), (p.Hello, p.Say, p.Register, p.Cancel, p.ResetSession,
                                             p.ExportSession, p.ImportSession, p.Status, p.Health))


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith(("welcome", "registered", "partial",
                                                                     "line", "error", "ok", "session_state"))
                                  or n.endswith("_reply")])
def test_reply_vectors_decode_as_replies(name):
    _, raw = vector(name)
    assert p.decode_reply(raw)["type"] in p.REPLY_TYPES


def test_builders_reproduce_reply_vectors():
    line = vector("line")[0]
    built = p.line_msg("r-2", text=line["text"], emotion="neutral", scene=line["scene"],
                       tokens=19, timings=line["timings"], bundle_id=line["bundle_id"],
                       seed=line["seed"])
    assert p.encode(built) == vector("line")[1]
    assert p.encode(dict(built, cached=True)) == vector("line_cached")[1]
    assert p.encode(p.line_msg("r-2", text=line["text"], emotion="neutral", scene=line["scene"],
                               tokens=19, timings=line["timings"], bundle_id=line["bundle_id"],
                               seed=line["seed"], cached=True)) == vector("line_cached")[1]
    assert p.encode(p.partial_msg("r-2", 0, "Sword's chipped near the hilt.")) == vector("partial_0")[1]
    assert p.encode(p.ok_msg("c-1")) == vector("ok")[1]
    assert p.encode(p.registered_msg("reg-1", "sha256:3b7e21aa90c4")) == vector("registered")[1]
    w = vector("welcome")[0]
    assert p.encode(p.welcome_msg(bundle_id=w["bundle_id"], server=w["server"])) == vector("welcome")[1]
    s = vector("status_reply")[0]
    fields = {k: s[k] for k in ("live", "ready", "bundle_id", "queue_depth", "active", "capacity",
                                "uptime_s")}
    assert p.encode(p.status_msg("st-1", **fields)) == vector("status_reply")[1]
    assert p.encode(p.health_msg("h-1", **dict(fields, queue_depth=0))) == vector("health_reply")[1]
    state = vector("session_state")[0]
    assert p.encode(p.session_state_msg("s-2", "maren", "save-3", gen.from_json(state["state"]))) \
        == vector("session_state")[1]
    for code in ErrorCode:
        v = vector(f"error_{code.value.lower()}")[0]
        built = p.error_msg(code, v["message"], "r-17", retry_after_ms=v.get("retry_after_ms"),
                            supported=v.get("supported"))
        assert p.encode(built) == vector(f"error_{code.value.lower()}")[1]
    assert p.encode(p.error_msg("BAD_REQUEST", "truncated frame")) == vector("error_null_id")[1]


def test_limits_match_welcome_vector():
    assert vector("welcome")[0]["limits"] == p.LIMITS
    assert vector("welcome")[0]["emotions_default"] == list(p.DEFAULT_EMOTIONS)


# -- malformed corpus -----------------------------------------------------------

def test_bad_corpus_matches_manifest():
    names = {f.stem for f in BAD.glob("*.msgpack")}
    assert names == set(EXPECTED_BAD)


@pytest.mark.parametrize("name", sorted(EXPECTED_BAD))
def test_bad_vector_gives_expected_error(name):
    exc = error_of((BAD / f"{name}.msgpack").read_bytes())
    assert exc.code.value == EXPECTED_BAD[name]["code"], exc.message
    assert exc.request_id == EXPECTED_BAD[name]["request_id"]
    reply = p.error_from(exc)
    assert reply["id"] == exc.request_id and reply["code"] == exc.code.value
    assert p.decode_reply(p.encode(reply))["type"] == "error"


# -- round trips ----------------------------------------------------------------

def test_say_full_round_trip():
    req = p.parse_request(vector("say_full")[1])
    assert isinstance(req, p.Say)
    assert req.id == "r-2" and req.npc == "maren" and req.session == "save-3"
    assert req.character["name"] == "Maren Oakhollow" and req.character_ref is None
    assert req.screenshot == p.Screenshot("rgb", gen.rgb_pixels(4, 3), 4, 3)
    assert req.scene["visible"] == ["anvil", "player", "horse"]
    assert req.history == (p.Turn("player", "Good evening."), p.Turn("npc", "Mind the sparks."))
    assert req.options == p.Options(0.7, 0.9, 40, 1.1, 48)
    assert req.options.as_dict()["top_k"] == 40
    assert req.seed == 2**63 - 1 and req.deadline_ms == 2500 and req.stream is True


def test_say_defaults():
    req = p.parse_request(p.encode(say()))
    assert req.session == "default" and req.screenshot is None and req.scene is None
    assert req.history == () and req.options == p.Options() and req.options.as_dict() == {}
    assert req.seed is None and req.deadline_ms is None and req.stream is False


def test_nil_counts_as_absent():
    req = p.parse_request(p.encode(dict(say(), session=None, seed=None, screenshot=None)))
    assert req.session == "default" and req.seed is None


def test_png_size_read_from_header():
    req = p.parse_request(vector("say_png")[1])
    assert req.screenshot.format == "png" and (req.screenshot.width, req.screenshot.height) == (2, 2)
    assert req.character_ref == "maren" and req.seed == 42


def test_jpeg_size_read_from_header():
    Image = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    Image.new("RGB", (7, 5), (10, 20, 30)).save(buf, "JPEG")
    req = p.parse_request(p.encode(say(screenshot={"format": "jpeg", "data": buf.getvalue()})))
    assert (req.screenshot.width, req.screenshot.height) == (7, 5)
    exc = error_of(say(screenshot={"format": "jpeg", "data": buf.getvalue(), "width": 8}))
    assert exc.code is ErrorCode.BAD_IMAGE


def test_other_requests_round_trip():
    assert p.parse_request(vector("hello")[1]) == p.Hello((1,))
    assert p.parse_request(vector("cancel")[1]) == p.Cancel("c-1", "r-2")
    assert p.parse_request(vector("reset_session")[1]) == p.ResetSession("s-1", "maren", "save-3")
    assert p.parse_request(vector("export_session")[1]) == p.ExportSession("s-2", "maren", "save-3")
    imp = p.parse_request(vector("import_session")[1])
    assert imp == p.ImportSession("s-3", "maren", b"\x01npc-brain-session\x00\xff", "save-3")
    assert p.parse_request(vector("status_request")[1]) == p.Status("st-1")
    assert p.parse_request(vector("health_request")[1]) == p.Health("h-1")
    reg = p.parse_request(vector("register")[1])
    assert isinstance(reg, p.Register) and reg.character["id"] == "maren"
    assert p.parse_request(frame(v=1, type="reset_session", id="x", npc="a")).session == "default"


def test_unknown_top_level_fields_are_ignored():
    assert p.parse_request(p.encode(say(future_field={"a": 1}))).utterance == "Hi."


# -- versions ------------------------------------------------------------------

def test_negotiate():
    assert p.negotiate(p.Hello((1, 2, 3))) == 1
    exc = pytest.raises(ProtocolError, p.negotiate, p.Hello((2, 3), id="h")).value
    assert exc.code is ErrorCode.UNSUPPORTED_VERSION and exc.request_id == "h"
    assert p.error_from(exc)["supported"] == [1]


def test_hello_from_a_future_client_is_understood():
    req = p.parse_request(frame(v=5, type="hello", versions=[5, 1], id="h-9"))
    assert req == p.Hello((5, 1), "h-9") and p.negotiate(req) == 1


def test_hello_rules():
    assert error_of(frame(v=1, type="hello", versions="1")).code is ErrorCode.BAD_REQUEST
    assert error_of(frame(v=1, type="hello", versions=[0])).code is ErrorCode.BAD_REQUEST
    assert error_of(frame(v=1, type="hello", versions=[True])).code is ErrorCode.BAD_REQUEST
    assert error_of(frame(v=1, type="hello", versions=[1] * 17)).code is ErrorCode.TOO_LARGE
    assert error_of(frame(v=1, type="hello", versions=[1], id="bad id")).code is ErrorCode.BAD_REQUEST


def test_unsupported_version_names_the_request():
    exc = error_of(dict(say(), v=2))
    assert exc.code is ErrorCode.UNSUPPORTED_VERSION and exc.request_id == "r1"


# -- validation rules ------------------------------------------------------------

BAD_SAYS = [
    (dict(id="x" * 65), ErrorCode.BAD_REQUEST, None),
    (dict(id=7), ErrorCode.BAD_REQUEST, None),
    (dict(npc="x" * 65), ErrorCode.TOO_LARGE, "r1"),
    (dict(npc="UPPER"), ErrorCode.BAD_REQUEST, "r1"),
    (dict(npc=None), ErrorCode.BAD_REQUEST, "r1"),
    (dict(session="a b"), ErrorCode.BAD_REQUEST, "r1"),
    (dict(utterance=None), ErrorCode.BAD_REQUEST, "r1"),
    (dict(utterance="é" * 1001), ErrorCode.TOO_LARGE, "r1"),
    (dict(character="Maren"), ErrorCode.BAD_REQUEST, "r1"),
    (dict(character={"name": "M", "blob": b"x"}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(character=None, character_ref="has space"), ErrorCode.BAD_REQUEST, "r1"),
    (dict(character=None, character_ref="x" * 129), ErrorCode.TOO_LARGE, "r1"),
    (dict(seed=1.5), ErrorCode.BAD_REQUEST, "r1"),
    (dict(deadline_ms=120_001), ErrorCode.BAD_REQUEST, "r1"),
    (dict(stream="yes"), ErrorCode.BAD_REQUEST, "r1"),
    (dict(scene=["forge"]), ErrorCode.BAD_REQUEST, "r1"),
    (dict(scene={"": "x"}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(scene={"k": "x" * 257}), ErrorCode.TOO_LARGE, "r1"),
    (dict(scene={"k": ["a"] * 33}), ErrorCode.TOO_LARGE, "r1"),
    (dict(scene={f"k{i}": "v" for i in range(65)}), ErrorCode.TOO_LARGE, "r1"),
    (dict(scene={"k": [1]}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(history={"speaker": "player"}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(history=["hi"]), ErrorCode.BAD_REQUEST, "r1"),
    (dict(history=[{"speaker": "npc"}]), ErrorCode.BAD_REQUEST, "r1"),
    (dict(history=[{"speaker": "npc", "text": "x" * 1001}]), ErrorCode.TOO_LARGE, "r1"),
    (dict(options=[0.5]), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"temperature": -0.1}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"temperature": "hot"}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"top_p": 1.01}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"min_p": 1.0}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"min_p": -0.1}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"top_k": 0.5}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"top_k": 1001}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"repetition_penalty": 0}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"max_tokens": 0}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"max_tokens": 513}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(options={"temperature": float("inf")}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(screenshot=b"\x89PNG"), ErrorCode.BAD_REQUEST, "r1"),
    (dict(screenshot={"data": b"x"}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(screenshot={"format": "png"}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(screenshot={"format": "rgb", "data": b"", "width": 1, "height": 1}), ErrorCode.BAD_REQUEST, "r1"),
    (dict(screenshot={"format": "rgba", "data": bytes(4), "width": 0, "height": 1}),
     ErrorCode.BAD_REQUEST, "r1"),
    (dict(screenshot={"format": "rgba", "data": bytes(12), "width": 3, "height": 3}),
     ErrorCode.BAD_IMAGE, "r1"),
    (dict(screenshot={"format": "rgb", "data": bytes(3), "width": 4096, "height": 4097}),
     ErrorCode.TOO_LARGE, "r1"),
]


@pytest.mark.parametrize("changes,code,rid", BAD_SAYS)
def test_say_validation(changes, code, rid):
    exc = error_of(say(**changes))
    assert (exc.code, exc.request_id) == (code, rid), exc.message


def test_options_accept_ints_as_floats():
    req = p.parse_request(p.encode(say(options={"temperature": 1, "top_p": 1, "repetition_penalty": 2})))
    assert req.options.temperature == 1.0 and isinstance(req.options.temperature, float)
    assert p.parse_request(p.encode(say(options={"min_p": 0.1}))).options.as_dict() == {"min_p": 0.1}


def test_limits_at_the_edge_pass():
    req = p.parse_request(p.encode(say(
        utterance="ü" * p.MAX_UTTERANCE_CHARS, seed=0, deadline_ms=p.MAX_DEADLINE_MS,
        character={"name": "M", "backstory": "x" * p.MAX_STRING_CHARS},
        history=[{"speaker": "npc", "text": "hi"}] * p.MAX_HISTORY,
        options={"temperature": 0, "top_k": 0, "max_tokens": p.MAX_TOKENS},
        screenshot={"format": "rgb", "data": bytes(3 * 4096), "width": 4096, "height": 1})))
    assert len(req.utterance) == 1000 and len(req.history) == 32


def test_screenshot_at_byte_limit():
    data = bytes(p.MAX_SCREENSHOT_BYTES)  # 6 MiB rgba = 1024 x 1536
    req = p.parse_request(p.encode(say(screenshot={"format": "rgba", "data": data,
                                                   "width": 1024, "height": 1536})))
    assert req.screenshot.width == 1024
    exc = error_of(say(screenshot={"format": "rgba", "data": data + bytes(4), "width": 1, "height": 1}))
    assert exc.code is ErrorCode.TOO_LARGE and exc.request_id is None  # caught while decoding


def test_frame_over_limit():
    raw = p.encode(say(character={"name": "M", "pad": [b"x" * (3 * p.MiB)] * 3}))
    assert len(raw) > p.MAX_FRAME_BYTES
    assert error_of(raw).code is ErrorCode.TOO_LARGE


def test_other_request_rules():
    assert error_of(frame(v=1, type="cancel", id="c", target="bad target")).code is ErrorCode.BAD_REQUEST
    assert error_of(frame(v=1, type="register", id="c")).code is ErrorCode.BAD_REQUEST
    assert error_of(frame(v=1, type="register", id="c", character={"name": "x" * 4001})).code \
        is ErrorCode.TOO_LARGE
    assert error_of(frame(v=1, type="export_session", id="c")).code is ErrorCode.BAD_REQUEST
    assert error_of(frame(v=1, type="import_session", id="c", npc="a")).code is ErrorCode.BAD_REQUEST
    big = bytes(p.MAX_SESSION_STATE_BYTES + 1)
    assert error_of(frame(v=1, type="import_session", id="c", npc="a", state=big)).code \
        is ErrorCode.TOO_LARGE
    assert error_of(frame(v=1, type=3, id="c")).code is ErrorCode.BAD_REQUEST
    assert error_of(frame(v=True, type="status", id="c")).code is ErrorCode.BAD_REQUEST


# -- depth and length limits -------------------------------------------------------

def nest(depth: int):
    """A say whose top-level map is depth 1 and whose innermost map is `depth`."""
    inner = {"name": "M"}
    for _ in range(depth - 2):
        inner = {"name": "M", "x": inner}
    return say(character=inner)


def test_depth_limit():
    assert p.parse_request(p.encode(nest(p.MAX_DEPTH))).id == "r1"
    exc = error_of(nest(p.MAX_DEPTH + 1))
    assert exc.code is ErrorCode.BAD_REQUEST and "nesting" in exc.message


def test_container_and_node_limits():
    ok = say(character={"name": "M", "knowledge": ["f"] * p.MAX_CONTAINER_LEN})
    assert p.parse_request(p.encode(ok))
    too_long = say(character={"name": "M", "knowledge": ["f"] * (p.MAX_CONTAINER_LEN + 1)})
    assert error_of(too_long).code is ErrorCode.TOO_LARGE
    many = say(character={"name": "M", "k": [["f"] * 1000] * 21})
    exc = error_of(many)
    assert exc.code is ErrorCode.TOO_LARGE and "objects" in exc.message


def test_string_byte_limit_while_decoding():
    raw = p.encode(say(character={"name": "M", "x": "x" * (p.MAX_STRING_BYTES + 1)}))
    assert error_of(raw).code is ErrorCode.TOO_LARGE


def test_decode_accepts_any_valid_encoding():
    # a non-canonical but valid frame (map16, str8 keys, uint32 v) decodes the same
    raw = (b"\xde\x00\x03" + b"\xd9\x01v" + b"\xce\x00\x00\x00\x01" + b"\xd9\x04type"
           + b"\xd9\x06health" + b"\xd9\x02id" + b"\xd9\x01h")
    assert p.parse_request(raw) == p.Health("h")


def test_split_envelope():
    assert p.split_envelope([b"ident", b"payload"]) == (b"ident", b"payload")
    with pytest.raises(ProtocolError) as info:
        p.split_envelope([b"ident", b"", b"payload"])
    assert info.value.code is ErrorCode.BAD_REQUEST and info.value.identity == b"ident"


def test_decode_reply_rejects_non_replies():
    with pytest.raises(ProtocolError):
        p.decode_reply(vector("say_minimal")[1])
    with pytest.raises(ProtocolError):
        p.decode_reply(p.encode({"v": 1, "type": "line"}))


def test_protocol_error_fields():
    exc = ProtocolError(ErrorCode.TIMEOUT, "late", "r9")
    assert (exc.code, exc.message, exc.request_id) == (ErrorCode.TIMEOUT, "late", "r9")
    assert str(ErrorCode.TIMEOUT) == "TIMEOUT" and ErrorCode("TIMEOUT") == "TIMEOUT"


# -- fuzzing: only ProtocolError, ever ---------------------------------------------

def _parse_only_protocol_errors(raw: bytes) -> None:
    try:
        p.parse_request(raw)
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        assert exc.request_id is None or p.REQUEST_ID_RE.fullmatch(exc.request_id)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256))
def test_arbitrary_bytes_only_raise_protocol_error(raw):
    _parse_only_protocol_errors(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([b"\x80", b"\x81", b"\x83", b"\x86", b"\xde\x00\x04"]))
def test_map_prefixed_bytes_only_raise_protocol_error(raw, head):
    _parse_only_protocol_errors(head + raw)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
say_keys = st.sampled_from(["v", "type", "id", "npc", "session", "character", "character_ref",
                            "utterance", "screenshot", "scene", "history", "options", "seed",
                            "deadline_ms", "stream", "versions", "target", "state"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(say_keys, msgpack_values, max_size=10),
       st.sampled_from(list(p.REQUEST_TYPES) + ["bogus"]))
def test_structured_garbage_only_raises_protocol_error(fields, mtype):
    fields.setdefault("type", mtype)
    _parse_only_protocol_errors(msgpack.packb(fields, use_bin_type=True))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.integers(0, 255))
def test_corrupted_vectors_only_raise_protocol_error(index, value):
    raw = bytearray(vector("say_full")[1])
    raw[index % len(raw)] = value
    _parse_only_protocol_errors(bytes(raw))
    _parse_only_protocol_errors(bytes(raw[: index % len(raw)]))
