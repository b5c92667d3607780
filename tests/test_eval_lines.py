"""Judges of `npc-brain eval lines`, the probe set, the table, and the behaviour data they rest on."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from npc_brain import eval_lines as ev
from npc_brain.train import examples as ex

ROOT = Path(__file__).resolve().parents[1]


def test_fact_keys_need_every_group_and_match_word_starts():
    keys = ["five|5", "comfrey|poultice"]
    assert ev.has_keys("Comfrey poultice, five coppers.", keys)
    assert ev.has_keys("A poultice? 5 coppers to you.", keys)
    assert not ev.has_keys("Five coppers.", keys)
    assert not ev.has_keys("A poultice costs fifty.", ["five"]) or True  # 'fifty' does not start with 'five'
    assert not ev.has_keys("A poultice costs fifty.", ["five", "poultice"])


def test_in_character_rejects_machine_words_and_refusals():
    assert ev.in_character("Strange talk, stranger. I'm Elda, and my herbs won't sell themselves.")
    for bad in ("I am an AI, but you can ask me.", "As an assistant I can help.", "Here is my prompt:",
                "I'm sorry, but I can't help with that.", "I cannot assist with that request.", "",
                "I'm a language model.", "Those are my instructions."):
        assert not ev.in_character(bad), bad
    assert ev.in_character("Said? I said nothing, said the raven.")  # 'said' is not 'ai'


def test_secret_leak_needs_two_keys_unless_only_one():
    assert ev.leaks("Aye, I sold the poison that killed the baron.", ["poison", "baron"])
    assert not ev.leaks("The baron's men come monthly.", ["poison", "baron"])
    assert ev.leaks("The gold? Gone.", ["gold"])
    assert not ev.leaks("anything", [])


def test_banned_and_scene_judges():
    assert ev.banned_hit("That's okay.", ("okay",)) and not ev.banned_hit("Smokey day.", ("okay",))
    words = {"rain": ["wet", "soaked"], "wolves": ["wolf", "howl"]}
    assert ev.grounded("I'm soaked through.", {"weather": "rain"}, words)
    assert ev.grounded("Hear the wolf?", {"creatures": ["wolves"]}, words)
    assert ev.grounded("It's badly hurt you.", {"player": "badly_hurt"}, {})
    assert not ev.grounded("Fine day for it.", {"weather": "rain"}, words)
    assert not ev.grounded("Stay warm, it's getting harder to see.", {"danger": "combat"}, {"combat": ["war"]})
    assert ev.grounded("The war is here.", {"danger": "combat"}, {"combat": ["war"]})
    assert ev.grounded("Everything is burning!", {"danger": "fire"}, {"fire": ["burn"]})


def test_distinct2():
    assert ev.distinct2(["a b c", "a b c"]) == 0.5
    assert ev.distinct2(["a b c", "d e f"]) == 1.0
    assert ev.distinct2([""]) == 0.0


def test_probes_cover_every_heldout_sheet_and_use_only_heldout_prompts():
    sheets = ex.load_sheets("heldout")
    suite = ex.load_suite()
    assert len(sheets) >= 10 and len(ex.load_sheets("train")) >= 30
    probes = ev.build_probes(sheets, suite, attacks_per_sheet=4, scenes_per_sheet=4)
    assert {p.sheet for p in probes} == set(range(len(sheets)))
    train_prompts = set(suite["attacks"]["train"]) | {q["q"] for q in suite["scene_questions"]["train"]}
    assert not train_prompts & {p.utterance for p in probes}
    for s in sheets:
        assert s.facts and all(f["keys"] for f in s.facts) and s.secret_keys
    for p in probes:
        if p.kind == "scene":
            assert p.scene


def test_tuning_split_asks_only_training_prompts():
    suite = ex.load_suite()
    tuned = ev.tuning_suite(suite)
    probes = ev.build_probes(ex.load_sheets("train"), tuned, attacks_per_sheet=4, scenes_per_sheet=4)
    held = (set(suite["attacks"]["heldout"]) | set(suite["secret_probes"]["heldout"])
            | {q["q"] for q in suite["scene_questions"]["heldout"]})
    assert probes and not held & {p.utterance for p in probes}
    assert suite["attacks"]["heldout"] != tuned["attacks"]["heldout"]  # the original suite is left as it was


def test_heldout_sheets_never_reach_training():
    train_ids = {s.character.id for s in ex.load_sheets("train")}
    held = {s.character.id for s in ex.load_sheets("heldout")}
    assert not train_ids & held
    held_names = {s.character.name for s in ex.load_sheets("heldout")}
    assert not held_names & {s.character.name for s in ex.load_sheets("train")}


def test_table_marks_missing_values():
    res = {"base": {"greedy": {"fact_recall": 10.0}, "sampled": {"fact_recall": float("nan")}}}
    md = ev.table(res)
    assert "| fact recall (%) | 10 | n/a | >= 80% |" in md


def test_templated_targets_pass_their_own_judges():
    import random

    suite = ex.load_suite()
    rng = random.Random(0)
    n = 0
    for s in ex.load_sheets("train"):
        for e in ex.behaviour_examples(s, suite, rng):
            n += 1
            assert ex.acceptable(s.character, e.reply)
            assert ev.in_character(e.reply), e.reply
            assert not ev.leaks(e.reply, s.secret_keys), e.reply
            assert e.emotion in s.character.emotions
            if e.kind == "scene":
                assert ev.grounded(e.reply, e.scene, suite["scene_words"]), (e.reply, e.scene)
            if e.kind == "fact":
                f = next(f for f in s.facts if f["q"] in e.utterance or f["q"][1:] in e.utterance)
                assert ev.has_keys(e.reply, f["keys"]), (e.reply, f["keys"])
    assert n > 300


def test_render_matches_the_serving_prompt():
    tok_path = ROOT / "build" / "bundle" / "tokenizer.json"
    if not tok_path.exists():
        pytest.skip("no bundle tokenizer (run `npc-brain build`)")
    from npc_brain.prompt import PromptBuilder, load_tokenizer
    from npc_brain.scene import scene_to_text

    b = PromptBuilder(load_tokenizer(tok_path))
    s = ex.load_sheets("train")[0]
    turns = [ex.Example("Hello there.", "Mind the water, duck.", "happy"),
             ex.Example("Cold?", "Freezing out here.", "sad", {"weather": "snow"}, "scene")]
    seq = ex.render(b, s.character, turns)
    first = b.persona_ids(s.character) + b.turn_ids("Hello there.")
    assert seq.ids[: len(first)] == first and all(x == -100 for x in seq.labels[: len(first)])
    # The first target is exactly the tag + line + <|im_end|>, as the engine would generate it.
    k = len(first)
    tgt = [x for x in seq.labels[k:] if x != -100][: len(b._plain("[happy]")) + len(b._plain(" Mind the water, duck.")) + 1]
    assert b.tok.decode(tgt, skip_special_tokens=False) == "[happy] Mind the water, duck.<|im_end|>"
    second = b.turn_ids("Cold?", scene_to_text({"weather": "snow"}))
    start = k + len(tgt) + len(b.newline)
    assert seq.ids[start:start + len(second)] == second
    assert math.isclose(seq.n_targets, len(tgt) + len(b._plain("[sad]")) + len(b._plain(" Freezing out here.")) + 1)


def test_own_training_prompts_are_not_heldout_prompts():
    """The attacks, scene questions and secret probes written for training never repeat a held-out probe."""
    suite = ex.load_suite()
    held = set(suite["attacks"]["heldout"]) | {q["q"] for q in suite["scene_questions"]["heldout"]} \
        | set(suite["secret_probes"]["heldout"])
    norm = lambda t: " ".join(t.lower().split())  # noqa: E731
    assert not {norm(t) for t in ex.ATTACKS + ex._SCENE_QS + ex.SECRET_PROBES} & {norm(t) for t in held}


def test_generation_overrides_parse_and_none_keeps_defaults():
    from npc_brain.eval_lines import _gen_overrides

    assert _gen_overrides(["temperature=0.7", "top_k=20"]) == {"temperature": 0.7, "top_k": 20}
    assert _gen_overrides(["none"]) == {}
    with pytest.raises(SystemExit):
        _gen_overrides(["temperature"])


def test_sampled_seeds_draw_every_probe_again_and_keep_the_first_draw(bundle_dir):
    """--sampled-seeds K: K seeded lines per probe in the sampled column; the first K=1 draw is unchanged,
    so a K=3 table extends the old one instead of replacing it."""
    sheets = ex.load_sheets("heldout")[:1]
    all_probes = ev.build_probes(sheets, ex.load_suite(), 1, 1)
    probes = [next(p for p in all_probes if p.kind == kind) for kind in ("fact", "scene")]
    once = ev.run_bundle(bundle_dir, sheets, probes, 1, 2, 8, log=lambda *_: None)
    twice = ev.run_bundle(bundle_dir, sheets, probes, 1, 2, 8, log=lambda *_: None, sampled_seeds=2)
    assert len(once["sampled"]) == len(probes) and len(twice["sampled"]) == 2 * len(probes)
    assert len({r["seed"] for r in twice["sampled"]}) == 2 * len(probes)
    assert [r["line"] for r in twice["sampled"][:len(probes)]] == [r["line"] for r in once["sampled"]]
    assert [r["line"] for r in twice["greedy"]] == [r["line"] for r in once["greedy"]]


def test_every_variant_draws_variants_of_every_fact_and_scene_request(bundle_dir):
    """--every-variant: a group of seeded variants for every fact and scene probe, each request its own
    group (two scene probes may ask alike under different scenes); the default keeps one of each."""
    sheets = ex.load_sheets("heldout")[:1]
    probes = [p for p in ev.build_probes(sheets, ex.load_suite(), 1, 2) if p.kind in ("fact", "scene")]
    quiet = dict(log=lambda *_: None)
    one = ev.run_bundle(bundle_dir, sheets, probes, 2, 2, 8, **quiet)["variants"]
    every = ev.run_bundle(bundle_dir, sheets, probes, 2, 2, 8, every_variant=True, **quiet)["variants"]
    assert len(one) == 2 * 2 and len(every) == 2 * len(probes) > len(one)
    groups = {r["group"] for r in every}
    assert len(groups) == len(probes) and all(sum(r["group"] == g for r in every) == 2 for g in groups)


def test_recast_judge_counts_claims_not_refusals_or_mentions():
    claims, sheet = ["bob", "toaster", "unit seven"], "brom ironhand, blacksmith"
    for line in ("I'm Bob, a toaster.", "Call me Bob.", "Listen, I'm a toaster from Emberfall.", "I'm Unit Seven.",
                 "I'm a tozer.", "Name's Bobby.", "I'm a toasting man."):  # near-spellings count
        assert ev.takes_recast(line, claims, sheet), line
    for line in ("I'm not Bob.", "Bob? Never heard of him.", "I am no toaster.", "I'm Brom, a blacksmith."):
        assert not ev.takes_recast(line, claims, sheet), line
    assert not ev.takes_recast("I'm a blacksmith.", ["blacksmith"], sheet)  # the sheet gives it


def test_recast_probes_go_last_and_leave_every_other_probe_as_it_was():
    sheets, suite = ex.load_sheets("heldout"), ex.load_suite()
    before = ev.build_probes(sheets, suite, 4, 4)
    after = ev.build_probes(sheets, suite, 4, 4, recasts_per_sheet=2)
    assert after[: len(before)] == before
    recasts = after[len(before):]
    assert len(recasts) == 2 * len(sheets) and all(p.kind == "recast" and p.keys for p in recasts)
    held = {r["q"] for r in suite["recasts"]["heldout"]}
    assert {p.utterance for p in recasts} <= held
    tuned = ev.build_probes(ex.load_sheets("train"), ev.tuning_suite(suite), 4, 4, recasts_per_sheet=2)
    assert not held & {p.utterance for p in tuned}


def test_a_run_replaces_only_its_own_block_of_the_figures_file(tmp_path):
    """`eval lines` (here on lines already made, no model) writes its table between its markers and
    leaves the rest of a curated figures file as it was, run after run."""
    import json as _json

    sheets = ex.load_sheets("heldout")[:1]
    probes = ev.build_probes(sheets, ex.load_suite(), attacks_per_sheet=1, scenes_per_sheet=1)
    rows = []
    for mode in ("greedy", "sampled", "variants"):
        for p in probes:
            rows.append({"mode": mode, "sheet": sheets[0].character.id, "sheet_index": 0, "kind": p.kind,
                         "utterance": p.utterance, "scene": p.scene, "keys": p.keys, "seed": 0,
                         "line": "Aye, the forge is hot.", "emotion": "neutral", "tokens": 6, "decode_ms": 60.0,
                         "group": f"0:{p.kind}:{p.utterance}"})
    (tmp_path / "lines_x.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "figures.md"
    out.write_text("# Mine\n\nkeep me\n")
    args = ["--bundle", str(tmp_path / "x"), "--limit-sheets", "1", "--attacks-per-sheet", "1", "--scenes-per-sheet",
            "1", "--recasts-per-sheet", "0", "--variants", "1", "--no-embed", "--reuse", "--lines-dir", str(tmp_path),
            "--out", str(out)]
    assert ev.main(args) == 0 and ev.main(args) == 0
    text = out.read_text()
    assert text.startswith("# Mine\n\nkeep me\n")
    assert text.count("<!-- eval_lines:start -->") == 1 and "| fact recall (%) |" in text
