"""Python client for the daemon (sync and asyncio), DEALER socket, bounded retries.

    with Client("tcp://127.0.0.1:5555") as c:
        reply = c.say("brom", "Can you fix my sword?", character=sheet_dict)
        print(reply["emotion"], reply["text"])

A retry re-sends the *same* request id, so the daemon answers from its reply
cache instead of generating twice. The socket keeps a fixed routing id for the
same reason: a retry after a reconnect is still recognised.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any, Callable, Iterator

import zmq
import zmq.asyncio

from npc_brain import protocol as P


class ClientError(RuntimeError):
    """The daemon answered with an error, or did not answer in time."""

    def __init__(self, code: str, message: str, reply: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reply = reply


_ids = itertools.count(1)


def _new_id() -> str:
    return f"r{os.getpid()}-{next(_ids)}-{int(time.time() * 1000) % 10**8}"


def say_msg(npc: str, utterance: str, *, request_id: str, character: dict | None = None,
            character_ref: str | None = None, session: str = "default", scene: dict | None = None,
            screenshot: bytes | dict | None = None, history: list | None = None, seed: int | None = None,
            options: dict | None = None, deadline_ms: int | None = None, stream: bool = False,
            read_text: bool = False) -> dict[str, Any]:
    msg: dict[str, Any] = {"v": P.PROTOCOL_VERSION, "type": "say", "id": request_id, "npc": npc,
                           "session": session, "utterance": utterance}
    if character is not None:
        msg["character"] = character
    if character_ref is not None:
        msg["character_ref"] = character_ref
    if scene:
        msg["scene"] = scene
    if screenshot is not None:
        msg["screenshot"] = screenshot if isinstance(screenshot, dict) else {
            "format": "png" if screenshot[:4] == b"\x89PNG" else "jpeg", "data": screenshot}
        if read_text:  # OCR the screenshot's signs and banners too (~300 ms; the daemon needs its ocr extra)
            msg["screenshot"] = dict(msg["screenshot"], read_text=True)
    if history:
        msg["history"] = history
    if seed is not None:
        msg["seed"] = seed
    if options:
        msg["options"] = options
    if deadline_ms is not None:
        msg["deadline_ms"] = deadline_ms
    if stream:
        msg["stream"] = True
    return msg


NO_PEER = ("is the daemon running at that address, and does it need CurveZMQ keys "
           "(--curve-client-secret / --curve-server-public, or Client(curve=...))?")


def dealer_socket(ctx: zmq.Context, address: str, curve: tuple[bytes, bytes, bytes] | None) -> zmq.Socket:
    """A DEALER as the protocol wants a client's: heartbeats, a routing id of its own, CURVE when given."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.ROUTING_ID, b"py-" + os.urandom(8).hex().encode())
    s.setsockopt(zmq.HEARTBEAT_IVL, 5000)
    s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)
    if curve:  # (client public, client secret, server public)
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = curve
    s.connect(address)
    return s


class _Tries:
    """The retry policy Client and AsyncClient share, without the I/O.

    A request is sent at most `retries + 1` times, always as the same encoded
    frame (so the same request id: the daemon answers a resend from its reply
    cache and never generates twice). A resend follows silence for the client's
    timeout, or an OVERLOADED / NOT_READY error after the pause the daemon asks
    for (`retry_after_ms`, 250 ms when absent). Any other error is final.
    """

    RETRYABLE = ("OVERLOADED", "NOT_READY")
    DEFAULT_PAUSE_MS = 250

    def __init__(self, msg: dict[str, Any], retries: int, on_partial: Callable[[dict], None] | None = None):
        self.msg = msg
        self.rid = msg.get("id")
        self.retries = retries
        self.on_partial = on_partial
        self.frame = P.encode(msg)

    def attempts(self) -> range:
        return range(self.retries + 1)

    def partial(self, rep: dict[str, Any]) -> bool:
        """True (after handing it to on_partial) when `rep` is a partial: keep waiting."""
        if rep["type"] != "partial":
            return False
        if self.on_partial:
            self.on_partial(rep)
        return True

    def pause_s(self, rep: dict[str, Any], attempt: int) -> float | None:
        """None when `rep` is the answer; seconds to wait before resending when it is an error
        worth retrying and attempts are left; raises ClientError for any other error."""
        if rep["type"] != "error":
            return None
        if rep["code"] in self.RETRYABLE and attempt < self.retries:
            return rep.get("retry_after_ms", self.DEFAULT_PAUSE_MS) / 1000
        raise ClientError(rep["code"], rep.get("message", ""), rep)

    def gave_up(self) -> ClientError:
        return ClientError("TIMEOUT", f"no reply to {self.msg.get('type')} {self.rid} "
                                      f"after {self.retries + 1} tries: {NO_PEER}")


