"""On-screen text (OCR, `read_text`): what is kept, real screenshots, the engine and `npc-brain batch`."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from npc_brain import screen_text
from npc_brain.render_scenes import render_sign
from npc_brain.screen_text import keep_text, pick_texts
from tests.conftest import ROOT, SAMPLES

TEXT = ROOT / "tests" / "fixtures" / "text"
EXPECTED = [json.loads(line) for line in (TEXT / "expected.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("text", ["Abandoned Mines", "The Rusty Anchor", "WANTED: Black Ned", "Fort Nasu",
                                  "\"Beware of the dog\""])
def test_keeps_what_an_npc_could_remark_on(text):
    assert keep_text(text, 0.95)


@pytest.mark.parametrize("text,score", [
    ("Abandoned Mines", 0.5),  # unsure lettering
    ("0/200", 0.99), ("04:34", 0.98), ("0(0)+2", 0.9), ("x3", 0.99),  # counters
    ("Menu", 0.99), ("End Turn", 0.96), ("Game saved.", 0.96), ("Gamesaved.", 0.9), ("Save&Exit", 0.9), ("HP", 1.0), ("def", 0.99),  # interface
    ("#Server: version: 5.6.1 | game: Minetest Game | uptime: 1s", 0.94),  # server log
    ("***npcb joined the game.", 0.92), ("[12:01] Ann: hi", 0.9),  # chat
    ("命0/200一0(0)+2", 0.79), ("宿屋の看板です", 0.99),  # another script
    ("one two three four five six seven eight nine ten eleven twelve thirteen", 0.99),  # a paragraph
])
def test_drops_interface_numbers_chat_and_noise(text, score):
    assert not keep_text(text, score)


def _box(y: float, h: float) -> list[list[float]]:
    return [[10, y], [200, y], [200, y + h], [10, y + h]]


def test_pick_texts_tallest_first_no_repeats_at_most_three():
    found = [[_box(0, 10), "Small Print Here", 0.9], [_box(50, 40), "The Rusty Anchor", 0.97],
             [_box(90, 20), "the rusty anchor", 0.95], [_box(120, 25), "Fish Market", 0.9],
             [_box(150, 12), "Harbour Road", 0.9], [_box(170, 30), "Menu", 0.99]]
    assert pick_texts(found) == ["The Rusty Anchor", "Fish Market", "Harbour Road"]


def test_spaces_the_recogniser_dropped_come_back():
    found = [[_box(0, 20), "BlackOakFarm", 0.9], [_box(30, 18), "St.Maria:Catacombs", 0.9], [_box(60, 16), "McDonald", 0.9]]
    assert pick_texts(found) == ["Black Oak Farm", "St. Maria: Catacombs", "McDonald"]


def test_long_text_is_cut_at_a_word():
    src = "Welcome to Port Ebonhaven home of the finest smoked eels anywhere"
    assert len(src) > screen_text.MAX_CHARS
    cut = pick_texts([[_box(0, 20), src, 0.9]])[0]
    assert len(cut) <= screen_text.MAX_CHARS and src.startswith(cut) and src[len(cut)] == " "


def test_a_clear_error_without_the_ocr_extra(monkeypatch):
    monkeypatch.setattr(screen_text, "available", lambda: False)
    with pytest.raises(screen_text.TextReaderUnavailable, match=r"npc-brain\[ocr\]"):
        screen_text.TextReader()


# --- real OCR (the ocr extra, which `make test` installs) ------------------------------------------

@pytest.fixture(scope="module")
def reader():
    return screen_text.TextReader()


def _pixels(name: str) -> np.ndarray:
    return np.asarray(Image.open(TEXT / name).convert("RGB"))


@pytest.mark.parametrize("row", EXPECTED, ids=[r["game"] for r in EXPECTED])
def test_real_screenshots(reader, row):
    """Flare prints the map's title over its minimap; Wesnoth's and Minetest's frames carry only
    interface (Menu, End Turn, 0/200, HP) and a server banner, none of which may reach the NPC."""
    got = reader.read(_pixels(row["file"]))
    if row["text"] is None:
        assert got == []
    else:
        assert [t.lower() for t in got] == [row["text"].lower()]


@pytest.mark.parametrize("text,seed", [("The Rusty Anchor", 1), ("Blacksmith", 2), ("Old Mill Road", 3)])
def test_reads_a_painted_sign(reader, text, seed):
    assert text.lower() in [t.lower() for t in reader.read(render_sign(text, seed))]


@pytest.mark.slow
def test_engine_sees_text_only_when_asked_and_the_game_wins(engine):
    png = (TEXT / EXPECTED[0]["file"]).read_bytes()
    assert "text" not in engine.see(png)
    assert engine.see(png, read_text=True)["text"] == ["Abandoned Mines"]
    mine = engine.see(png, engine_tags={"text": ["Quest: find Tobin"]}, read_text=True)
    assert mine["text"] == ["Quest: find Tobin"]


@pytest.mark.slow
def test_batch_read_text(bundle_dir, tmp_path):
    from npc_brain.batch import run_batch
    from npc_brain.engine import Engine

    engine = Engine.load(bundle_dir, threads=2, deterministic=True)
    shot = tmp_path / "sign.png"
    buf = io.BytesIO()
    Image.fromarray(render_sign("The Rusty Anchor", 1)).save(buf, format="PNG")
    shot.write_bytes(buf.getvalue())
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    brom = str(SAMPLES / "brom_blacksmith.yaml")
    src.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "asked", "character": brom, "utterance": "What is this place?", "screenshot": str(shot),
         "read_text": True, "seed": 1, "options": {"max_tokens": 12}},
        {"id": "not-asked", "character": brom, "utterance": "What is this place?", "screenshot": str(shot),
         "seed": 1, "options": {"max_tokens": 12}},
        {"id": "bad", "character": brom, "utterance": "Hi", "screenshot": str(shot), "read_text": "yes"},
    ]))
    counts = run_batch(engine, src, dst, progress=False)
    out = {r["id"]: r for r in map(json.loads, dst.read_text().splitlines())}
    assert counts["errors"] == 1 and out["bad"]["error"]["code"] == "BAD_REQUEST"
    assert out["asked"]["scene"]["text"] == ["The Rusty Anchor"]
    assert "text" not in out["not-asked"]["scene"]
