"""What `npc-brain relay` adds to a line: the same `say` straight over ZeroMQ and through the relay's TCP
hop, alternating (and alternating which goes first), each in a fresh session, against one real daemon
(persona cached first).
Prints medians and spreads.

    python scripts/relay_cost.py [--n 20] [--bundle build/bundle]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_brain import protocol as P  # noqa: E402
from npc_brain.client import Client  # noqa: E402
from npc_brain.local_daemon import free_port, spawn  # noqa: E402
from npc_brain.relay import FrameReader, pack, run  # noqa: E402


def via_relay(sock: socket.socket, msg: dict) -> dict:
    sock.sendall(pack(P.encode(msg)))
    reader = FrameReader()
    while True:
        frames = reader.feed(sock.recv(65536))
        for f in frames:
            reply = P.decode(f)
            if reply.get("type") in ("line", "error"):
                return reply


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--bundle", type=Path, default=ROOT / "build" / "bundle")
    a = ap.parse_args()
    daemon, addr = spawn(a.bundle)
    listen = f"127.0.0.1:{free_port()}"
    halt, ready = threading.Event(), threading.Event()
    threading.Thread(target=run, args=(listen, addr), kwargs={"stop": halt, "ready": ready}, daemon=True).start()
    ready.wait(10)
    sheet = yaml.safe_load((ROOT / "samples" / "characters" / "brom_blacksmith.yaml").read_text())
    opts = {"max_tokens": 16}
    direct, relayed = [], []
    try:
        host, port = listen.split(":")
        with Client(addr, timeout_s=60) as c, socket.create_connection((host, int(port))) as s:
            c.wait_ready(180)
            c.say("brom", "Hello.", character=sheet, seed=1, options=opts)  # persona cached
            for i in range(a.n):
                msg = {"v": 1, "type": "say", "id": f"r{i}", "npc": "brom", "session": f"relay{i}",
                       "character": sheet, "utterance": "What do you sell?", "seed": 7, "options": opts}
                # Which goes first alternates, and each request waits 0.3 s after the last line (as a game
                # does between lines): back to back, whichever request went first in a pair took ~60 ms
                # longer, whichever way it came (docs/figures.md), which would be read as the relay's.
                for way in (("relay", "direct") if i % 2 == 0 else ("direct", "relay")):
                    time.sleep(0.3)
                    t0 = time.perf_counter()
                    if way == "relay":
                        line = via_relay(s, msg)
                        relayed.append((time.perf_counter() - t0) * 1e3)
                    else:
                        rep = c.say("brom", "What do you sell?", character=sheet, seed=7, session=f"direct{i}",
                                    options=opts)
                        direct.append((time.perf_counter() - t0) * 1e3)
                assert line["type"] == "line" and line["text"] == rep["text"], (line, rep)
    finally:
        halt.set()
        daemon.terminate()
        daemon.wait(30)

    def q(xs: list[float]) -> str:
        xs = sorted(xs)
        return f"{statistics.median(xs):.1f} ms (p10 {xs[len(xs) // 10]:.1f}, p90 {xs[(9 * len(xs)) // 10]:.1f})"

    print(f"n={a.n} each, alternating, 0.3 s idle before each, same request and seed, identical lines both ways")
    print(f"direct ZeroMQ: {q(direct)}")
    print(f"through relay: {q(relayed)}")
    print(f"median difference: {statistics.median(relayed) - statistics.median(direct):+.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
