"""The loadtest's persona-cache probe against a scripted fake daemon (no bundle needed)."""

from __future__ import annotations

import pytest

from npc_brain.loadtest import persona_cache_effect
from tests.fake_daemon import FakeDaemon

SHEETS = [{"name": "Brom", "id": "brom"}]


def line(prefill_ms: float, retried: bool = False):
    def answer(req: dict) -> list[dict]:
        return [{"v": 1, "type": "line", "id": req["id"], "text": "Aye.", "emotion": "neutral",
                 "seed": req["seed"] + retried, "timings": {"prefill_ms": prefill_ms}}]
    return answer


def test_probe_drops_misses_the_daemon_retried_and_uses_fresh_sheets():
    with FakeDaemon([line(60, retried=True), line(200), line(50)]) as d:
        got = persona_cache_effect(d.address, SHEETS, reps=1)
    assert got == {"n": 1, "miss_p50": 200, "hit_p50": 50}
    dropped, miss, hit = d.requests
    assert dropped["character"] != miss["character"] == hit["character"]  # a new sheet per probe...
    assert miss["character"]["name"] == "Brom"  # ...with the sample's own prompt
    assert miss["session"] != hit["session"] and miss["seed"] == hit["seed"]
    assert all(r["options"]["max_tokens"] >= 8 for r in d.requests)  # long enough to be accepted


def test_probe_fails_when_every_miss_was_retried():
    with FakeDaemon([line(60, retried=True)] * 3) as d, pytest.raises(RuntimeError):
        persona_cache_effect(d.address, SHEETS, reps=1)
    assert len(d.requests) == 3


def registered(req: dict) -> list[dict]:
    from npc_brain import protocol as P

    return [P.registered_msg(req["id"], "ref1")]


def answer(req: dict) -> list[dict]:
    return [{"v": 1, "type": "line", "id": req["id"], "text": "Aye.", "emotion": "neutral", "seed": req["seed"],
             "tokens": 2, "timings": {"prefill_ms": 5.0, "queue_ms": 0.0}}]


def test_conversations_pause_between_turns_when_asked():
    """--think-ms: a conversation waits that long after each line (not before its first)."""
    import time

    from npc_brain.loadtest import run_level

    with FakeDaemon([registered, answer, answer, answer, answer]) as d:
        t0 = time.perf_counter()
        got = run_level(d.address, SHEETS, conversations=1, turns=3, max_tokens=8, think_s=0.3)
        took = time.perf_counter() - t0
    assert got["lines"] == 3 and not got["errors"]
    assert 0.6 <= took < 2.0  # two pauses: after the first and the second line
    said = [r["utterance"] for r in d.requests if r["type"] == "say"]
    assert len(said) == 4  # the warm-up line, then the three measured turns


def test_a_small_level_holds_fresh_conversations_in_a_row():
    """rounds: new sessions and new seeds each time, so no conversation finds another's history cached."""
    from npc_brain.loadtest import run_level

    with FakeDaemon([registered] + [answer] * 7) as d:
        got = run_level(d.address, SHEETS, conversations=1, turns=3, max_tokens=8, rounds=2)
    assert got["lines"] == 6 and not got["errors"]
    measured = [r for r in d.requests if r["type"] == "say"][1:]
    assert len({r["session"] for r in measured}) == 2 and len({r["seed"] for r in measured}) == 6
