"""`npc-brain loadtest`: latency and throughput of a real daemon at 1, 4, 8, 16 conversations.

Starts its own daemon on loopback (or uses `--connect`), then for each concurrency
level runs that many conversations in parallel, each saying `--turns` lines with
streaming on (a small level holds fresh conversations in a row until it has `--min-lines`), and records time to first partial, time to the final line, and
tokens. With `--think-ms` each conversation pauses that long after a line before its next
turn, as a player reading it does (the daemon then has idle time; lines/s fall with it).
Also measures the persona cache: the first line of a never-seen sheet
(miss) against later lines of the same sheet (hit). Writes a section of
docs/figures.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import threading
import time
from datetime import date
from pathlib import Path

from npc_brain.bench import write_section
from npc_brain.config import DEFAULT_BUNDLE_DIR
from npc_brain.keys import add_client_curve_args, client_curve_from_args
from npc_brain.local_daemon import spawn

ROOT = Path(__file__).resolve().parent.parent
UTTERANCES = ["Good evening. What's the news around here?", "Can you help me with something?",
              "What do you think of the weather?", "Tell me about yourself."]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def run_level(addr: str, sheets: list[dict], conversations: int, turns: int, max_tokens: int,
              curve: tuple[bytes, bytes, bytes] | None = None, think_s: float = 0.0, rounds: int = 1) -> dict:
    """`conversations` at once, each `rounds` fresh conversations of `turns` lines in a row (more rounds
    give a small level enough lines for a p95). Sessions and seeds are new for every conversation, so
    no history is cached from an earlier one."""
    from npc_brain.client import Client

    ttfp, total, tokens, prefill, queued = [], [], [], [], []
    lock = threading.Lock()
    errors: list[str] = []
    # Every conversation warms its persona first; the clock starts when all are warm, so the
    # throughput counts only the measured lines.
    ready = threading.Barrier(conversations + 1)

    def convo(i: int) -> None:
        sheet = sheets[i % len(sheets)]
        try:
            with Client(addr, timeout_s=300, retries=20, curve=curve) as c:
                ref = c.register(sheet)
                c.say(sheet.get("id", "npc"), "Hello.", character_ref=ref, session=f"warm{i}", seed=i,
                      options={"max_tokens": 4})  # persona now cached: we measure the hit path
                ready.wait()
                for r, t in ((r, t) for r in range(rounds) for t in range(turns)):
                    if t and think_s:
                        time.sleep(think_s)
                    first: list[float] = []
                    t0 = time.perf_counter()
                    rep = c.say(sheet.get("id", "npc"), UTTERANCES[(i + t) % len(UTTERANCES)], character_ref=ref,
                                session=f"lt{conversations}-{i}-{r}", seed=100_000 * conversations + 1000 * i + 10 * r + t,
                                options={"max_tokens": max_tokens},
                                on_partial=lambda m: first.append(time.perf_counter()))
                    t1 = time.perf_counter()
                    with lock:
                        ttfp.append((first[0] if first else t1) - t0)
                        total.append(t1 - t0)
                        tokens.append(rep["tokens"])
                        prefill.append(rep["timings"]["prefill_ms"] / 1000)
                        queued.append(rep["timings"]["queue_ms"] / 1000)
        except Exception as e:  # noqa: BLE001 - counted and reported
            ready.abort()  # nobody waits for a conversation that failed to warm up
            with lock:
                errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=convo, args=(i,)) for i in range(conversations)]
    for th in threads:
        th.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return {"conversations": conversations, "lines": len(total), "errors": errors,
            "ttfp_p50": pct(ttfp, 0.5), "ttfp_p95": pct(ttfp, 0.95), "line_p50": pct(total, 0.5),
            "line_p95": pct(total, 0.95), "lines_per_s": len(total) / wall, "tokens_per_s": sum(tokens) / wall,
            # the daemon prefills one line at a time, and nobody decodes meanwhile: this share of
            # the wall clock is what batching decode steps cannot win back
            "prefill_p50": pct(prefill, 0.5), "prefill_share": sum(prefill) / wall, "queue_p50": pct(queued, 0.5)}


def persona_cache_effect(addr: str, sheets: list[dict], reps: int, max_tokens: int = 16,
                         curve: tuple[bytes, bytes, bytes] | None = None) -> dict:
    """Prefill ms of a line whose sheet the daemon has never seen (miss: the persona prefix is
    computed) against the next line of the same sheet (hit: the prefix comes from the cache).

    Every probe's sheet carries a fresh random `loadtest_probe` key: the cache key is the sheet's
    hash, so the sheet is new even to a daemon that ran this before, while the prompt stays the
    sample's own (unknown keys are not part of it). Lines get `max_tokens` so they are accepted at
    the first try: the daemon retries an empty or parroting line with the next seed, after the
    persona is cached, and the reply's timings are then those of a hit. A reply whose seed is not
    the one asked for was such a retry; that probe is dropped and another sheet tried.
    """
    from npc_brain.client import Client

    hit, miss = [], []
    with Client(addr, timeout_s=120, curve=curve) as c:
        for k in range(3 * reps):
            if len(miss) == reps:
                break
            tag = os.urandom(8).hex()
            sheet = dict(sheets[k % len(sheets)], loadtest_probe=tag)
            sheet.pop("id", None)
            first = c.say("probe", "What's new?", character=sheet, session=f"pc-{tag}-m", seed=k,
                          options={"max_tokens": max_tokens})
            if first["seed"] != k:
                continue  # retried by the daemon: its prefill was a hit, not a miss
            again = c.say("probe", "What's new?", character=sheet, session=f"pc-{tag}-h", seed=k,
                          options={"max_tokens": max_tokens})
            miss.append(first["timings"]["prefill_ms"])
            hit.append(again["timings"]["prefill_ms"])
    if not miss:
        raise RuntimeError(f"persona cache probe: all {3 * reps} first lines were retried by the daemon")
    return {"n": len(miss), "miss_p50": statistics.median(miss), "hit_p50": statistics.median(hit)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="npc-brain loadtest")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    p.add_argument("--connect", help="use a running daemon instead of starting one")
    p.add_argument("--levels", default="1,4,8,16")
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=30)
    p.add_argument("--min-lines", type=int, default=12,
                   help="a level with fewer conversations x turns holds more conversations in a row, to reach this")
    p.add_argument("--think-ms", type=float, default=0.0,
                   help="pause after each line before the conversation's next turn (a player reading it)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures.md")
    add_client_curve_args(p)
    a = p.parse_args(argv)
    import yaml

    sheets = [yaml.safe_load(open(f)) for f in sorted((ROOT / "samples" / "characters").glob("*.yaml"))]
    proc = None
    addr = a.connect
    curve = client_curve_from_args(addr, a.curve_client_secret, a.curve_server_public) if addr else None
    if not addr:
        proc, addr = spawn(a.bundle, "--queue", "64", "--max-active", "16")
    try:
        from npc_brain.client import Client

        with Client(addr, curve=curve) as c:
            c.wait_ready(300)
        rows = []
        for n in [int(x) for x in a.levels.split(",")]:
            rounds = max(1, -(-a.min_lines // (n * a.turns)))
            r = run_level(addr, sheets, n, a.turns, a.max_tokens, curve, a.think_ms / 1000, rounds)
            rows.append(r)
            print(f"{n:>3} conversations: first partial p50 {r['ttfp_p50'] * 1000:.0f} ms p95 {r['ttfp_p95'] * 1000:.0f} ms; "
                  f"line p50 {r['line_p50'] * 1000:.0f} ms p95 {r['line_p95'] * 1000:.0f} ms; "
                  f"{r['lines_per_s']:.2f} lines/s, {r['tokens_per_s']:.1f} tokens/s; prefill p50 "
                  f"{r['prefill_p50'] * 1000:.0f} ms, {r['prefill_share']:.0%} of the time; queued p50 "
                  f"{r['queue_p50'] * 1000:.0f} ms; errors {len(r['errors'])}",
                  flush=True)
        pc = persona_cache_effect(addr, sheets, 4, curve=curve)
        print(f"persona prefix: miss {pc['miss_p50']:.0f} ms, hit {pc['hit_p50']:.0f} ms (prefill, p50 of {pc['n']})")
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    base = rows[0]["tokens_per_s"] if rows else float("nan")
    # with pauses the wall clock holds the players' reading time too: a ratio of rates would measure that
    ratio = not a.think_ms
    body = (f"Machine: {platform.machine()}, 2 cores; {date.today()}; command: `npc-brain loadtest --levels {a.levels} "
            f"--turns {a.turns} --min-lines {a.min_lines} --max-tokens {a.max_tokens}" + (f" --think-ms {a.think_ms:g}" if a.think_ms else "")
            + "`; real daemon on loopback, streaming on, persona cached.\n\n"
            "| conversations | lines | first partial p50 / p95 ms | final line p50 / p95 ms | lines/s | tokens/s | "
            + ("vs 1 conversation | " if ratio else "") + "prefill p50 ms | prefill share of wall | errors |\n"
            + "|---" * (10 if ratio else 9) + "|\n")
    for r in rows:
        body += (f"| {r['conversations']} | {r['lines']} | {r['ttfp_p50'] * 1000:.0f} / {r['ttfp_p95'] * 1000:.0f} | "
                 f"{r['line_p50'] * 1000:.0f} / {r['line_p95'] * 1000:.0f} | {r['lines_per_s']:.2f} | "
                 f"{r['tokens_per_s']:.1f} | " + (f"{r['tokens_per_s'] / base:.2f}x | " if ratio else "")
                 + f"{r['prefill_p50'] * 1000:.0f} | {r['prefill_share']:.0%} | {len(r['errors'])} |\n")
    body += (f"\nPersona prefix cache (prefill ms of a line, p50 of {pc['n']}): miss {pc['miss_p50']:.0f}, "
             f"hit {pc['hit_p50']:.0f}.\n")
    write_section(a.out, "loadtest_think" if a.think_ms else "loadtest", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
