"""The Python clients' retry policy against a scripted fake daemon (no bundle needed)."""

from __future__ import annotations

import asyncio

import pytest

from npc_brain.client import AsyncClient, Client, ClientError, say_msg
from tests.fake_daemon import FakeDaemon


def line(rid: str) -> dict:
    return {"v": 1, "type": "line", "id": rid, "text": "Aye.", "emotion": "neutral"}


def error(rid: str, code: str, **extra) -> dict:
    return {"v": 1, "type": "error", "id": rid, "code": code, "message": code.lower(), **extra}


def sync_request(addr: str, msg: dict, partials: list, **kw) -> dict:
    with Client(addr, **kw) as c:
        return c.request(msg, partials.append)


def async_request(addr: str, msg: dict, partials: list, **kw) -> dict:
    async def go() -> dict:
        async with AsyncClient(addr, **kw) as c:
            return await c.request(msg, partials.append)

    return asyncio.run(go())


both = pytest.mark.parametrize("request_", [sync_request, async_request], ids=["sync", "async"])
MSG = say_msg("brom", "Hello.", request_id="r-9", character={"name": "Brom"})


@both
def test_busy_daemon_is_retried_with_the_same_frame(request_):
    script = [[error("r-9", "OVERLOADED", retry_after_ms=20)], [error("r-9", "NOT_READY")],
              [{"v": 1, "type": "partial", "id": "r-9", "seq": 0, "text": "Aye."}, line("r-9")]]
    partials: list = []
    with FakeDaemon(script) as d:
        rep = request_(d.address, MSG, partials, timeout_s=5)
    assert rep["type"] == "line" and rep["id"] == "r-9"
    assert [p["text"] for p in partials] == ["Aye."]
    assert len(d.frames) == 3 and len(set(d.frames)) == 1  # same id every time: idempotent on the daemon


@both
def test_silence_is_retried_then_gives_timeout(request_):
    with FakeDaemon([[], [line("r-9")]]) as d:
        assert request_(d.address, MSG, [], timeout_s=0.3, retries=1)["type"] == "line"
    assert len(d.frames) == 2 and d.frames[0] == d.frames[1]
    with FakeDaemon([[], []]) as d, pytest.raises(ClientError) as e:
        request_(d.address, MSG, [], timeout_s=0.3, retries=1)
    assert e.value.code == "TIMEOUT" and len(d.frames) == 2


@both
def test_final_errors_are_not_retried(request_):
    with FakeDaemon([[error("r-9", "BAD_REQUEST")]]) as d, pytest.raises(ClientError) as e:
        request_(d.address, MSG, [], timeout_s=5)
    assert e.value.code == "BAD_REQUEST" and len(d.frames) == 1
    with FakeDaemon([[error("r-9", "OVERLOADED", retry_after_ms=1)]]) as d, pytest.raises(ClientError) as e:
        request_(d.address, MSG, [], timeout_s=5, retries=0)  # out of attempts: the busy error is final
    assert e.value.code == "OVERLOADED" and e.value.reply["retry_after_ms"] == 1 and len(d.frames) == 1
