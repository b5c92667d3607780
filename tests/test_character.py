"""Character sheet loader: samples, validation messages, card import, and "only CharacterError"."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import msgpack
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from npc_brain.character import (
    DEFAULT_EMOTIONS,
    MAX_CARD_PNG_BYTES,
    MAX_SHEET_BYTES,
    Character,
    CharacterError,
    character_from_mapping,
    load_character,
    split_card_examples,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "samples" / "characters").glob("*.yaml"))
CARDS = ROOT / "samples" / "cards"
V2_CARD = CARDS / "tamsin_card_v2.json"
V3_PNG = CARDS / "corvin_card_v3.png"


def _png(text_chunks: dict[str, str], size: tuple[int, int] = (8, 8)) -> bytes:
    info = PngInfo()
    for key, value in text_chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _b64(card: dict) -> str:
    return base64.b64encode(json.dumps(card).encode("utf-8")).decode("ascii")


# --------------------------------------------------------------------------- samples


def test_there_are_enough_samples_including_the_demo_pair():
    names = {path.name for path in SAMPLES}
    assert len(SAMPLES) >= 10
    assert {"brom_blacksmith.yaml", "mara_tavernkeeper.yaml"} <= names


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_loads_and_is_complete(path):
    character = load_character(path)
    assert character.name and character.id
    for field in ("role", "setting", "personality", "speech_style", "backstory", "first_line"):
        assert getattr(character, field), f"{path.name}: {field} is empty"
    assert 4 <= len(character.knowledge) <= 6
    assert character.goals and character.relationships and character.banned_words
    assert 1 <= len(character.catchphrases) <= 3
    assert 1 <= len(character.secrets) <= 2
    assert 3 <= len(character.examples) <= 4
    assert character.extra == ()  # samples use only schema keys


def test_sample_ids_are_unique_and_some_use_custom_emotions():
    characters = [load_character(path) for path in SAMPLES]
    assert len({c.id for c in characters}) == len(characters)
    assert any(c.emotions != DEFAULT_EMOTIONS for c in characters)
    assert any("smug" in c.emotions for c in characters)


def test_demo_pair_share_emberfall():
    brom = load_character(ROOT / "samples/characters/brom_blacksmith.yaml")
    mara = load_character(str(ROOT / "samples/characters/mara_tavernkeeper.yaml"))
    assert brom.id == "brom_blacksmith" and mara.id == "mara_tavernkeeper"
    assert "Emberfall" in brom.setting and "Emberfall" in mara.setting
    assert "internet" in brom.banned_words


# --------------------------------------------------------------------------- hash and round trip


def test_hash_is_stable_across_key_order_and_formats():
    data = yaml.safe_load((ROOT / "samples/characters/mara_tavernkeeper.yaml").read_text())
    reordered = dict(reversed(list(data.items())))
    reordered["relationships"] = dict(reversed(list(data["relationships"].items())))
    a, b = character_from_mapping(data), character_from_mapping(reordered)
    assert a == b and a.sheet_hash() == b.sheet_hash()
    assert len(a.sheet_hash()) == 64 and int(a.sheet_hash(), 16) >= 0
    assert load_character(json.dumps(data).encode()).sheet_hash() == a.sheet_hash()
    assert load_character(msgpack.packb(data)).sheet_hash() == a.sheet_hash()
    assert hash(a) == hash(b)


def test_hash_is_a_fixed_value_across_runs():
    # Pinned: the persona KV cache on disk is keyed by this; changing it must be deliberate.
    character = character_from_mapping({"name": "Brom"})
    assert character.sheet_hash() == character_from_mapping({"name": "Brom", "id": "brom"}).sheet_hash()
    assert character.sheet_hash() == "cab51302cd6fb0448260eada7e86641f51648e9c9d82494c8b8e01e9808a1adf"


def test_hash_changes_when_the_sheet_changes():
    base = {"name": "Brom", "knowledge": ["a", "b"]}
    assert character_from_mapping(base).sheet_hash() != character_from_mapping(
        {"name": "Brom", "knowledge": ["b", "a"]}
    ).sheet_hash()
    assert character_from_mapping(base).sheet_hash() != character_from_mapping(
        {**base, "note": "x"}
    ).sheet_hash()


@pytest.mark.parametrize("path", [*SAMPLES, V2_CARD, V3_PNG], ids=lambda p: p.name)
def test_round_trip_through_to_dict(path):
    character = load_character(path)
    plain = character.to_dict()
    assert json.loads(json.dumps(plain)) == plain  # plain JSON-able data
    again = character_from_mapping(plain)
    assert again == character and again.sheet_hash() == character.sheet_hash()


def test_id_is_slugified_from_name():
    assert character_from_mapping({"name": "  Brom Ironhand  "}).id == "brom_ironhand"
    assert character_from_mapping({"name": "Ærwyn Dûn-Mor"}).id == "rwyn_dun_mor"
    assert character_from_mapping({"name": "龍"}).id.startswith("npc_")
    assert character_from_mapping({"name": "x" * 200}).id == "x" * 64


# --------------------------------------------------------------------------- validation


def test_defaults_and_single_string_lists():
    character = character_from_mapping({"name": "Brom", "knowledge": "iron is scarce", "emotions": "Calm"})
    assert character.knowledge == ("iron is scarce",)
    assert character.emotions == ("calm",)
    assert character_from_mapping({"name": "Brom"}).emotions == DEFAULT_EMOTIONS
    assert character_from_mapping({"name": "Brom", "knowledge": None}).knowledge == ()


def test_emotions_are_lowercased_and_short_lists_deduplicated():
    character = character_from_mapping(
        {"name": "B", "emotions": ["Neutral", "SMUG"], "banned_words": ["okay", "okay", " "]}
    )
    assert character.emotions == ("neutral", "smug")
    assert character.banned_words == ("okay",)


@pytest.mark.parametrize(
    ("sheet", "field", "words"),
    [
        ({}, "name", "required"),
        ({"name": "   "}, "name", "required"),
        ({"name": 7}, "name", "string"),
        ({"name": "B", "id": "Brom Smith"}, "id", "a-z"),
        ({"name": "B", "id": "x" * 65}, "id", "1-64"),
        ({"name": "B", "id": 5}, "id", "string"),
        ({"name": "B", "role": ["smith"]}, "role", "string"),
        ({"name": "B", "backstory": "x" * 4001}, "backstory", "4000"),
        ({"name": "B", "knowledge": 42}, "knowledge", "list of strings"),
        ({"name": "B", "knowledge": {"a": "b"}}, "knowledge", "list of strings"),
        ({"name": "B", "knowledge": ["ok", 3]}, "knowledge", "knowledge[1]"),
        ({"name": "B", "goals": ["g"] * 65}, "goals", "64"),
        ({"name": "B", "banned_words": ["x" * 201]}, "banned_words", "200"),
        ({"name": "B", "catchphrases": [None]}, "catchphrases", "string"),
        ({"name": "B", "emotions": []}, "emotions", "at least one"),
        ({"name": "B", "emotions": ["happy", "HAPPY"]}, "emotions", "twice"),
        ({"name": "B", "emotions": ["very happy"]}, "emotions", "letters"),
        ({"name": "B", "emotions": ["x" * 33]}, "emotions", "1-32"),
        ({"name": "B", "relationships": ["Mara"]}, "relationships", "map"),
        ({"name": "B", "relationships": {"Mara": 3}}, "relationships", "Mara"),
        ({"name": "B", "relationships": {"": "x"}}, "relationships", "names"),
        ({"name": "B", "secrets": ["\ud800"]}, "secrets", "Unicode"),
        ({"spec": "chara_card_v9", "data": {}}, "spec", "unsupported"),
        ({"spec": "chara_card_v2", "data": "nope"}, "data", "map"),
        ({"spec": "chara_card_v2", "data": {"name": ""}}, "name", "required"),
        ({"spec": "chara_card_v2", "data": {"name": "C", "description": 3}}, "description", "data.description"),
        ({"spec": "chara_card_v2", "data": {"name": "C", "extensions": {"npc_brain": []}}}, "npc_brain", "map"),
    ],
)
def test_validation_errors_name_the_field(sheet, field, words):
    with pytest.raises(CharacterError) as caught:
        character_from_mapping(sheet)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_card_field_errors_point_at_the_card_field():
    card = {"spec": "chara_card_v2", "data": {"name": "C", "description": "x" * 5000}}
    with pytest.raises(CharacterError, match=r"backstory.*data\.description"):
        character_from_mapping(card)


def test_top_level_must_be_a_map():
    for value in ([1, 2], "name: x", None, 3):
        with pytest.raises(CharacterError, match="must be a map"):
            character_from_mapping(value)  # type: ignore[arg-type]
    with pytest.raises(CharacterError, match="must be a map"):
        load_character(b"- just\n- a list\n")
    with pytest.raises(CharacterError, match="must be a map"):
        load_character(b"")


def test_unknown_keys_are_kept_read_only_in_extra():
    character = character_from_mapping(
        {"name": "B", "voice_pitch": 1.2, "quest": {"stage": 3, "flags": ["met"]}, "when": float("nan")}
    )
    extra = dict(character.extra)
    assert [key for key, _ in character.extra] == ["quest", "voice_pitch", "when"]
    assert extra["voice_pitch"] == 1.2 and extra["quest"]["flags"] == ("met",)
    with pytest.raises(TypeError):
        extra["quest"]["stage"] = 4  # type: ignore[index]
    plain = character.to_dict()
    assert plain["quest"] == {"stage": 3, "flags": ["met"]} and plain["when"] == "nan"


def test_unknown_keys_cannot_smuggle_unbounded_data():
    bomb = yaml.safe_load(
        "name: B\n"
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    )
    with pytest.raises(CharacterError, match="too much data"):
        character_from_mapping(bomb)
    nested: list = []
    for _ in range(100):
        nested = [nested]
    with pytest.raises(CharacterError, match="nested too deeply"):
        character_from_mapping({"name": "B", "deep": nested})
    with pytest.raises(CharacterError, match="too large"):
        character_from_mapping({"name": "B", "big": 1 << 70})


# --------------------------------------------------------------------------- loading


def test_load_each_format_from_paths_and_bytes(tmp_path):
    data = {"name": "Brom", "knowledge": ["iron"], "emotions": ["neutral", "smug"]}
    expected = character_from_mapping(data)
    (tmp_path / "b.json").write_text(json.dumps(data))
    (tmp_path / "b.yml").write_text(yaml.safe_dump(data))
    (tmp_path / "b.msgpack").write_bytes(msgpack.packb(data))
    (tmp_path / "b.sheet").write_text(yaml.safe_dump(data))  # unknown suffix: sniffed
    for name in ("b.json", "b.yml", "b.msgpack", "b.sheet"):
        assert load_character(tmp_path / name) == expected
    assert load_character(b"\xef\xbb\xbf" + json.dumps(data).encode()) == expected
    assert load_character(bytearray(msgpack.packb(data))) == expected
    assert load_character(b"{name: Brom, knowledge: [iron], emotions: [neutral, smug]}") == expected
    assert load_character(data) == expected


def test_invalid_yaml_and_json_report_the_line(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: Brom\nknowledge: [a, b\nrole: smith\n")
    with pytest.raises(CharacterError, match=r"bad\.yaml: invalid YAML at line \d+, column \d+"):
        load_character(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{\n  "name": "Brom",\n  "role": \n}\n')
    with pytest.raises(CharacterError, match=r"invalid JSON at line 4, column 1"):
        load_character(bad_json)
    with pytest.raises(CharacterError, match="not UTF-8"):
        load_character(b"name: \xff\xfe")


def test_validation_errors_from_files_name_the_file(tmp_path):
    path = tmp_path / "brom.yaml"
    path.write_text("name: Brom\nknowledge: 12\n")
    with pytest.raises(CharacterError, match=r"brom\.yaml: knowledge must be a list") as caught:
        load_character(path)
    assert caught.value.field == "knowledge"


def test_yaml_is_loaded_safely():
    with pytest.raises(CharacterError, match="invalid YAML"):
        load_character(b"name: !!python/object/apply:os.system ['true']\n")


def test_missing_unreadable_and_wrong_sources(tmp_path):
    with pytest.raises(CharacterError, match="no such file"):
        load_character(tmp_path / "nope.yaml")
    with pytest.raises(CharacterError, match="folder"):
        load_character(tmp_path)
    with pytest.raises(CharacterError):
        load_character("bad\0path.yaml")
    with pytest.raises(CharacterError, match="pass a path, bytes or a map"):
        load_character(12)  # type: ignore[arg-type]


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"name: Brom\n" + b"#" * MAX_SHEET_BYTES)
    opened = []
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or io.BytesIO(b""))
    with pytest.raises(CharacterError, match=r"huge\.yaml is \d+ bytes; the limit is 262144"):
        load_character(path)
    assert opened == []
    monkeypatch.undo()
    with pytest.raises(CharacterError, match="limit"):
        load_character(b"name: Brom\n" + b"#" * MAX_SHEET_BYTES)


def test_card_pngs_get_their_own_larger_limit(tmp_path):
    # Real card PNGs carry a picture and often exceed the sheet limit; they must still load.
    card = {"spec": "chara_card_v2", "data": {"name": "Pip"}}
    big = _png({"chara": _b64(card), "padding": "x" * (MAX_SHEET_BYTES + 10)})
    assert len(big) > MAX_SHEET_BYTES and load_character(big).name == "Pip"
    huge = tmp_path / "huge.png"
    huge.write_bytes(big + b"\0" * MAX_CARD_PNG_BYTES)
    with pytest.raises(CharacterError, match="limit"):
        load_character(huge)


# --------------------------------------------------------------------------- Character Cards


def test_v2_json_card_import():
    tamsin = load_character(V2_CARD)
    assert tamsin.name == "Tamsin Reed" and tamsin.id == "tamsin_reed"
    assert tamsin.backstory.startswith("Tamsin Reed is Emberfall's herbalist")
    assert tamsin.setting.startswith("Emberfall") and "Tamsin Reed's shop" in tamsin.setting
    assert tamsin.personality.startswith("Brisk")
    assert tamsin.first_line == "Don't touch the blue jars. Now, traveler, what ails you?"
    assert tamsin.examples == (
        "Horehound and honey, twice a day. Not the green honey, that one's for wounds.",
        "Things that are none of your business, traveler. Next question.",
        "You again? Sit. Show me the hand.",
    )
    # game fields come from data.extensions.npc_brain
    assert tamsin.role == "Herbalist and apothecary of Emberfall"
    assert "okay" in tamsin.banned_words and tamsin.secrets and len(tamsin.knowledge) == 3
    assert tamsin.emotions == ("neutral", "amused", "annoyed", "worried", "happy")
    assert dict(tamsin.relationships) == {"Brom Ironhand": "Her best customer for burn salve."}
    # the rest of the card is kept, not used
    card = dict(tamsin.extra)["card"]
    assert card["spec"] == "chara_card_v2" and card["data"]["creator"] == "npc-brain"
    assert "npc_brain" not in card["data"]["extensions"]
    assert not any("{{" in text for text in (tamsin.backstory, tamsin.setting, *tamsin.examples))


def test_v3_png_card_import_prefers_ccv3():
    corvin = load_character(V3_PNG)
    assert corvin.name == "Corvin Maddox" and corvin.id == "corvin_peddler"
    assert dict(corvin.extra)["card"]["spec"] == "chara_card_v3"
    assert corvin.backstory.startswith("Corv is a travelling peddler")  # V3: {{char}} -> nickname
    assert corvin.examples == (
        "Safe as houses, traveler. Burning houses, mind.",
        "For you? Four coppers. For anyone else, five.",
    )
    assert corvin.emotions == ("neutral", "happy", "sly", "afraid")
    assert load_character(V3_PNG.read_bytes()) == corvin  # bytes are sniffed as PNG


def test_png_with_only_a_v2_chunk_and_raw_json_chunk():
    card = {"spec": "chara_card_v2", "data": {"name": "Pip", "first_mes": "Hi {{user}}"}}
    assert load_character(_png({"chara": _b64(card)})).first_line == "Hi traveler"
    assert load_character(_png({"chara": json.dumps(card)})).name == "Pip"


def test_corrupt_and_cardless_pngs(tmp_path):
    good = V3_PNG.read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CharacterError, match="truncated.png"):
        load_character(truncated)
    flipped = bytearray(good)
    flipped[40:60] = b"\0" * 20
    with pytest.raises(CharacterError):
        load_character(bytes(flipped))
    with pytest.raises(CharacterError, match="not a readable PNG"):
        load_character(b"\x89PNG\r\n\x1a\ngarbage")
    with pytest.raises(CharacterError, match="no character card"):
        load_character(_png({"Comment": "just a picture"}))
    with pytest.raises(CharacterError, match="base64"):
        load_character(_png({"chara": "%%% not base64 %%%"}))
    with pytest.raises(CharacterError, match="card chunk"):
        load_character(_png({"ccv3": base64.b64encode(b"[1, 2").decode()}))
    not_png = tmp_path / "card.png"
    not_png.write_text("name: Brom\n")
    with pytest.raises(CharacterError, match="not a readable PNG"):
        load_character(not_png)


def test_png_pixel_limit_is_respected(monkeypatch):
    payload = _png({"chara": _b64({"spec": "chara_card_v2", "data": {"name": "Pip"}})}, size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(CharacterError):
        load_character(payload)


def test_example_block_splitting():
    block = (
        "<START>\n{{user}}: Hello?\n{{char}}: Who's asking?\n  Speak up.\n"
        "{{user}}: Me.\n<start>\n<BOT>: Back again, {{user}}?\n<USER>: Yes.\n"
        "Brom: Then sit.\n{{char}}:\n"
    )
    assert split_card_examples(block, "Brom") == [
        "Who's asking? Speak up.",
        "Back again, traveler?",
        "Then sit.",
    ]
    assert split_card_examples("", "Brom") == []


# --------------------------------------------------------------------------- fuzzing

_FIELDS = [
    "name", "id", "role", "knowledge", "goals", "relationships", "catchphrases",
    "banned_words", "emotions", "examples", "secrets", "first_line", "spec", "data",
]
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
_keys = st.sampled_from(_FIELDS) | st.text(max_size=12)
_sheets = st.dictionaries(_keys, _values, max_size=8)
_cards = st.fixed_dictionaries(
    {"spec": st.sampled_from(["chara_card_v2", "chara_card_v3"]), "data": _sheets | _values}
)
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_character_errors(source) -> Character | None:
    try:
        character = load_character(source)
    except CharacterError:
        return None
    again = character_from_mapping(character.to_dict())
    assert again == character and again.sheet_hash() == character.sheet_hash()
    return character


@_FUZZ
@given(_sheets | _cards)
def test_fuzz_mappings_only_raise_character_error(sheet):
    _only_character_errors(sheet)


@_FUZZ
@given(st.binary(max_size=300))
def test_fuzz_bytes_only_raise_character_error(raw):
    _only_character_errors(raw)
    _only_character_errors(b"\x89PNG\r\n\x1a\n" + raw)


@_FUZZ
@given(st.text(alphabet=st.sampled_from(list("name: -[]{}&*!|>'\"#\n\tab1{}<>")) | st.characters(), max_size=120))
def test_fuzz_text_only_raises_character_error(text):
    _only_character_errors(text.encode("utf-8", "surrogatepass"))


@_FUZZ
@given(_sheets | _cards)
def test_fuzz_serialised_sheets_only_raise_character_error(sheet):
    _only_character_errors(json.dumps(sheet, default=str).encode())
    _only_character_errors(msgpack.packb(sheet, default=str))
    _only_character_errors(_png({"ccv3": _b64(sheet)} if isinstance(sheet, dict) else {}))
