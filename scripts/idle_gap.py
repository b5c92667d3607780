"""How long a line takes after the daemon has been idle for a while, against one sent right after another.

One real daemon on loopback (persona cached first); before each measured `say` (fresh session, same words
and seed) a warm-up `say` runs, then the script sleeps for the gap; the gaps are visited in a shuffled
order each round. Prints the wall time and the reply's own timings per gap.

    python scripts/idle_gap.py [--rounds 8] [--bundle build/bundle]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_brain.client import Client  # noqa: E402
from npc_brain.local_daemon import spawn  # noqa: E402

GAPS = (0.0, 0.05, 0.3, 1.0, 3.0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--bundle", type=Path, default=ROOT / "build" / "bundle")
    a = ap.parse_args()
    daemon, addr = spawn(a.bundle)
    sheet = yaml.safe_load((ROOT / "samples" / "characters" / "brom_blacksmith.yaml").read_text())
    opts = {"max_tokens": 16}
    wall: dict[float, list[float]] = {g: [] for g in GAPS}
    parts: dict[float, list[dict]] = {g: [] for g in GAPS}
    try:
        with Client(addr, timeout_s=60) as c:
            c.wait_ready(180)
            c.say("brom", "Hello.", character=sheet, seed=1, options=opts)  # persona cached
            n = 0
            for r in range(a.rounds):
                order = list(GAPS)
                random.Random(r).shuffle(order)
                for gap in order:
                    c.say("brom", "Hi.", character=sheet, seed=3, session=f"w{n}", options=opts)
                    time.sleep(gap)
                    t0 = time.perf_counter()
                    rep = c.say("brom", "What do you sell?", character=sheet, seed=7, session=f"s{n}", options=opts)
                    wall[gap].append((time.perf_counter() - t0) * 1000)
                    parts[gap].append(rep["timings"])
                    n += 1
    finally:
        daemon.terminate()
        daemon.wait(30)
    print(f"{a.rounds} lines per gap, 16 tokens, fresh sessions, persona cached")
    for gap in GAPS:
        med = {k: statistics.median(t[k] for t in parts[gap]) for k in ("prefill_ms", "decode_ms")}
        print(f"idle {gap:4.2f} s: wall median {statistics.median(wall[gap]):6.1f} ms (min {min(wall[gap]):.1f}, "
              f"max {max(wall[gap]):.1f}); prefill {med['prefill_ms']:.1f}, decode {med['decode_ms']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
