"""What prefilling ahead saves: the turns of a conversation with the daemon prefilling the finished
exchange while idle (the default) against `--no-prefill-ahead`.

Two real daemons on loopback, one each way, same bundle. Each round holds one conversation on each
(fresh session, same sheet, words and seeds; which daemon goes first flips every round), streaming on,
pausing `--think-ms` after every line as a player reading it would. Turns after the first are measured:
time to first partial at the client, and the reply's own prefill time.

    python scripts/prefill_ahead.py [--rounds 6] [--turns 6] [--think-ms 500] [--bundle build/bundle]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_brain.client import Client  # noqa: E402
from npc_brain.loadtest import UTTERANCES  # noqa: E402
from npc_brain.local_daemon import spawn  # noqa: E402


def converse(c: Client, sheet: dict, session: int, turns: int, think_s: float) -> list[tuple[float, float]]:
    """(first partial ms, prefill ms) of every turn after the first. Seeds differ by session, so each
    conversation's lines, and so its exchanges, are new to the daemon's history cache."""
    out = []
    for t in range(turns):
        first: list[float] = []
        t0 = time.perf_counter()
        rep = c.say("npc", UTTERANCES[t % len(UTTERANCES)], character=sheet, session=f"s{session}",
                    seed=1000 * session + t,
                    options={"max_tokens": 30}, on_partial=lambda m: first.append(time.perf_counter()))
        if t:
            out.append((((first[0] if first else time.perf_counter()) - t0) * 1000, rep["timings"]["prefill_ms"]))
        time.sleep(think_s)
    return out


def summary(xs: list[float]) -> str:
    q1, med, q3 = statistics.quantiles(xs, n=4)
    return f"p50 {med:.0f} ms (IQR {q1:.0f}-{q3:.0f})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--think-ms", type=float, default=500)
    ap.add_argument("--bundle", type=Path, default=ROOT / "build" / "bundle")
    a = ap.parse_args()
    sheet = yaml.safe_load((ROOT / "samples" / "characters" / "brom_blacksmith.yaml").read_text())
    ways = {"ahead": [], "no ahead": ["--no-prefill-ahead"]}
    procs, clients = [], {}
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    try:
        for name, extra in ways.items():  # one at a time: a daemon holds its port before the next is picked
            proc, addr = spawn(a.bundle, *extra)
            procs.append(proc)
            clients[name] = c = Client(addr, timeout_s=120)
            c.wait_ready(300)
            c.say("npc", "Hello.", character=sheet, session="warm", seed=0, options={"max_tokens": 4})
        for r in range(a.rounds):
            order = list(ways) if r % 2 == 0 else list(ways)[::-1]
            for name in order:
                got[name] += converse(clients[name], sheet, r, a.turns, a.think_ms / 1000)
        for c in clients.values():
            c.close()
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=60)
    print(f"{a.rounds} conversations of {a.turns} turns each way, {a.think_ms:g} ms pause after each line; "
          f"turns 2..{a.turns} ({a.rounds * (a.turns - 1)} lines each way):")
    for name, rows in got.items():
        print(f"  {name:>8}: first partial {summary([f for f, _ in rows])}; prefill {summary([p for _, p in rows])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
