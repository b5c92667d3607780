"""`npc-brain relay`: the wire protocol over plain TCP, for engines without ZeroMQ.

GDScript (Godot 3 and 4) has TCP built in but no ZeroMQ. The relay listens on a loopback TCP port;
each game connection gets its own DEALER socket to the daemon, so replies find their way back to
it. Frames are the protocol's own msgpack maps, each preceded by its length as 4 bytes big-endian:

    [u32 length][msgpack map][u32 length][msgpack map]...

Nothing is decoded here: the daemon validates every frame and answers bad ones itself. The relay
only refuses a length over the protocol's frame limit (it answers TOO_LARGE with a null id, as the
daemon would, and closes that connection: after a bad length the stream has no frame boundary left).

    npc-brain serve &
    npc-brain relay --listen 127.0.0.1:5556 --connect tcp://127.0.0.1:5555

Plain TCP has no encryption, so the relay listens on loopback only; across machines, run the relay
next to the game and let it reach the daemon over ZeroMQ with CurveZMQ (`npc-brain keys`;
`--curve-client-secret` / `--curve-server-public`, required for an address off this host).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import struct
import sys
import threading

import zmq

from npc_brain import protocol as P
from npc_brain.client import dealer_socket
from npc_brain.keys import add_client_curve_args, client_curve_from_args, is_loopback

log = logging.getLogger("npc_brain.relay")
HEADER = struct.Struct(">I")
POLL_MS = 200


class FrameReader:
    """Cuts a TCP byte stream into frames; `feed` returns the complete ones, raises ValueError on a
    length over the limit."""

    def __init__(self, limit: int = P.MAX_FRAME_BYTES):
        self.buf = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        frames = []
        while len(self.buf) >= HEADER.size:
            (n,) = HEADER.unpack_from(self.buf)
            if n > self.limit:
                raise ValueError(f"frame of {n} bytes is over the {self.limit}-byte limit")
            if len(self.buf) < HEADER.size + n:
                break
            frames.append(bytes(self.buf[HEADER.size:HEADER.size + n]))
            del self.buf[:HEADER.size + n]
        return frames


def pack(frame: bytes) -> bytes:
    return HEADER.pack(len(frame)) + frame


Curve = tuple[bytes, bytes, bytes]


def serve_connection(conn: socket.socket, ctx: zmq.Context, daemon: str, stop: threading.Event,
                     curve: Curve | None = None) -> None:
    """One game connection <-> one DEALER (a client's, as npc_brain.client makes it), in one thread (a
    ZeroMQ socket stays in its thread)."""
    dealer = dealer_socket(ctx, daemon, curve)
    poller = zmq.Poller()
    poller.register(dealer, zmq.POLLIN)
    poller.register(conn, zmq.POLLIN)
    reader = FrameReader()
    try:
        while not stop.is_set():
            ready = dict(poller.poll(POLL_MS))
            if ready.get(conn.fileno()):  # pyzmq reports a plain socket by its file descriptor
                data = conn.recv(65536)
                if not data:
                    return  # the game closed the connection
                try:
                    frames = reader.feed(data)
                except ValueError as e:
                    conn.sendall(pack(P.encode(P.error_msg(P.ErrorCode.TOO_LARGE, str(e)))))
                    return
                for frame in frames:
                    dealer.send(frame)
            if ready.get(dealer):
                while dealer.poll(0):
                    conn.sendall(pack(dealer.recv()))
    except OSError as e:  # the game vanished mid-write
        log.info("connection closed: %s", e)
    finally:
        dealer.close()
        conn.close()


def run(listen: str, daemon: str, max_connections: int = 64, stop: threading.Event | None = None,
        ready: threading.Event | None = None, curve: Curve | None = None) -> int:
    host, _, port = listen.rpartition(":")
    if not is_loopback(f"tcp://{host}:{port}"):
        print(f"error: the relay speaks plain TCP and listens on loopback only, not {host!r}; run it next to "
              "the game and reach a remote daemon over ZeroMQ (CurveZMQ)", file=sys.stderr)
        return 2
    stop = stop or threading.Event()
    ctx = zmq.Context()
    host = host.strip("[]")  # "[::1]:5556" -> ::1
    server = socket.create_server((host, int(port)), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    server.settimeout(POLL_MS / 1000)
    threads: list[threading.Thread] = []
    log.info("relay on %s -> %s", listen, daemon)
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            threads = [t for t in threads if t.is_alive()]
            if len(threads) >= max_connections:
                conn.sendall(pack(P.encode(P.error_msg(P.ErrorCode.OVERLOADED, "relay: too many connections"))))
                conn.close()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=serve_connection, args=(conn, ctx, daemon, stop, curve), daemon=True)
            t.start()
            threads.append(t)
    finally:
        stop.set()
        server.close()
        for t in threads:
            t.join(timeout=2)
        ctx.term()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="npc-brain relay", description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:5556", help="loopback host:port for the game's TCP connections")
    p.add_argument("--connect", default="tcp://127.0.0.1:5555", help="the daemon (or broker) address")
    p.add_argument("--max-connections", type=int, default=64)
    p.add_argument("--log-level", default="INFO")
    add_client_curve_args(p)
    a = p.parse_args(argv)
    curve = client_curve_from_args(a.connect, a.curve_client_secret, a.curve_server_public)
    logging.basicConfig(level=a.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return run(a.listen, a.connect, a.max_connections, stop, curve=curve)


if __name__ == "__main__":
    sys.exit(main())
