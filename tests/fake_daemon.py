"""A scripted stand-in for the daemon, for tests of the client side (no bundle needed)."""

from __future__ import annotations

import threading
from typing import Any, Callable, Union

import zmq

from npc_brain import protocol as P

Answer = Union[list, Callable[[dict], list]]


class FakeDaemon:
    """A ROUTER on loopback that answers the n-th frame it receives with script[n]: a list of
    replies (maybe empty: silence), or a function of the decoded request that returns one."""

    def __init__(self, script: list[Answer]):
        self.script = list(script)
        self.frames: list[bytes] = []
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return [P.decode(f) for f in self.frames]

    def _serve(self) -> None:
        while self.script:
            if not self.sock.poll(5000):
                return
            ident, frame = self.sock.recv_multipart()
            self.frames.append(frame)
            answer = self.script.pop(0)
            for rep in answer(P.decode(frame)) if callable(answer) else answer:
                self.sock.send_multipart([ident, P.encode(rep)])

    def __enter__(self) -> "FakeDaemon":
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(10)
        self.sock.close()
