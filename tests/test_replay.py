"""Record real daemon traffic, replay it: identical on the same bundle; changes and problems reported."""

from __future__ import annotations

import json
import threading

import yaml

from npc_brain.client import Client
from npc_brain.replay import Recorder, judge, main as replay_main, replay
from tests.conftest import SAMPLES
from tests.test_daemon import start_daemon, stop


def _record_traffic(bundle_dir, path) -> int:
    """Three NPC conversations at once (so lines are decoded in batches), two turns each, with a
    scene, generation options and session history; returns how many lines were said."""
    proc, addr = start_daemon(bundle_dir, "--record", str(path))
    said = []
    try:
        def talk(i: int, sheet: str) -> None:
            c_sheet = yaml.safe_load(open(SAMPLES / f"{sheet}.yaml"))
            with Client(addr, timeout_s=120) as c:
                for t, u in enumerate(["Evening. Anything to report?", "And what would you do now?"]):
                    rep = c.say(sheet, u, character=c_sheet, session=f"s{i}", seed=10 * i + t,
                                scene={"time": "night", "weather": "rain"} if i == 0 else None,
                                options={"max_tokens": 24} if i == 1 else None, stream=(i == 2))
                    said.append(rep["text"])

        threads = [threading.Thread(target=talk, args=(i, s)) for i, s in
                   enumerate(["brom_blacksmith", "mara_tavernkeeper", "brom_blacksmith"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        assert stop(proc) == 0
    return len(said)


def test_recorded_traffic_replays_identically_and_a_change_is_caught(bundle_dir, engine, tmp_path, capsys):
    rec = tmp_path / "traffic.jsonl"
    n = _record_traffic(bundle_dir, rec)
    records = [json.loads(x) for x in rec.read_text().splitlines()]
    assert n == 6 and len(records) == 6
    assert any(r["history"] for r in records) and any(r["scene"] for r in records)
    assert all(r["expect"]["bundle_id"] == engine.bundle.bundle_id for r in records)

    result = replay(engine, rec, progress=False)
    assert result["same"] == 6 and result["changed"] == 0, [r for r in result["rows"] if not r["same"]]
    assert replay_main([str(rec), "--bundle", str(bundle_dir)]) == 0

    records[3]["expect"]["line"] = "Something the model never said."
    rec.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = tmp_path / "report.jsonl"
    assert replay_main([str(rec), "--bundle", str(bundle_dir), "-o", str(report)]) == 1  # same bundle: a bug
    out = capsys.readouterr()
    assert "5 identical, 1 changed" in out.out and "determinism is broken" in out.err
    rows = [json.loads(x) for x in report.read_text().splitlines()]
    assert [r["same"] for r in rows].count(False) == 1


def test_unreadable_records_are_reported_not_fatal(engine, tmp_path):
    brom = str(SAMPLES / "brom_blacksmith.yaml")
    rec = tmp_path / "bad.jsonl"
    rec.write_text("{oops\n" + json.dumps({"id": "a", "character": brom, "utterance": "Hi.", "expect": "aye"}) + "\n"
                   + json.dumps({"id": "b", "character": brom, "utterance": "Hi.", "seed": 1,
                                 "options": {"max_tokens": 4}, "expect": {"line": "x"}}) + "\n")
    result = replay(engine, rec, progress=False)
    assert result["lines"] == 3 and result["changed"] == 3
    assert [r["problems"] for r in result["rows"][:2]] == [["unreadable record"]] * 2
    assert "expect must be an object" in result["rows"][1]["error"]


def test_judges():
    assert judge("Aye, the forge is hot.", ["phone"]) == []
    assert judge("", []) == ["empty"]
    assert judge("word " * 61, []) == ["over 60 words"]
    assert judge("Use your phone, then.", ["phone"]) == ["banned or fourth-wall word"]


def test_replay_of_a_missing_file_says_how_to_record(tmp_path, capsys):
    assert replay_main([str(tmp_path / "nope.jsonl")]) == 2
    assert "--record" in capsys.readouterr().err


def test_a_long_recording_rotates_into_whole_files(tmp_path):
    """Past max_bytes the file becomes FILE.1 (FILE.1 -> FILE.2 ...), the oldest beyond `keep` goes,
    and every file holds whole records."""
    from npc_brain.prompt import Turn

    path = tmp_path / "traffic.jsonl"
    rec = Recorder(path, max_bytes=2000, keep=2)
    for i in range(60):
        rec.line(f"r{i}", {"name": "Brom"}, "x" * 100, {}, [Turn("player", "hi")], i, {}, "Aye.", "neutral", 3, "b-1")
    rec.close()
    files = [path, path.with_name("traffic.jsonl.1"), path.with_name("traffic.jsonl.2")]
    assert all(f.exists() for f in files) and not path.with_name("traffic.jsonl.3").exists()
    ids = [[json.loads(x)["id"] for x in f.read_text().splitlines()] for f in files]
    assert all(f.stat().st_size <= 2000 for f in files) and all(ids)
    newest_first = [int(i.split("-")[1]) for group in ids for i in group[::-1]]
    assert newest_first == list(range(59, 59 - len(newest_first), -1))  # no gap, nothing reordered


def test_record_ids_stay_unique_when_a_restarted_daemon_appends(tmp_path, monkeypatch):
    from npc_brain.prompt import Turn

    path = tmp_path / "traffic.jsonl"
    for pid in (101, 202):  # two daemon runs, the second appending to the first one's file
        monkeypatch.setattr("os.getpid", lambda pid=pid: pid)
        rec = Recorder(path)
        rec.line("r1", {"name": "Brom"}, "hi", {}, [Turn("player", "hi")], 1, {}, "Aye.", "neutral", 3, "b-1")
        rec.close()
    ids = [json.loads(x)["id"] for x in path.read_text().splitlines()]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.endswith("-0-r1") for i in ids)
