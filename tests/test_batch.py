"""`npc-brain batch` per the DESIGN.md contract: JSONL and CSV, variants, errors, resume."""

from __future__ import annotations

import csv
import json

import pytest

from npc_brain.batch import OutFile, run_batch
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def det_engine(bundle_dir):
    from npc_brain.engine import Engine

    return Engine.load(bundle_dir, threads=2, deterministic=True)


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_jsonl_variants_errors_and_contract(det_engine, tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    brom = str(SAMPLES / "brom_blacksmith.yaml")
    _jsonl(src, [
        {"id": "a", "character": brom, "utterance": "Can you mend this?", "seed": 3, "n": 2, "scene": {"time": "night"}},
        {"id": "b", "character": {"name": "Old Pell", "role": "ferryman"}, "utterance": "How much to cross?"},
        {"id": "c", "character": {"role": "nameless"}, "utterance": "hi"},
        {"id": "d", "character": brom, "utterance": ""},
    ])
    with open(src, "a") as f:
        f.write("{not json\n")
    counts = run_batch(det_engine, src, dst, progress=False)
    out = _read(dst)
    lines = [r for r in out if "line" in r]
    assert counts == {"lines": 3, "skipped": 0, "errors": 3}
    assert [(r["id"], r["variant"]) for r in lines] == [("a", 0), ("a", 1), ("b", 0)]
    for r in lines:
        assert set(r) == {"id", "variant", "line", "emotion", "scene", "seed", "timing_ms"} and r["line"]
    assert lines[0]["seed"] == 3 and lines[1]["seed"] == 4 and lines[0]["scene"] == {"time": "night"}
    errs = {r["id"]: r["error"]["code"] for r in out if "error" in r}
    assert errs == {"c": "BAD_CHARACTER", "d": "BAD_REQUEST", "line-5": "BAD_REQUEST"}


def test_same_file_same_lines_and_resume_after_a_kill(det_engine, tmp_path):
    src = tmp_path / "in.jsonl"
    brom, mara = str(SAMPLES / "brom_blacksmith.yaml"), str(SAMPLES / "mara_tavernkeeper.yaml")
    _jsonl(src, [{"id": f"r{i}", "character": (brom, mara)[i % 2], "utterance": "Any news?"} for i in range(3)])
    full = tmp_path / "full.jsonl"
    run_batch(det_engine, src, full, progress=False)
    # a run killed mid-write: the first record complete, the second half-written
    part = tmp_path / "part.jsonl"
    data = full.read_text().splitlines(keepends=True)
    part.write_text(data[0] + data[1][:17])
    counts = run_batch(det_engine, src, part, progress=False)
    assert counts["skipped"] == 1 and counts["lines"] == 2
    strip = lambda p: [{k: v for k, v in r.items() if k != "timing_ms"} for r in _read(p)]  # noqa: E731
    assert strip(part) == strip(full)  # repaired, and the same lines (seeds derive from ids)
    assert run_batch(det_engine, src, part, progress=False)["skipped"] == 3


def test_csv_in_and_out(det_engine, tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    with open(src, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "character", "utterance", "scene", "seed"])
        w.writeheader()
        w.writerow({"id": "x1", "character": str(SAMPLES / "mara_tavernkeeper.yaml"), "utterance": "A room, please.",
                    "scene": "time=night;weather=rain", "seed": "9"})
    run_batch(det_engine, src, dst, progress=False)
    rows = list(csv.DictReader(open(dst, newline="")))
    assert len(rows) == 1 and rows[0]["id"] == "x1" and rows[0]["line"]
    assert json.loads(rows[0]["scene"]) == {"time": "night", "weather": "rain"}


def test_outfile_ignores_a_torn_last_record(tmp_path):
    p = tmp_path / "o.jsonl"
    p.write_text('{"id": "a", "variant": 0}\n{"id": "b", "var')
    o = OutFile(p)
    o.close()
    assert o.done == {"a"} and p.read_text() == '{"id": "a", "variant": 0}\n'


def test_records_may_carry_generation_options(det_engine, tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    brom = str(SAMPLES / "brom_blacksmith.yaml")
    _jsonl(src, [{"id": "short", "character": brom, "utterance": "Tell me everything about your forge.", "seed": 1,
                  "options": {"max_tokens": 6, "temperature": 0}},
                 {"id": "bad", "character": brom, "utterance": "Hi.", "options": {"max_tokens": 100000}},
                 {"id": "worse", "character": brom, "utterance": "Hi.", "options": "fast please"}])
    counts = run_batch(det_engine, src, dst, progress=False)
    out = {r["id"]: r for r in _read(dst)}
    assert counts["lines"] == 1 and counts["errors"] == 2
    assert len(out["short"]["line"].split()) <= 6  # 6 tokens cannot make more words than that
    assert "max_tokens" in out["bad"]["error"]["message"] and out["worse"]["error"]["code"] == "BAD_REQUEST"
