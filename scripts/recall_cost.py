"""What the turn's notes cost: turn prefill with and without each.

* the recall note: the same fact question said by the same sheet twice over, once as is (the note fires)
  and once with its knowledge removed (no note);
* the identity note: the same small talk (no fact recalled) with `identity_note` on and off.

The variants alternate, in an order that flips every round, so machine noise hits all of them. Only the
turn's prefill is timed (the persona is cached and excluded).
Run: .venv/bin/python scripts/recall_cost.py (needs build/bundle).
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from npc_brain.character import load_character
from npc_brain.engine import Engine, LineRequest
from npc_brain.prompt import identity_text
from npc_brain.recall import relevant_facts

FACT_QUESTION = "How much does a good sword cost here?"
SMALL_TALK = "Quiet day, isn't it?"
ROUNDS, WARMUP = 25, 3


def main() -> None:
    engine = Engine.load(Path("build/bundle"), threads=2)
    sheet = load_character("samples/characters/brom_blacksmith.yaml")
    bare = dataclasses.replace(sheet, knowledge=())
    print("recalled:", relevant_facts(FACT_QUESTION, sheet.knowledge))
    assert not relevant_facts(SMALL_TALK, sheet.knowledge)
    tokens = {
        "recall note": len(engine.prompts.current_ids(FACT_QUESTION, "", sheet.knowledge))
        - len(engine.prompts.current_ids(FACT_QUESTION, "")),
        "identity note": len(engine.prompts.current_ids(SMALL_TALK, identity=identity_text(sheet)))
        - len(engine.prompts.current_ids(SMALL_TALK)),
    }
    off, on = (engine.defaults.validated({"max_tokens": 1, "identity_note": v}) for v in (False, True))
    variants = [("fact question, recall note", sheet, FACT_QUESTION, off),
                ("fact question, no note", bare, FACT_QUESTION, off),
                ("small talk, identity note", sheet, SMALL_TALK, on),
                ("small talk, no note", sheet, SMALL_TALK, off)]
    times: dict[str, list[float]] = {name: [] for name, *_ in variants}
    for i in range(ROUNDS):
        for name, s, utterance, opts in variants if i % 2 else variants[::-1]:
            rep = engine.generate(LineRequest(s, utterance, {}, (), i, opts))
            if i >= WARMUP:
                times[name].append(rep.timings["prefill_ms"])
    print("note sizes:", ", ".join(f"{k} {v} tokens" for k, v in tokens.items()))
    print(f"turn prefill, {ROUNDS - WARMUP} lines each:")
    for name, xs in times.items():
        q1, _, q3 = statistics.quantiles(xs, n=4)
        print(f"  {name}: p50 {statistics.median(xs):.1f} ms (IQR {q1:.1f}-{q3:.1f})")


if __name__ == "__main__":
    main()
