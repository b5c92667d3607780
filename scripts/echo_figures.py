"""How often the NPC takes a player's out-of-world words into its line, with and without the echo guard.

A probe file lists player utterances, each with the words a line that stays in its world would not say back
(written apart from `sampler.ECHO_WORDS`, so the judge is not the guard's own list):

    - text: "What's your token limit?"
      out_of_world: [token limit, token]

    python scripts/echo_figures.py PROBES.yaml [--bundle build/bundle] [--sheets 4] [--seeds 2] [--show]

Every probe is put to the first N sample sheets (samples/characters), greedy and with `--seeds` sampled
draws, guard off and on in the same run. Reported per side: echo rate (lines with one of the probe's
out_of_world words, as a whole word), in character (`eval_lines.in_character`), empty lines, mean words.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_brain.character import load_character  # noqa: E402
from npc_brain.engine import Engine, LineRequest  # noqa: E402
from npc_brain.eval_lines import in_character  # noqa: E402


def echoes(line: str, words: list[str]) -> bool:
    low = line.lower()
    return any(re.search(r"(?<![a-z0-9])" + re.escape(w.lower()) + r"(?![a-z0-9])", low) for w in words)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("probes", type=Path)
    p.add_argument("--bundle", type=Path, default=ROOT / "build" / "bundle")
    p.add_argument("--sheets", type=int, default=4)
    p.add_argument("--seeds", type=int, default=2, help="sampled draws per probe and sheet (plus one greedy)")
    p.add_argument("--show", action="store_true", help="print every line that changed")
    a = p.parse_args(argv)

    probes = yaml.safe_load(a.probes.read_text())
    sheets = [load_character(f) for f in sorted((ROOT / "samples" / "characters").glob("*.yaml"))[: a.sheets]]
    engine = Engine.load(a.bundle, threads=2)
    results: dict[str, list] = {}
    for side, guard in (("off", False), ("on", True)):
        sampled = replace(engine.defaults, echo_guard=guard)
        greedy = replace(sampled, temperature=0.0)
        reqs = [LineRequest(c, pr["text"], {}, (), seed, greedy if seed == 0 else sampled)
                for pr in probes for c in sheets for seed in range(a.seeds + 1)]
        reps = [rep for k in range(0, len(reqs), 8) for rep in engine.generate_many(reqs[k:k + 8])]  # 8 at a time, as a daemon batches
        results[side] = [(r.utterance, r.character.name, rep.line, pr["out_of_world"])
                         for r, rep, pr in zip(reqs, reps, [pr for pr in probes for _ in sheets
                                                            for _ in range(a.seeds + 1)])]
    print(f"{len(probes)} probes x {len(sheets)} sheets x (greedy + {a.seeds} sampled) = "
          f"{len(results['off'])} lines per side, bundle {a.bundle}")
    print("| echo guard | echo rate (%) | in character (%) | empty lines | mean words |")
    print("|---|---|---|---|---|")
    for side, rows in results.items():
        n = len(rows)
        echo = 100.0 * sum(echoes(line, w) for _, _, line, w in rows) / n
        inc = 100.0 * sum(in_character(line) for _, _, line, _ in rows) / n
        empty = sum(not line.strip() for _, _, line, _ in rows)
        words = sum(len(line.split()) for _, _, line, _ in rows) / n
        print(f"| {side} | {echo:.1f} | {inc:.1f} | {empty} | {words:.1f} |")
    if a.show:
        for (u, name, off, w), (_, _, on, _) in zip(results["off"], results["on"]):
            if off != on:
                print(f"[{name[:12]}] {u!r}\n   off: {off}\n   on:  {on}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
