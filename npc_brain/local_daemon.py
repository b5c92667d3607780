"""A daemon in a child process on loopback, started the same way by the demo, the load test, the
measurement scripts and the tests: a real `npc-brain serve` over real sockets, never an in-process
stand-in, so what they measure is what a game gets."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing on this machine listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(bundle: Path, *extra: str, bind: str | None = None) -> tuple[subprocess.Popen, str]:
    """Start `npc-brain serve` on `bind` (default: a free loopback port) with `extra` flags; returns the
    process and the address to connect to. The caller waits for readiness (`Client.wait_ready`) with
    the patience it needs, and stops the process."""
    addr = bind or f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "npc_brain.daemon", "--bundle", str(bundle), "--bind", addr,
                             "--log-level", "WARNING", *extra])
    return proc, addr
