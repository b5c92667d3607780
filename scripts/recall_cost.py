"""What the recall note costs: turn prefill with and without it.

The same utterance is said by the same sheet twice over, once as is (the note fires) and once with its
knowledge removed (no note); the two alternate so machine noise hits both. Only the turn's prefill is
timed (the persona is cached and excluded). Run: .venv/bin/python scripts/recall_cost.py (needs build/bundle).
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from npc_brain.character import load_character
from npc_brain.config import GenerationOptions
from npc_brain.engine import Engine, LineRequest
from npc_brain.recall import relevant_facts

UTTERANCE = "How much does a good sword cost here?"
ROUNDS, WARMUP = 25, 3


def main() -> None:
    engine = Engine.load(Path("build/bundle"), threads=2)
    sheet = load_character("samples/characters/brom_blacksmith.yaml")
    bare = dataclasses.replace(sheet, knowledge=())
    print("recalled:", relevant_facts(UTTERANCE, sheet.knowledge))
    n_note = (len(engine.prompts.current_ids(UTTERANCE, "", sheet.knowledge))
              - len(engine.prompts.current_ids(UTTERANCE, "")))
    opts = GenerationOptions().validated({"max_tokens": 1})
    times: dict[str, list[float]] = {"with note": [], "without": []}
    for i in range(ROUNDS):
        pair = [("with note", sheet), ("without", bare)]
        for name, s in pair if i % 2 else pair[::-1]:
            rep = engine.generate(LineRequest(s, UTTERANCE, {}, (), i, opts))
            if i >= WARMUP:
                times[name].append(rep.timings["prefill_ms"])
    print(f"note: {n_note} tokens; turn prefill, {ROUNDS - WARMUP} lines each:")
    for name, xs in times.items():
        q1, _, q3 = statistics.quantiles(xs, n=4)
        print(f"  {name}: p50 {statistics.median(xs):.1f} ms (IQR {q1:.1f}-{q3:.1f})")


if __name__ == "__main__":
    main()
