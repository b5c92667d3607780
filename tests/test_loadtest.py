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
