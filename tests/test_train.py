"""LoRA on a tiny random Llama: wrapping is exact at init, training moves only A/B,
save -> merge reproduces the wrapped model, and bad adapters fail loudly."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from export.llama import Llama, LlamaConfig  # noqa: E402
from npc_brain.train import lora  # noqa: E402
from npc_brain.train.forward import hidden_states, target_loss  # noqa: E402

CFG = LlamaConfig(vocab_size=97, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64)


def tiny(seed: int = 0) -> Llama:
    torch.manual_seed(seed)
    return Llama(CFG).eval()


def last_logits(model: Llama, ids: torch.Tensor) -> torch.Tensor:
    B, S = ids.shape
    pos = torch.arange(S).unsqueeze(0).expand(B, S)
    return model(ids, pos, torch.ones(B, S, dtype=torch.long), *model.empty_past(B))[0]


IDS = torch.tensor([[5, 17, 3, 88, 42, 7, 1, 60]])


def test_wrap_is_identity_at_init_and_freezes_base():
    base, m = tiny(), tiny()
    wrapped = lora.apply_lora(m, rank=4, alpha=8, targets=lora.ALL_TARGETS)
    assert len(wrapped) == CFG.n_layers * 7
    assert torch.allclose(last_logits(base, IDS), last_logits(m, IDS), atol=1e-6)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith((".A", ".B")) for n in trainable)


def test_targets_subset_and_validation():
    m = tiny()
    wrapped = lora.apply_lora(m, rank=2, alpha=2, targets=["q_proj", "v_proj"])
    assert all(w.endswith(("q_proj", "v_proj")) for w in wrapped) and len(wrapped) == 4
    with pytest.raises(ValueError):
        lora.apply_lora(tiny(), targets=["nonsense"])
    with pytest.raises(ValueError):
        lora.LoRALinear(torch.nn.Linear(3, 3), rank=0, alpha=1)


def _train_a_bit(m: Llama, steps: int = 5) -> None:
    opt = torch.optim.AdamW(lora.lora_parameters(m), lr=1e-2)
    labels = IDS.clone()
    labels[:, :4] = -100
    for _ in range(steps):
        loss, n = target_loss(m, IDS, torch.ones_like(IDS), labels)
        assert n == 4
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_training_changes_only_adapter_and_lowers_loss():
    m = tiny()
    before = {k: v.clone() for k, v in m.state_dict().items() if not k.endswith((".A", ".B"))}
    lora.apply_lora(m, rank=4, alpha=8)
    labels = IDS.clone()
    labels[:, :4] = -100
    l0 = target_loss(m, IDS, torch.ones_like(IDS), labels)[0].item()
    _train_a_bit(m, 20)
    l1 = target_loss(m, IDS, torch.ones_like(IDS), labels)[0].item()
    assert l1 < l0
    after = {k.replace(".base", ""): v for k, v in m.state_dict().items() if not k.endswith((".A", ".B"))}
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_save_then_merge_matches_wrapped_model(tmp_path):
    m = tiny()
    lora.apply_lora(m, rank=4, alpha=8)
    _train_a_bit(m)
    path = tmp_path / "adapter.pt"
    lora.save_adapter(m, path, recipe={"seed": 1}, dtype=torch.float32)
    plain = tiny()
    assert lora.merge_adapter_file(plain, path) == CFG.n_layers * 7
    assert torch.allclose(last_logits(m, IDS), last_logits(plain, IDS), atol=1e-5)
    assert lora.load_adapter(path)["recipe"] == {"seed": 1}
    # fp16 storage (what we commit) stays close
    lora.save_adapter(m, path)
    plain16 = tiny()
    lora.merge_adapter_file(plain16, path)
    assert torch.allclose(last_logits(m, IDS), last_logits(plain16, IDS), atol=1e-2)
    # round trip into a wrapped model, and unwrap_merged
    again = tiny()
    lora.apply_lora(again, rank=4, alpha=8)
    lora.load_adapter_into(again, lora.load_adapter(path))
    lora.unwrap_merged(again)
    assert not lora.lora_modules(again)
    assert torch.allclose(last_logits(plain16, IDS), last_logits(again, IDS), atol=1e-5)


def test_bad_adapters_raise(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(lora.AdapterError):
        lora.merge_adapter_file(tiny(), bad)
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(lora.AdapterError):
        lora.merge_adapter_file(tiny(), bad)
    big = Llama(LlamaConfig(vocab_size=97, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64))
    lora.apply_lora(big, rank=2, alpha=2)
    lora.save_adapter(big, bad)
    with pytest.raises(lora.AdapterError, match="do not fit"):
        lora.merge_adapter_file(tiny(), bad)


def test_training_forward_matches_serving_forward():
    m = tiny()
    h = hidden_states(m, IDS, torch.ones_like(IDS))
    assert torch.allclose(m.lm_head(h[:, -1]), last_logits(m, IDS), atol=1e-5)
    # right padding does not change the real positions
    padded = torch.cat([IDS, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones_like(IDS), torch.zeros(1, 3, dtype=torch.long)], dim=1)
    hp = hidden_states(m, padded, mask)
    assert torch.allclose(hp[:, : IDS.shape[1]], h, atol=1e-5)


def test_packed_turns_score_like_separate_sequences():
    """Persona + two packed turns: each turn's loss equals its loss as persona + that turn alone."""
    from npc_brain.train.run import _upper_loss

    m = tiny()
    persona, t1, t2 = [5, 17, 3, 88], [42, 7, 1], [60, 9, 30, 2]
    lab1, lab2 = [-100, 7, 1], [-100, -100, 30, 2]

    def alone(turn, lab):
        ids = torch.tensor([persona + turn])
        labels = torch.tensor([[-100] * len(persona) + lab])
        return _upper_loss(m, m.embed_tokens(ids), ids, torch.ones_like(ids), labels, 0)

    (l1, n1), (l2, n2) = alone(t1, lab1), alone(t2, lab2)
    ids = torch.tensor([persona + t1 + t2])
    P = len(persona)
    pos = torch.tensor([list(range(P)) + list(range(P, P + len(t1))) + list(range(P, P + len(t2)))])
    seg = torch.tensor([[0] * P + [1] * len(t1) + [2] * len(t2)])
    labels = torch.tensor([[-100] * P + lab1 + lab2])
    lp, n = _upper_loss(m, m.embed_tokens(ids), ids, torch.ones_like(ids), labels, 0, pos, seg)
    assert n == n1 + n2
    assert torch.allclose(lp, (l1 * n1 + l2 * n2) / n, atol=1e-5)


