"""`npc-brain broker`: scale out across machines on ZeroMQ itself.

    clients (DEALER) -> [frontend ROUTER]  broker  [backend ROUTER] <- workers (DEALER)
                                                                     `npc-brain serve --worker --connect ...`

Workers announce themselves and send a heartbeat every second. A request goes to
the least-recently-used worker with room (a conversation sticks to the worker
that holds its memory while that worker lives). When a worker misses its
heartbeats, each request it held is sent to another worker if its deadline
allows, otherwise answered with an error: a request is never silently lost.
Frames between broker and worker: ``[client_id, payload]`` both ways; a worker's
own control frames use the client id ``WORKER`` (see `CONTROL`).

Security (SPEC §1): a socket bound off loopback is a CurveZMQ server with the broker's key
(`--curve-secret`); one ZAP handler admits the client keys in `--curve-clients` on the frontend
and the worker keys in `--curve-workers` on the backend (ZAP domains "clients" and "workers").
A socket on loopback uses CURVE too when its key folder is given.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import zmq

from npc_brain import protocol as P
from npc_brain.keys import curve_refusal, curve_server, start_authenticator

CONTROL = b"\x00worker"
HEARTBEAT_S = 1.0
DEAD_AFTER_S = 3.5
log = logging.getLogger("npc_brain.broker")


@dataclass
class Worker:
    ident: bytes
    capacity: int
    seen: float
    inflight: set = field(default_factory=set)  # (client, request id)


@dataclass
class Pending:
    client: bytes
    payload: bytes
    request_id: str
    deadline: float
    worker: bytes | None = None
    tries: int = 0
    terminal_types: tuple = P.TERMINAL_TYPES


def curve_plan(frontend: str, backend: str, secret: Path | None, clients: Path | None,
               workers: Path | None) -> tuple[dict[str, Path], str | None]:
    """(ZAP domain -> allowed-keys folder for each socket that runs CURVE, why not to start or None)."""
    for what, addr, flag, folder in (("binding the frontend", frontend, "--curve-clients DIR", clients),
                                     ("binding the backend", backend, "--curve-workers DIR", workers)):
        why = curve_refusal(what, addr, {"--curve-secret SERVER.key_secret": secret, flag: folder},
                            on=folder is not None)
        if why:
            return {}, why
    if secret and not (clients or workers):
        return {}, "--curve-secret needs --curve-clients DIR and/or --curve-workers DIR (the keys each side allows)"
    return {d: f for d, f in (("clients", clients), ("workers", workers)) if f is not None}, None


class Broker:
    def __init__(self, frontend: str, backend: str, ctx: zmq.Context | None = None, max_tries: int = 3,
                 curve_secret: Path | None = None, curve_clients: Path | None = None,
                 curve_workers: Path | None = None):
        allowed, why = curve_plan(frontend, backend, curve_secret, curve_clients, curve_workers)
        if why:
            raise SystemExit(f"error: {why}")
        self.ctx = ctx or zmq.Context.instance()
        self.auth = start_authenticator(self.ctx, allowed) if allowed else None  # one ZAP handler, two domains
        self.front = self.ctx.socket(zmq.ROUTER)
        self.back = self.ctx.socket(zmq.ROUTER)
        for s, domain in ((self.front, "clients"), (self.back, "workers")):
            s.setsockopt(zmq.LINGER, 1000)
            s.setsockopt(zmq.ROUTER_MANDATORY, 1)
            s.setsockopt(zmq.MAXMSGSIZE, P.MAX_FRAME_BYTES + 1024)
            if domain in allowed:
                curve_server(s, curve_secret, domain)
        self.front.bind(frontend)
        self.back.bind(backend)
        self.workers: OrderedDict[bytes, Worker] = OrderedDict()  # order = least recently used first
        self.pending: dict[tuple[bytes, str], Pending] = {}
        self.sticky: dict[tuple[str, str], bytes] = {}
        self.max_tries = max_tries
        self.running = True

    # --- routing ---------------------------------------------------------------------
    def pick(self, affinity: tuple[str, str] | None) -> Worker | None:
        w = self.workers.get(self.sticky.get(affinity)) if affinity else None
        if w is None or len(w.inflight) >= w.capacity:
            w = next((w for w in self.workers.values() if len(w.inflight) < w.capacity), None)
        if w is not None:
            self.workers.move_to_end(w.ident)
            if affinity:
                self.sticky[affinity] = w.ident
        return w

    def dispatch(self, p: Pending, affinity: tuple[str, str] | None = None) -> None:
        w = self.pick(affinity)
        if w is None:
            self.reply(p.client, P.error_msg(P.ErrorCode.OVERLOADED if self.workers else P.ErrorCode.NOT_READY,
                                             "no worker has room" if self.workers else "no worker is connected",
                                             p.request_id, retry_after_ms=500))
            self.pending.pop((p.client, p.request_id), None)
            return
        p.worker, p.tries = w.ident, p.tries + 1
        w.inflight.add((p.client, p.request_id))
        self.back.send_multipart([w.ident, p.client, p.payload])

    def reply(self, client: bytes, msg: dict) -> None:
        try:
            self.front.send_multipart([client, P.encode(msg)], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    # --- frontend ----------------------------------------------------------------------
    def on_client(self, frames: list[bytes]) -> None:
        try:
            client, payload = P.split_envelope(frames)
            req = P.parse_request(payload)  # reject bad frames here; workers only see valid ones
        except P.ProtocolError as e:
            self.reply(frames[0] if frames else b"", P.error_from(e))
            return
        rid = getattr(req, "id", None)
        if rid is None:  # an anonymous hello: any worker may answer, nothing to track
            w = self.pick(None)
            if w is None:
                self.reply(client, P.error_msg(P.ErrorCode.NOT_READY, "no worker is connected", None))
            else:
                self.back.send_multipart([w.ident, client, payload])
            return
        key = (client, rid)
        if isinstance(req, P.Cancel):
            target = self.pending.get((client, req.target))
            if target and target.worker in self.workers:
                self.back.send_multipart([target.worker, client, payload])
            else:
                self.reply(client, P.ok_msg(req.id))
            return
        if key in self.pending:
            return  # a retry of something in flight: its reply answers both
        deadline_ms = getattr(req, "deadline_ms", None)
        p = Pending(client, payload, rid, time.monotonic() + (deadline_ms / 1000 if deadline_ms else 120.0))
        self.pending[key] = p
        npc, session = getattr(req, "npc", None), getattr(req, "session", None)
        self.dispatch(p, (npc, session) if npc else None)

    # --- backend -----------------------------------------------------------------------
    def on_worker(self, frames: list[bytes]) -> None:
        if len(frames) != 3:
            return
        ident, client, payload = frames
        now = time.monotonic()
        if client == CONTROL:
            try:
                info = msgpack.unpackb(payload, raw=False, max_str_len=256, max_map_len=16)
            except Exception:  # noqa: BLE001 - a confused worker is ignored, not fatal
                return
            w = self.workers.get(ident)
            if w is None:
                cap = info.get("capacity", 8) if isinstance(info, dict) else 8
                self.workers[ident] = Worker(ident, int(cap) if isinstance(cap, int) else 8, now)
                log.info("worker %s joined", ident.hex())
            else:
                w.seen = now
            return
        w = self.workers.get(ident)
        if w is not None:
            w.seen = now
        try:
            msg = P.decode(payload)
        except P.ProtocolError:
            return
        key = (client, msg.get("id"))
        if msg.get("type") in P.TERMINAL_TYPES and key in self.pending:
            p = self.pending.pop(key)
            if w is not None:
                w.inflight.discard(key)
            if p.worker != ident:
                return  # a late answer from a worker we gave up on
        try:
            self.front.send_multipart([client, payload], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def reap(self) -> None:
        now = time.monotonic()
        for w in [w for w in self.workers.values() if now - w.seen > DEAD_AFTER_S]:
            log.warning("worker %s missed its heartbeats: re-dispatching %d requests", w.ident.hex(), len(w.inflight))
            del self.workers[w.ident]
            self.sticky = {k: v for k, v in self.sticky.items() if v != w.ident}
            for key in list(w.inflight):
                p = self.pending.get(key)
                if p is None:
                    continue
                if p.tries >= self.max_tries or now >= p.deadline:
                    self.pending.pop(key, None)
                    self.reply(p.client, P.error_msg(P.ErrorCode.INTERNAL, "the worker serving this request died",
                                                     p.request_id, retry_after_ms=500))
                else:
                    self.dispatch(p)
        for key, p in list(self.pending.items()):  # nothing outlives its deadline unanswered
            if now > p.deadline + 5.0:
                self.pending.pop(key, None)
                self.reply(p.client, P.error_msg(P.ErrorCode.TIMEOUT, "no worker answered before the deadline",
                                                 p.request_id))

    def serve(self) -> int:
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        while self.running:
            events = dict(poller.poll(int(HEARTBEAT_S * 1000 / 2)))
            if self.back in events:
                _drain(self.back, self.on_worker)
            if self.front in events:
                _drain(self.front, self.on_client)
            self.reap()
        self.front.close()
        self.back.close()
        if self.auth:
            self.auth.stop()
        return 0


def _drain(sock: zmq.Socket, handle) -> None:
    """Handle every message already waiting on `sock` (workers first, so capacity frees up)."""
    while True:
        try:
            handle(sock.recv_multipart(flags=zmq.NOBLOCK))
        except zmq.Again:
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="npc-brain broker")
    p.add_argument("--frontend", default="tcp://127.0.0.1:5555", help="where clients connect")
    p.add_argument("--backend", default="tcp://127.0.0.1:5556", help="where workers connect")
    p.add_argument("--curve-secret", type=Path, help="the broker's secret key file (npc-brain keys)")
    p.add_argument("--curve-clients", type=Path, help="folder of allowed client public keys (frontend)")
    p.add_argument("--curve-workers", type=Path, help="folder of allowed worker public keys (backend)")
    p.add_argument("--log-level", default="INFO")
    a, _ = p.parse_known_args(argv)
    logging.basicConfig(level=a.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _, why = curve_plan(a.frontend, a.backend, a.curve_secret, a.curve_clients, a.curve_workers)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    b = Broker(a.frontend, a.backend, curve_secret=a.curve_secret, curve_clients=a.curve_clients,
               curve_workers=a.curve_workers)

    def stop(*_):
        b.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return b.serve()


if __name__ == "__main__":
    sys.exit(main())
