"""Tests of the dialogue data build on tiny hand-written fixtures (no network).

The real build runs only with NPC_BRAIN_DATA_TESTS=1 (marker ``data``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from npc_brain.data import cataclysm, chitchat, crawl, crossfire, freedroid, nethack, wesnoth
from npc_brain.data.characters import derive_sheets, guess_role, slug
from npc_brain.data.clean import clean_lines, clean_text, is_english, normalise
from npc_brain.data.dlb import decode_lines, read_dlb, write_dlb, xcrypt
from npc_brain.data.record import Line

FIX = Path(__file__).parent / "fixtures" / "data"


def _line(text: str, speaker: str = "Ann", kind: str = "npc", source: str = "pkg") -> Line:
    return Line(speaker=speaker, line=text, source=source, file="f", licence="GPL-2+", kind=kind)


# --- cleaning -----------------------------------------------------------------

def test_normalise_quotes_and_whitespace() -> None:
    assert normalise("  It\u2019s   a\n\u201cfine\u201d  day\u2026 ") == 'It\'s a "fine" day...'


def test_clean_text_length_and_markup_rules() -> None:
    assert clean_text("Hello") is None  # one word
    assert clean_text(" ".join(["word"] * 81)) is None  # too long
    assert clean_text("<i>Stay</i> [b]close[/b] to me.") == "Stay close to me."
    assert clean_text('"Quoted whole line here."') == "Quoted whole line here."
    assert clean_text("My brother is gone... <sob>") == "My brother is gone... *sob*"
    assert clean_text("Write to me at someone@example.org today") is None


def test_is_english() -> None:
    assert is_english("Thou shalt not pass this bridge tonight, friend.")
    assert not is_english("Ceci est une phrase écrite entièrement en français, évidemment.")
    assert not is_english("Привет, как у тебя дела сегодня?")
    assert not is_english("Xqzt vrrk plimb norr zzat gukk")


def test_clean_lines_dedups_after_normalisation_across_sources() -> None:
    seen: set[str] = set()
    a = list(clean_lines([_line("Good  day to you."), _line("Good day to you.")], seen))
    b = list(clean_lines([_line("Good day   to you.", source="other")], seen))
    assert [r.line for r in a] == ["Good day to you."] and b == []


# --- dlb + obfuscation --------------------------------------------------------

def test_xcrypt_is_an_involution_and_obfuscates() -> None:
    text = b"They say that the sea is deep."
    assert xcrypt(text) != text
    assert xcrypt(xcrypt(text)) == text


def test_dlb_roundtrip() -> None:
    members = {"rumors": b"abc\n", "quest.dat": bytes(range(256)), "empty": b""}
    assert read_dlb(write_dlb(members)) | {} == {"Directory": read_dlb(write_dlb(members))["Directory"],
                                                 **members}


def _quest_dat(messages: dict[str, list[tuple[int, str]]]) -> bytes:
    """Build a quest.dat in the 3.6 layout (see nethack.parse_quest)."""
    roles = list(messages)
    head = struct.pack("<i", len(roles)) + b"".join(r.encode().ljust(3, b"\0") for r in roles)
    tables_at = len(head) + 8 * len(roles)
    table_sizes = [4 + 32 * len(m) for m in messages.values()]
    text_at = tables_at + sum(table_sizes)
    offsets, pos = [], tables_at
    for size in table_sizes:
        offsets.append(pos)
        pos += size
    tables, texts = b"", b""
    for msgs in messages.values():
        tables += struct.pack("<i", len(msgs))
        for num, text in msgs:
            blob = b"\n".join(xcrypt(x.encode()) for x in text.split("\n")) + b"\n"
            tables += struct.pack("<ic3xqqq", num, b"p", text_at + len(texts), len(blob), 0)
            texts += blob
    return head + struct.pack(f"<{len(roles)}q", *offsets) + tables + texts


def test_nethack_quest_rumors_oracles_from_a_built_archive(tmp_path: Path) -> None:
    quest = _quest_dat({
        "Kni": [(1, "You arrive at a sunny field."), (15, '"Welcome back, %p.  %nC grows bolder."'),
                (60, '"Thy blade is dull, %c!"')],
        "-": [(31, '"Is that a spoon in thy hand?"')],
    })
    rumors = b"\n".join([b"# header", b"0,0,0", xcrypt(b"They say the moon is made of cheese.____")]) + b"\n"
    oracles = b"# header\n    1\n00010\n---\n" + xcrypt(b"Seek the stair") + b"\n" + xcrypt(b"beneath the fountain.") \
        + b"\n---\n"
    nhdat = tmp_path / nethack.NHDAT
    nhdat.parent.mkdir(parents=True)
    nhdat.write_bytes(write_dlb({"quest.dat": quest, "rumors": rumors, "oracles": oracles}))
    lines = list(nethack.extract(tmp_path))
    got = {(r.speaker, r.kind, r.line) for r in lines}
    assert ("King Arthur", "quest", "Welcome back, adventurer.  Ixoth grows bolder.") in got
    assert ("Ixoth", "quest", "Thy blade is dull, knight!") in got
    assert ("the Wizard of Yendor", "quest", "Is that a spoon in thy hand?") in got
    assert ("the Oracle", "rumor", "They say the moon is made of cheese.") in got
    assert ("the Oracle", "oracle", "Seek the stair beneath the fountain.") in got
    assert not any("sunny field" in r.line for r in lines)  # narration is not speech
    assert decode_lines(xcrypt(b"abc") + b"\n" + xcrypt(b"def")) == ["abc", "def"]


# --- per-source parsers -------------------------------------------------------

def test_crossfire_map_rules_and_json_dialogue(tmp_path: Path) -> None:
    maps = tmp_path / crossfire.MAPS
    (maps / "hamlet").mkdir(parents=True)
    shutil.copy(FIX / "crossfire_map", maps / "hamlet" / "square")
    shutil.copy(FIX / "crossfire_ode.msg", maps / "hamlet" / "ode.msg")
    lines = list(crossfire.extract(tmp_path))
    by_text = {r.line: r for r in lines}
    assert by_text["Welcome, traveller! Pots mended while you wait."].speaker == "Bram the Tinker"
    kettles = by_text["I sell copper kettles and sturdy nails."]
    assert kettles.player_line == "What do you sell?" and kettles.context["keywords"] == ["buy", "sell"]
    assert "Everything is fairly priced." in by_text  # paragraphs split
    assert by_text["The stone wall grinds slowly aside."].kind == "narration"
    patrol = by_text["We walk the wall twice each night."]
    assert patrol.speaker == "Captain Ode" and patrol.player_line == "Where do you patrol?"
    assert crossfire.readable_keyword("h[ae]llo|hi") == "hallo"


def test_freedroid_dialog() -> None:
    text = (FIX / "freedroid_Dialog.lua").read_text()
    lines = list(freedroid.parse_dialog(text, "Dialog", "d.lua"))
    assert [r.line for r in lines] == ['Greetings, traveller. The "market" opens at dawn.',
                                       "Batteries, mostly. And [b]rumours[/b].", "Come back tomorrow."]
    assert all(r.speaker == "Quill" for r in lines)
    assert lines[0].player_line == "Hello there, stranger."
    assert lines[1].player_line == "What do you trade in?" and lines[1].context["topic"] == "Market"
    assert lines[2].player_line is None and lines[2].context["previous"].startswith("Batteries")


def test_cataclysm_topics_speakers_and_snippets(tmp_path: Path) -> None:
    npcs = tmp_path / cataclysm.NPCS
    npcs.mkdir(parents=True)
    shutil.copy(FIX / "cataclysm_talk.json", npcs / "baker.json")
    lines = list(cataclysm.extract(tmp_path))
    npc = {r.line: r for r in lines if r.kind == "npc"}
    assert len(npc) == 3 and "Fresh bread, if you have something to trade." in npc
    assert ("Back again, pal?" in npc) != ("Back again, buddy?" in npc)  # one deterministic pick
    flour = npc["Flour.  Lots of flour, and maybe a working oven."]
    assert flour.speaker == "Odette Crumb" and flour.player_line == "What do you need?"
    barks = [r for r in lines if r.kind == "bark"]
    assert {r.context["topic"] for r in barks} == {"greet_test"}
    assert all("<" not in r.line for r in barks)
    assert cataclysm.fill_tags("Hey <unknown_tag>!", {}) is None


def test_wesnoth_messages_options_and_variables() -> None:
    text = (FIX / "wesnoth_scenario.cfg").read_text()
    lines = list(wesnoth.parse_cfg(text, "s.cfg", "wesnoth-test"))
    assert [(r.speaker, r.kind) for r in lines] == [("Maren", "npc"), ("narrator", "narration"),
                                                    ("Maren", "npc"), ("Tobin", "npc")]
    tobin = lines[3]
    assert tobin.line == 'Then let us go quickly, before the "bridge-wardens" wake. They sleep lightly.'
    assert lines[2].player_line == "Wait for dawn."
    assert lines[1].context["previous_speaker"] == "Maren"
    assert not any("$" in r.line for r in lines)  # the $gold line is dropped


def test_crawl_database_expansion() -> None:
    text = (FIX / "crawl_monspeak.txt").read_text()
    lines = list(crawl.parse_file(text, "monster", "monspeak.txt"))
    said = {(r.speaker, r.line) for r in lines}
    assert ("Tessaly", "You will not pass this gate, stranger.") in said
    assert any(s == "Tessaly" and t in {"Back, or I'll sting you!", "Back, or I'll bite you!"} for s, t in said)
    assert ("humanoid", "Lovely weather for a fight.") in said
    assert not any("hums" in t for _, t in said)  # narration without quotes is not speech
    assert crawl.speaker_name("default friendly fleeing humanoid") == "humanoid"


def test_chitchat_turns(tmp_path: Path) -> None:
    wheel = tmp_path / "chitchat_dataset-0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(FIX / "chitchat.json", chitchat.MEMBER)
    lines = list(chitchat.extract(wheel))
    assert [r.line for r in lines] == ["hi there, what did you have for lunch", "Just a sandwich.",
                                       "sounds tasty honestly"]
    assert lines[1].player_line == lines[0].line and lines[0].player_line is None
    assert lines[2].context["topic"] == "What did you eat today?" and lines[2].kind == "chitchat"


# --- character sheets ---------------------------------------------------------

def test_character_sheets() -> None:
    lines = [_line(f"Fine swords for sale, number {i} of many.", speaker="Old Greta") for i in range(6)]
    lines += [_line("Only four lines here, sadly.", speaker="Rare Bob")] * 4
    lines += [_line("just small talk with a stranger", speaker="chitchat", kind="chitchat")] * 9
    sheets = derive_sheets(lines, {"pkg": "A test world"})
    assert list(sheets) == ["pkg__old-greta"]
    sheet = sheets["pkg__old-greta"]
    assert sheet["name"] == "Old Greta" and sheet["role"] == "shopkeeper" and sheet["setting"] == "A test world"
    assert 1 <= len(sheet["examples"]) <= 8 and sheet["licence"] == "GPL-2+"
    assert slug("Lt. Piltro") == "lt-piltro"
    assert guess_role("Temple acolyte", []) == "priest"


# --- the real thing -----------------------------------------------------------

@pytest.mark.data
@pytest.mark.skipif(os.environ.get("NPC_BRAIN_DATA_TESTS") != "1", reason="set NPC_BRAIN_DATA_TESTS=1")
def test_real_build_one_small_source(tmp_path: Path) -> None:
    from npc_brain.data import build_data

    out = build_data(tmp_path, sources=["nethack"])
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) > 500
    assert {r["source"] for r in records} == {"nethack-common"}
    assert all(r["licence"] and 2 <= len(r["line"].split()) <= 80 for r in records)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["per_source"]["nethack-common"]["lines"] == len(records)
    assert any((tmp_path / "characters").glob("nethack-common__*.json"))