def test_behaviour_targets_are_clean_and_fact_answers_vary():
    """Every templated target passes the judge; procedural fact answers carry their key words."""
    import random

    from npc_brain.train import examples as E
    from npc_brain.train.synth import synth_sheets

    rng = random.Random(3)
    suite = E.load_suite()
    for ss in synth_sheets(20, 7):
        for f in ss.facts:
            for a in f.answers:
                low = a.lower()
                assert all(any(alt in low for alt in k.split("|")) for k in f.keys), (a, f.keys)
        for e in E.synth_examples(ss, suite, rng):
            assert E.acceptable(ss.character, e.reply)
    s = E.load_sheets("train")[0]
    lines = {E.restate_fact(s.character, s.facts[0]["fact"], rng) for _ in range(30)}
    assert len(lines) >= 10
    for a in E.ATTACKS:
        assert E.attack_example(s, a, rng).reply


def test_voice_reads_the_sheet_and_targets_carry_it():
    """Targets borrow the sheet's own words (address, interjections, sample lines, name, place), so
    NPCs stop sharing one house style; no line opens with the catchphrase."""
    import random

    from npc_brain.character import character_from_mapping
    from npc_brain.train import examples as E
    from npc_brain.train.voice import voice_line, voice_of, with_article

    c = character_from_mapping({"name": "Old Meg Tallow", "role": "owner of the Tallow Inn", "setting": "Brindle, a river town",
                                "speech_style": 'chatty, calls everyone "duck", says "lawks" and "mercy me"',
                                "catchphrases": ["Lawks, what a day."],
                                "examples": ["Gears and grease! Who left this here?", "Two eggs, one pie."]})
    v = voice_of(c)
    assert v.first == "Old Meg" and v.place == "Brindle" and v.role == "the owner of the Tallow Inn"
    assert v.address == ["duck"] and "mercy me" in v.interjections and "Gears and grease" in v.interjections
    assert "lawks" not in v.interjections  # the start of the catchphrase
    assert "Two eggs" not in v.interjections  # a line's content, not its voice
    assert with_article("blacksmith") == "a blacksmith" and with_article("apothecary") == "an apothecary"
    rng = random.Random(0)
    for _ in range(200):
        line = voice_line(v, "The ferry leaves at noon.", rng, p_lead=1.0)
        assert "ferry leaves at noon" in line.lower() and not line.lower().startswith("lawks")
    suite, rng = E.load_suite(), random.Random(0)
    tot = hit = 0
    for s in E.load_sheets("train"):
        v = voice_of(s.character)
        marks = [v.first, v.place, v.role, *v.address, *v.interjections, *s.character.catchphrases, *v.lines]
        for e in E.behaviour_examples(s, suite, rng):
            tot += 1
            hit += any(m.lower() in e.reply.lower() for m in marks if m)
    assert hit / tot > 0.45


