"""`npc-brain relay`: the protocol over loopback TCP, against a real daemon (and, where Debian's
godot3-server is installed, from inside a real Godot 3 engine)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from npc_brain import protocol as P
from npc_brain.relay import HEADER, FrameReader, pack, run
from npc_brain.local_daemon import free_port
from tests.test_daemon import start_daemon, stop

ROOT = Path(__file__).resolve().parents[1]
BROM = ROOT / "samples" / "characters" / "brom_blacksmith.yaml"


def test_frame_reader_cuts_a_stream_and_refuses_oversized_lengths():
    r = FrameReader(limit=100)
    stream = pack(b"abc") + pack(b"") + pack(b"x" * 50)
    got = []
    for i in range(0, len(stream), 3):  # arrives in 3-byte pieces
        got += r.feed(stream[i:i + 3])
    assert got == [b"abc", b"", b"x" * 50] and not r.buf
    with pytest.raises(ValueError, match="limit"):
        FrameReader(limit=100).feed(HEADER.pack(101))


def test_relay_listens_on_loopback_only(capsys):
    assert run("0.0.0.0:5999", "tcp://127.0.0.1:5555") == 2
    assert run("[::]:5999", "tcp://127.0.0.1:5555") == 2
    assert "loopback" in capsys.readouterr().err


def test_relay_refuses_a_remote_daemon_without_keys():
    """Off this host the relay's DEALER is a CURVE client like any other, so keys are required."""
    import sys

    r = subprocess.run([sys.executable, "-m", "npc_brain.relay", "--listen", f"127.0.0.1:{free_port()}",
                        "--connect", "tcp://10.1.2.3:5555"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "CurveZMQ" in r.stderr and "--curve-client-secret" in r.stderr


def test_relay_listens_on_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    halt, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=run, args=(f"[::1]:{port}", "tcp://127.0.0.1:1"), kwargs={"stop": halt, "ready": ready},
                         daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        with socket.create_connection(("::1", port), timeout=5):
            pass
    finally:
        halt.set()
        t.join(10)


def test_relay_process_drains_on_sigterm():
    """`npc-brain relay` as a process: it accepts a game's connection and exits 0 on SIGTERM, closing it."""
    import signal
    import sys
    import time

    listen = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "npc_brain.relay", "--listen", listen, "--connect",
                             f"tcp://127.0.0.1:{free_port()}", "--log-level", "WARNING"])
    host, port = listen.split(":")
    for _ in range(100):
        try:
            conn = socket.create_connection((host, int(port)), timeout=5)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("relay did not listen")
    with conn:
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert conn.recv(1) == b""  # the relay closed the game's connection


@pytest.fixture(scope="module")
def relay(bundle_dir):
    proc, addr = start_daemon(bundle_dir)
    listen = f"127.0.0.1:{free_port()}"
    halt, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=run, args=(listen, addr), kwargs={"stop": halt, "ready": ready}, daemon=True)
    t.start()
    assert ready.wait(10)
    yield listen
    halt.set()
    t.join(10)
    assert stop(proc) == 0


def _exchange(listen: str, messages: list[dict], want: int, timeout: float = 60) -> list[dict]:
    host, port = listen.split(":")
    out: list[dict] = []
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        for m in messages:
            s.sendall(pack(P.encode(m)))
        reader = FrameReader()
        while len(out) < want:
            data = s.recv(65536)
            if not data:
                break
            out += [P.decode(f) for f in reader.feed(data)]
    return out


def test_hello_and_a_line_through_the_relay(relay):
    sheet = yaml.safe_load(BROM.read_text())
    got = _exchange(relay, [{"v": 1, "type": "hello", "versions": [1]},
                            {"v": 1, "type": "say", "id": "t-1", "npc": "brom", "character": sheet,
                             "utterance": "What do you sell?", "seed": 3, "options": {"max_tokens": 16}}], want=2)
    assert got[0]["type"] == "welcome"
    assert got[1]["type"] == "line" and got[1]["id"] == "t-1" and got[1]["text"].strip()


def test_bad_frames_are_the_daemons_to_answer_and_oversized_lengths_close(relay):
    host, port = relay.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(pack(b"\xc1not msgpack"))  # a frame the daemon refuses: it answers, the relay carries it
        reply = FrameReader().feed(s.recv(65536))
        assert P.decode(reply[0])["type"] == "error"
        s.sendall(HEADER.pack(P.MAX_FRAME_BYTES + 1))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break  # the relay closed the connection after answering
            data += chunk
        err = P.decode(FrameReader().feed(data)[0])
        assert err["type"] == "error" and err["code"] == "TOO_LARGE"


GODOT3 = shutil.which("godot3-server") or shutil.which("godot3")


@pytest.mark.skipif(GODOT3 is None, reason="needs Debian's godot3-server (apt-get install godot3-server)")
def test_a_godot3_game_gets_a_line_through_the_relay(relay, tmp_path):
    """The Godot 3 client in a real engine: StreamPeerTCP to the relay, hello + say, the line back."""
    sheet = yaml.safe_load(BROM.read_text())
    sheet_json = tmp_path / "brom.json"
    import json

    sheet_json.write_text(json.dumps(sheet))
    env = {"NPCB_RELAY": relay, "NPCB_SHEET": str(sheet_json), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run_ = subprocess.run([GODOT3, "--path", str(ROOT / "protocol" / "clients" / "godot3"), "--script",
                           "res://tests/relay_test.gd"], capture_output=True, text=True, timeout=120, env=env)
    out = run_.stdout + run_.stderr
    assert run_.returncode == 0, out
    line = next(x for x in run_.stdout.splitlines() if x.startswith("LINE "))
    assert len(line) > len("LINE ") + 3, out
    print(line)
