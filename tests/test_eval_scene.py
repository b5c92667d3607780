"""The end-to-end scene check's screenshots (npc_brain.eval_scene), without the models."""

from __future__ import annotations

import numpy as np

from npc_brain.eval_scene import CONDITIONS, forced_labels, notable, screenshot


def test_a_screenshot_of_a_condition_has_that_condition_as_its_only_notable_one():
    for cond, (tag, value) in CONDITIONS.items():
        for seed in range(30):
            lab = forced_labels(cond, np.random.default_rng(seed))
            want = {tag: [value] if tag == "danger" else value}
            assert notable(lab) == want, (cond, seed, lab)


def test_cluttered_screenshots_keep_the_condition_and_draw_the_rest():
    extra = 0
    for cond, (tag, value) in CONDITIONS.items():
        for seed in range(30):
            lab = forced_labels(cond, np.random.default_rng(seed), cluttered=True)
            got = lab[tag]
            assert value in (got if isinstance(got, list) else [got])
            extra += len(notable(lab)) > 1
    assert extra > 20  # other conditions do appear alongside


def test_rendered_screenshots_really_show_their_condition():
    for cond, (tag, value) in CONDITIONS.items():
        for k in range(3):
            img, exact = screenshot(cond, 9_000_000 + k)
            assert img.ndim == 3 and img.shape[2] == 3
            assert notable(exact) == {tag: [value] if tag == "danger" else value}, (cond, k, exact)
            _, cluttered = screenshot(cond, 9_000_000 + k, cluttered=True)
            got = cluttered[tag]
            assert value in (got if isinstance(got, list) else [got])


def test_engine_tags_mode_sends_the_exact_labels_and_writes_its_own_section(bundle_dir, tmp_path):
    """--engine-tags skips vision: every condition is 'seen' (the renderer's labels go in as the
    game's tags), and the table lands in its own section, not over the vision run's."""
    from npc_brain.eval_scene import main

    out = tmp_path / "figures.md"
    out.write_text("# figures\n")
    assert main(["--bundle", str(bundle_dir), "--per-condition", "1", "--engine-tags", "--out", str(out)]) == 0
    text = out.read_text()
    assert "<!-- scene_engine_tags:start -->" in text and "<!-- scene:start -->" not in text
    assert "--engine-tags" in text
    for cond in CONDITIONS:
        assert f"| {cond} | 100% |" in text