class Client:
    def __init__(self, address: str = "tcp://127.0.0.1:5555", timeout_s: float = 30.0, retries: int = 2,
                 curve: tuple[bytes, bytes, bytes] | None = None, ctx: zmq.Context | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.sock = dealer_socket(self.ctx, address, curve)
        self.timeout_s = timeout_s
        self.retries = retries
        self.pending: dict[str, list[dict]] = {}

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close(linger=0)

    def send(self, msg: dict[str, Any]) -> None:
        if not self._send(P.encode(msg), self.timeout_s):
            raise ClientError("TIMEOUT", f"could not send to the daemon for {self.timeout_s:.0f}s: {NO_PEER}")

    def _send(self, frame: bytes, timeout_s: float) -> bool:
        """Send unless no daemon takes the frame within `timeout_s`. A DEALER with no
        connected peer (daemon down, or a CURVE handshake it refused) would block forever."""
        if not self.sock.poll(int(timeout_s * 1000), zmq.POLLOUT):
            return False
        self.sock.send(frame)
        return True

    def recv(self, timeout_s: float) -> dict[str, Any] | None:
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        return P.decode_reply(self.sock.recv())

    def request(self, msg: dict[str, Any], on_partial: Callable[[dict], None] | None = None) -> dict[str, Any]:
        """Send `msg` and wait for its terminal reply, re-sending on silence (same id)."""
        tries = _Tries(msg, self.retries, on_partial)
        for attempt in tries.attempts():
            end = time.monotonic() + self.timeout_s
            if not self._send(tries.frame, self.timeout_s):
                continue  # nobody to send to: as good as silence
            while (left := end - time.monotonic()) > 0:
                rep = self.recv(left)
                if rep is None:
                    break
                if rep.get("id") != tries.rid and rep["type"] != "welcome":
                    continue  # a late reply to an earlier request
                if tries.partial(rep):
                    continue
                if (pause := tries.pause_s(rep, attempt)) is None:
                    return rep
                time.sleep(pause)
                break
        raise tries.gave_up()

    # --- conveniences ----------------------------------------------------------------
    def say(self, npc: str, utterance: str, on_partial: Callable[[dict], None] | None = None, **kw) -> dict[str, Any]:
        rid = kw.pop("request_id", None) or _new_id()
        kw.setdefault("stream", on_partial is not None)
        return self.request(say_msg(npc, utterance, request_id=rid, **kw), on_partial)

    def stream(self, npc: str, utterance: str, **kw) -> Iterator[dict[str, Any]]:
        """Yields partials as they arrive, then the final line."""
        got: list[dict] = []
        rep = self.say(npc, utterance, on_partial=got.append, **kw)
        yield from got
        yield rep

    def hello(self) -> dict[str, Any]:
        return self.request({"v": P.PROTOCOL_VERSION, "type": "hello", "id": _new_id(), "versions": [P.PROTOCOL_VERSION]})

    def simple(self, mtype: str, **fields: Any) -> dict[str, Any]:
        return self.request({"v": P.PROTOCOL_VERSION, "type": mtype, "id": _new_id(), **fields})

    def status(self) -> dict[str, Any]:
        return self.simple("status")

    def register(self, character: dict) -> str:
        return self.simple("register", character=character)["character_ref"]

    def reset_session(self, npc: str, session: str = "default") -> None:
        self.simple("reset_session", npc=npc, session=session)

    def export_session(self, npc: str, session: str = "default") -> bytes:
        return self.simple("export_session", npc=npc, session=session)["state"]

    def import_session(self, npc: str, state: bytes, session: str = "default") -> None:
        self.simple("import_session", npc=npc, session=session, state=state)

    def wait_ready(self, timeout_s: float = 120.0) -> dict[str, Any]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if not self._send(P.encode({"v": P.PROTOCOL_VERSION, "type": "health", "id": "ready-probe"}), 1.0):
                continue
            rep = self.recv(1.0)
            if rep and rep.get("type") == "health" and rep.get("ready"):
                return rep
        raise ClientError("NOT_READY", f"daemon not ready after {timeout_s:.0f}s")


class AsyncClient:
    """asyncio flavour: many concurrent `say`s over one socket, replies routed by id."""

    def __init__(self, address: str = "tcp://127.0.0.1:5555", timeout_s: float = 30.0, retries: int = 2,
                 curve: tuple[bytes, bytes, bytes] | None = None):
        self.ctx = zmq.asyncio.Context.instance()
        self.sock = dealer_socket(self.ctx, address, curve)
        self.timeout_s = timeout_s
        self.retries = retries
        self.waiters: dict[str, asyncio.Queue] = {}
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
        self.sock.close(linger=0)

    async def _read(self) -> None:
        while True:
            rep = P.decode_reply(await self.sock.recv())
            q = self.waiters.get(rep.get("id"))
            if q is not None:
                q.put_nowait(rep)

    async def request(self, msg: dict[str, Any], on_partial: Callable[[dict], None] | None = None) -> dict[str, Any]:
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read())
        tries = _Tries(msg, self.retries, on_partial)
        q: asyncio.Queue = asyncio.Queue()
        self.waiters[tries.rid] = q
        try:
            for attempt in tries.attempts():
                try:  # a DEALER with no connected daemon would wait forever to send
                    await asyncio.wait_for(self.sock.send(tries.frame), self.timeout_s)
                except asyncio.TimeoutError:
                    continue
                try:
                    while True:
                        rep = await asyncio.wait_for(q.get(), self.timeout_s)
                        if tries.partial(rep):
                            continue
                        if (pause := tries.pause_s(rep, attempt)) is None:
                            return rep
                        await asyncio.sleep(pause)
                        break
                except asyncio.TimeoutError:
                    continue
            raise tries.gave_up()
        finally:
            self.waiters.pop(tries.rid, None)

    async def say(self, npc: str, utterance: str, on_partial: Callable[[dict], None] | None = None, **kw) -> dict:
        rid = kw.pop("request_id", None) or _new_id()
        kw.setdefault("stream", on_partial is not None)
        return await self.request(say_msg(npc, utterance, request_id=rid, **kw), on_partial)