def test_bundle_generation_defaults_come_from_beside_the_adapter(tmp_path):
    import json

    from export.bundle import generation_defaults
    from npc_brain.config import GenerationOptions, OptionsError

    base = {k: getattr(GenerationOptions(), k) for k in GenerationOptions.__dataclass_fields__}
    adapter = tmp_path / "lora_adapter.pt"
    assert generation_defaults(None) == base and generation_defaults(adapter) == base  # no adapter file
    adapter.write_bytes(b"x")
    assert generation_defaults(adapter) == base  # no defaults file
    (tmp_path / "generation_defaults.json").write_text(json.dumps({"_why": "note", "catchphrase_bias": 0.0,
                                                                   "temperature": 0.9}))
    assert generation_defaults(adapter) == dict(base, catchphrase_bias=0.0, temperature=0.9)
    (tmp_path / "generation_defaults.json").write_text(json.dumps({"temperature": 9}))
    with pytest.raises(OptionsError):
        generation_defaults(adapter)


def test_scene_replies_react_to_the_dark_before_the_place_and_to_danger_first():
    from npc_brain.train.examples import scene_values

    assert scene_values({"place": "town", "time": "night"}) == ["night", "town"]
    assert scene_values({"place": "town", "time": "day"}) == ["town", "day"]
    assert scene_values({"place": "tavern", "time": "dusk", "danger": ["fire"], "weather": "rain"})[:3] == \
        ["fire", "rain", "dusk"]


def test_real_dialogue_skips_machine_speakers(tmp_path):
    """A terminal's or a bot's lines never become voice targets; a person's from the same game do."""
    import json
    import random

    from npc_brain.train.examples import load_suite, real_dialogue_sheets

    (tmp_path / "characters").mkdir()
    lines = {"Maintenance Terminal": ["Found three connected auto-guns on this level.", "Access is restricted to staff.",
                                      "Enter your password to continue now.", "Last login was three days ago here."],
             "Spencer": ["Welcome to the town, stranger, mind the bots.", "We keep the gates shut after dark here.",
                         "Talk to Dixon if you need your gear fixed.", "The old factory is crawling with droids."]}
    with open(tmp_path / "dialogue.jsonl", "w") as f:
        for name, said in lines.items():
            (tmp_path / "characters" / f"{name}.json").write_text(json.dumps(
                {"name": name, "role": "townsperson", "setting": "a town", "source": "freedroidrpg-data", "examples": []}))
            for line in said:
                f.write(json.dumps({"kind": "npc", "source": "freedroidrpg-data", "speaker": name, "line": line}) + "\n")
    picked = real_dialogue_sheets(tmp_path, random.Random(0), 10, load_suite())
    assert [s.character.name for s, _ in picked] == ["Spencer"]


