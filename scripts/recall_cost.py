"""What the recall note costs: turn prefill with and without it (same utterance; the second sheet has no
knowledge, so no note). Run: .venv/bin/python scripts/recall_cost.py (needs build/bundle)."""
import dataclasses, statistics, sys
from pathlib import Path
from npc_brain.character import load_character
from npc_brain.config import GenerationOptions
from npc_brain.engine import Engine, LineRequest
from npc_brain.recall import relevant_facts

engine = Engine.load(Path("build/bundle"), threads=2)
c = load_character("samples/characters/brom_blacksmith.yaml")
bare = dataclasses.replace(c, knowledge=())
utt = "How much does a good sword cost here?"
print("recalled:", relevant_facts(utt, c.knowledge))
n_note = len(engine.prompts.current_ids(utt, "", c.knowledge)) - len(engine.prompts.current_ids(utt, ""))
opts = GenerationOptions().validated({"max_tokens": 1})
with_note, without = [], []
for i in range(25):
    for sheet, out in ((c, with_note), (bare, without)) if i % 2 else ((bare, without), (c, with_note)):
        rep = engine.generate(LineRequest(sheet, utt, {}, (), i, opts))
        if i >= 3:
            out.append(rep.timings["prefill_ms"])
q = lambda xs: statistics.quantiles(xs, n=4)
print(f"note tokens {n_note}; prefill ms with note p50 {statistics.median(with_note):.1f} (IQR {q(with_note)[0]:.1f}-{q(with_note)[2]:.1f}), "
      f"without {statistics.median(without):.1f} (IQR {q(without)[0]:.1f}-{q(without)[2]:.1f}); n={len(with_note)} each")
