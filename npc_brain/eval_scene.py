"""`npc-brain eval scene`: does the NPC's line reflect what the screenshot shows?

End to end, the way a game uses it: a procedural screenshot with one condition
forced (rain, night, fire, combat) is sent as PNG bytes, the bundle's vision
model reads it, the scene facts go into the prompt, and the NPC answers a
scene-prompting question. Two rates are reported per condition:

* seen:      the vision model reported the forced condition;
* reflected: the line mentions it (the condition's word or a synonym from
             samples/behaviour/suite.yaml `scene_words`);
* any:       the line mentions some notable condition the screenshot really shows
             (danger, creatures, weather other than clear, dusk or night, a hurt player).

By default each screenshot is "a screenshot of" its condition: the condition is the
notable thing in it (clear weather, daylight, no other danger or creatures unless
that is the condition). ``--cluttered`` draws every other tag at random as well, the
way rounds before 2026-11-30 measured: a night screenshot may then also burn, and
an NPC that speaks of the fire reflects the scene but not the night.

The renders use seeds far from the training seeds (see the vision recipe).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from npc_brain.config import DEFAULT_BUNDLE_DIR
from npc_brain.scene import notable

ROOT = Path(__file__).resolve().parent.parent
CONDITIONS = {"rain": ("weather", "rain"), "night": ("time", "night"), "fire": ("danger", "fire"),
              "combat": ("danger", "combat")}
QUESTIONS = ["What now?", "What do you make of all this?", "Is it safe here?", "Should we stay or go?"]
SEED_BASE = 9_000_000


def forced_labels(cond: str, rng: np.random.Generator, cluttered: bool = False) -> dict:
    from npc_brain.render_scenes import sample_labels

    lab = sample_labels(rng)
    if not cluttered:
        lab.update(danger=[], creatures=[], player=None, time="day")
        if lab["setting"] == "outdoor":
            lab["weather"] = "clear"
    tag, value = CONDITIONS[cond]
    if tag == "weather":
        lab["place"], lab["weather"] = "town", value
        lab["setting"] = "outdoor"
    elif tag == "time":
        lab["time"] = value
    else:
        lab["danger"] = sorted(set(lab["danger"]) | {value})
    return lab


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def shows(labels: dict, tag: str, value: str) -> bool:
    """`labels` (true or read) hold `value` for `tag`, a single value or one of a list."""
    got = labels.get(tag)
    return value in (got if isinstance(got, list) else [got])


def screenshot(cond: str, seed: int, cluttered: bool = False) -> tuple[np.ndarray, dict]:
    """A rendered screenshot that really shows `cond`, and its exact labels.

    The renderer may drop a requested tag (a windowless room shows no time of day) and adds the
    HUD's health reading; a draw without the condition, or (unless cluttered) with a second notable
    one such as a hurt player, is replaced by the next one (seed + 100)."""
    from npc_brain.render_scenes import render_labels

    tag, value = CONDITIONS[cond]
    for _ in range(20):
        img, exact = render_labels(forced_labels(cond, np.random.default_rng(seed), cluttered), seed)
        if shows(exact, tag, value) and (cluttered or set(notable(exact)) == {tag}):
            return img, exact
        seed += 100
    raise RuntimeError(f"no render shows {cond} near seed {seed}")


def seen_only(vision_dir: Path, per_condition: int, seed_base: int, cluttered: bool = False) -> int:
    """The vision half alone: how often the reader reports each forced condition (PNG round trip)."""
    from npc_brain.vision import SceneReader, decode_screenshot

    reader = SceneReader(vision_dir, threads=1)
    rates = []
    for ci, cond in enumerate(CONDITIONS):
        tag, value = CONDITIONS[cond]
        seen = 0
        for k in range(per_condition):
            seed = seed_base + 1000 * ci + k
            img, _ = screenshot(cond, seed, cluttered)
            seen += shows(reader.read(decode_screenshot(png_bytes(img))), tag, value)
        rates.append(seen / per_condition)
        print(f"{cond}: seen {seen}/{per_condition}", flush=True)
    print(f"all: {sum(rates) / len(rates):.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="npc-brain eval scene")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    p.add_argument("--per-condition", type=int, default=8)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures.md")
    p.add_argument("--vision-only", type=Path, metavar="VISION_DIR", default=None,
                   help="only the 'seen' rate, from this scene.onnx folder (no LM, nothing written)")
    p.add_argument("--seed-base", type=int, default=SEED_BASE)
    p.add_argument("--cluttered", action="store_true",
                   help="draw every other scene tag at random too (the measure before 2026-11-30)")
    p.add_argument("--engine-tags", action="store_true",
                   help="skip vision: send the renderer's exact labels as the engine's tags (the voice alone)")
    a = p.parse_args(argv)
    if a.vision_only is not None:
        return seen_only(a.vision_only, a.per_condition, a.seed_base, a.cluttered)
    import yaml

    from npc_brain.bench import write_section
    from npc_brain.character import load_character
    from npc_brain.engine import Engine, LineRequest
    from npc_brain.eval_lines import grounded
    from npc_brain.scene import merge_scene

    words = yaml.safe_load(open(ROOT / "samples" / "behaviour" / "suite.yaml")).get("scene_words", {})
    sheets = [load_character(f) for f in sorted((ROOT / "samples" / "characters").glob("*.yaml"))]
    engine = Engine.load(a.bundle, deterministic=True)
    if engine.bundle.vision_dir is None and not a.engine_tags:
        print("error: this bundle has no vision model (--engine-tags measures its voice without one)", file=sys.stderr)
        return 2
    rows = []
    examples = []
    for ci, cond in enumerate(CONDITIONS):
        tag, value = CONDITIONS[cond]
        seen = reflected = anything = 0
        for k in range(a.per_condition):
            seed = a.seed_base + 1000 * ci + k
            img, labels = screenshot(cond, seed, a.cluttered)
            scene = merge_scene(None, labels) if a.engine_tags else engine.see(png_bytes(img))
            seen += shows(scene, tag, value)
            c = sheets[k % len(sheets)]
            rep = engine.generate(LineRequest(c, QUESTIONS[k % len(QUESTIONS)], scene, (), seed))
            hit = grounded(rep.line, {tag: value}, words)
            reflected += hit
            anything += grounded(rep.line, notable(labels), words)
            if k < 2:
                examples.append(f"- {cond}: saw `{scene}` -> {c.name}: \"{rep.line}\" ({'reflects' if hit else 'misses'})")
        n = a.per_condition
        rows.append((cond, seen / n, reflected / n, anything / n))
        print(f"{cond}: seen {seen}/{n}, reflected {reflected}/{n}, any notable condition {anything}/{n}", flush=True)
    mean = [sum(r[i] for r in rows) / len(rows) for i in (1, 2, 3)]
    kind = "cluttered (every other tag drawn at random)" if a.cluttered else "one notable condition each"
    path = "PNG through the whole path (vision -> prompt -> line)"
    if a.engine_tags:
        path = "vision skipped: the renderer's exact labels go in as the game's tags (tags -> prompt -> line)"
    flags = " --cluttered" * a.cluttered + " --engine-tags" * a.engine_tags
    body = (f"Command: `npc-brain eval scene --per-condition {a.per_condition}{flags}`; "
            f"bundle {engine.bundle.bundle_id}; procedural screenshots, {kind} (seeds from {a.seed_base}), "
            f"{path}, deterministic sampling at default temperature.\n\n"
            "| condition | vision saw it | line reflects it | line reflects a notable condition |\n|---|---|---|---|\n"
            + "".join(f"| {c} | {s:.0%} | {r:.0%} | {x:.0%} |\n" for c, s, r, x in rows)
            + f"| **all** | {mean[0]:.0%} | **{mean[1]:.0%}** | {mean[2]:.0%} |\n\nExamples:\n"
            + "\n".join(examples) + "\n")
    section = "scene" + "_cluttered" * a.cluttered + "_engine_tags" * a.engine_tags
    write_section(a.out, section, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
