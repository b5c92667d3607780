"""Does the NPC keep to a fact when the player follows up on it ("are you sure about that?")?

Two-turn conversations on the held-out sheets: the player asks a fact question, the NPC answers
(greedy), the player follows up with a question that names nothing; the second line is judged by
the fact-recall rule of `npc-brain eval lines` (it holds the fact's key words). Run with the
follow-up recall of `npc_brain.recall` and, alternating, without it (the previous player line
ignored), on the same engine. Run: .venv/bin/python scripts/follow_up_recall.py (needs build/bundle).
"""

from __future__ import annotations

import sys
from pathlib import Path

import npc_brain.prompt as prompt
from npc_brain.engine import Engine, LineRequest
from npc_brain.eval_lines import has_keys
from npc_brain.prompt import Turn
from npc_brain.recall import relevant_facts
from npc_brain.train.examples import load_sheets

FOLLOW_UPS = ["Are you sure about that?", "Sorry, what was that again?", "Can you say that once more?",
              "Is that right?", "Really? Tell me again?"]


def main(bundle: str = "build/bundle") -> None:
    engine = Engine.load(Path(bundle), threads=2)
    greedy = engine.defaults.validated({"temperature": 0.0})
    with_recall = prompt.recall_for_turn
    without = lambda utterance, knowledge, previous="": relevant_facts(utterance, knowledge)  # noqa: E731
    hits = {"follow-up recall": 0, "without": 0}
    n = 0
    for sheet in load_sheets("heldout"):
        c = sheet.character
        for j, fact in enumerate(sheet.facts):
            first = engine.generate(LineRequest(c, fact["q"], {}, (), 0, greedy)).line
            history = (Turn("player", fact["q"]), Turn("npc", first))
            follow = FOLLOW_UPS[(n + j) % len(FOLLOW_UPS)]
            for name, fn in (("follow-up recall", with_recall), ("without", without)):
                prompt.recall_for_turn = fn
                line = engine.generate(LineRequest(c, follow, {}, history, 0, greedy)).line
                hits[name] += has_keys(line, fact["keys"])
                print(f"{name:>16} | {c.name[:18]:18} | {follow:28} | {line}")
            prompt.recall_for_turn = with_recall
            n += 1
    for name, k in hits.items():
        print(f"{name}: second line holds the fact in {k} of {n} ({100 * k / n:.0f}%)")


if __name__ == "__main__":
    main(*sys.argv[1:])