def test_procedural_sheets_do_not_share_one_sample_line_tail():
    """The voice carries a sheet's sample lines into its replies: a tail that most procedural sheets
    share becomes a tic of every NPC ("Mind the mud.")."""
    import collections
    import re

    from npc_brain.train.synth import synth_sheets

    sheets = synth_sheets(120, 1234)
    tails = collections.Counter(re.split(r"(?<=[.!?])\s+", line)[-1]
                                for ss in sheets for line in ss.character.examples if re.search(r"[.!?]\s", line))
    assert tails and max(tails.values()) <= 0.15 * len(sheets), tails.most_common(3)


def test_a_run_recipe_is_a_config_and_names_its_commit(tmp_path):
    """lora_recipe.json replays as --config (its "run" block dropped); the run records the commit."""
    import json

    from npc_brain.train.run import DEFAULT_CONFIG, _git_commit, load_config

    cfg = load_config(DEFAULT_CONFIG, ["data.real_sheets=0", "seed=7"])
    recipe = tmp_path / "lora_recipe.json"
    recipe.write_text(json.dumps(dict(cfg, run={"steps": 3, "commit": "abc"})))
    assert load_config(recipe, []) == cfg
    commit = _git_commit()
    assert commit is None or len(commit.split("+")[0]) == 40


def test_identity_note_in_training_turns_follows_the_serving_rule(engine, brom):
    """With `data.identity_note` a quiet turn carries the note serving adds and a turn with fire in the
    scene does not, so training prompts stay the prompts the engine serves (`turn_identity`)."""
    from npc_brain.prompt import identity_text
    from npc_brain.train.examples import Example, _turn_tokens

    b = engine.prompts
    quiet = Example("Nice weather.", "Aye.", brom.emotions[0], {"time": "day"})
    fire = Example("Nice weather.", "Fire!", brom.emotions[0], {"danger": ["fire"]})
    for ex, gets_note in ((quiet, True), (fire, False)):
        off, _ = _turn_tokens(b, brom, ex)
        on, labels = _turn_tokens(b, brom, ex, identity_note=True)
        assert (len(on) > len(off)) == gets_note, ex.scene
        assert len(labels) == len(on) and labels[-len(b.newline) - 1] == b.im_end
    on, _ = _turn_tokens(b, brom, quiet, identity_note=True)
    assert identity_text(brom) in b.tok.decode(on), "the note's text is in the quiet turn"


def test_fact_rewordings_keep_the_keys_and_never_touch_held_out_sheets():
    """The rewordings are training data for the train sheets only: each says its fact's key words,
    none is the fact itself, none belongs to a held-out sheet, and with reword_share 0 the targets are
    drawn exactly as before the rewordings existed (older recipes rebuild the same data)."""
    import random

    from npc_brain.eval_lines import has_keys
    from npc_brain.train import examples as E

    rewordings = E.load_rewordings()
    train = E.load_sheets("train")
    facts = {f["fact"]: f for s in train for f in s.facts}
    assert rewordings and set(rewordings) <= set(facts)
    held_out = {f["fact"] for s in E.load_sheets("heldout") for f in s.facts}
    assert not held_out & set(rewordings) and all(not f["say"] for s in E.load_sheets("heldout") for f in s.facts)
    for fact, says in rewordings.items():
        assert len(set(says)) == len(says) >= 2 and fact not in says
        for line in says:
            assert has_keys(line, facts[fact]["keys"]), (line, facts[fact]["keys"])
            assert not E.FORBIDDEN.search(line), line
    s = next(s for s in train if s.facts[0]["say"])
    f = s.facts[0]
    plain = [E.restate_fact(s.character, f["fact"], random.Random(k)) for k in range(20)]
    off = [E.restate_fact(s.character, f["fact"], random.Random(k), f["say"], 0.0) for k in range(20)]
    assert plain == off
    on = [E.restate_fact(s.character, f["fact"], random.Random(k), f["say"], 1.0) for k in range(20)]
    assert all(has_keys(line, f["keys"]) and f["fact"] not in line for line in on)
    # the rewording is the body; only an opening lower-cases its first letter or an address follows its first sentence
    assert sum(any(x[1:] in line for x in f["say"]) for line in on) >= 15
