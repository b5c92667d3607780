"""The Python clients' retry policy against a scripted fake daemon (no bundle needed)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import zmq

from npc_brain import protocol as P
from npc_brain.client import AsyncClient, Client, ClientError, say_msg


def line(rid: str) -> dict:
    return {"v": 1, "type": "line", "id": rid, "text": "Aye.", "emotion": "neutral"}


def error(rid: str, code: str, **extra) -> dict:
    return {"v": 1, "type": "error", "id": rid, "code": code, "message": code.lower(), **extra}


class FakeDaemon:
    """A ROUTER that answers the n-th frame it receives with script[n] (a list of replies, maybe empty)."""

    def __init__(self, script: list[list[dict]]):
        self.script = list(script)
        self.frames: list[bytes] = []
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.script:
            if not self.sock.poll(5000):
                return
            ident, frame = self.sock.recv_multipart()
            self.frames.append(frame)
            for rep in self.script.pop(0):
                self.sock.send_multipart([ident, P.encode(rep)])

    def __enter__(self) -> "FakeDaemon":
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(10)
        self.sock.close()


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
