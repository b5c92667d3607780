"""Scale-out: a broker with two real workers; one is killed mid-request."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml
import zmq

from npc_brain.client import Client, ClientError
from npc_brain.local_daemon import free_port
from tests.conftest import SAMPLES


@pytest.fixture()
def cluster(bundle_dir):
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    broker = subprocess.Popen([sys.executable, "-m", "npc_brain.broker", "--frontend", front, "--backend", back,
                               "--log-level", "INFO"], stderr=subprocess.PIPE, text=True)
    joined = threading.Semaphore(0)

    def watch() -> None:  # the broker logs each worker that joins (a worker joins once it is ready)
        for line in broker.stderr:
            if "joined" in line:
                joined.release()

    threading.Thread(target=watch, daemon=True).start()
    procs = [broker]
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "npc_brain.daemon", "--bundle", str(bundle_dir), "--worker",
                                       "--connect", back, "--log-level", "WARNING", "--threads", "1"]))
    # both workers must be in before the test kills one: on a busy machine loading takes a while
    assert joined.acquire(timeout=300) and joined.acquire(timeout=300), "workers did not join the broker"
    yield front, procs
    _stop(procs)


def test_requests_survive_a_killed_worker(cluster):
    front, procs = cluster
    sheet = yaml.safe_load(open(SAMPLES / "brom_blacksmith.yaml"))
    with Client(front, timeout_s=5, retries=60) as c:  # NOT_READY until both workers have joined
        end = time.monotonic() + 180
        while time.monotonic() < end:
            try:
                if c.say("brom", "Hi.", character=sheet, seed=0, options={"max_tokens": 2})["text"] is not None:
                    break
            except Exception:  # noqa: BLE001 - workers still loading
                time.sleep(1)
    results: list[dict] = []
    errors: list[Exception] = []

    def one(i: int) -> None:
        try:
            with Client(front, timeout_s=120, retries=1) as c:
                results.append(c.say("brom", f"Question {i}: what do you sell?", character=sheet, seed=i,
                                     session=f"k{i}", deadline_ms=110_000, options={"max_tokens": 40}))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    procs[1].kill()  # a worker dies with work in flight
    for t in threads:
        t.join(240)
    assert not errors, errors
    assert len(results) == 4 and all(r["type"] == "line" for r in results)


# --- CurveZMQ ------------------------------------------------------------------------------

@pytest.fixture()
def keys(tmp_path):
    """server / client / worker / intruder pairs; the broker allows client.key and worker.key."""
    from npc_brain.keys import main as keys_main

    k = tmp_path / "k"
    keys_main([str(k), "server", "client", "worker", "intruder"])
    for side, name in (("clients", "client"), ("workers", "worker")):
        (tmp_path / side).mkdir()
        (tmp_path / side / f"{name}.key").write_bytes((k / f"{name}.key").read_bytes())
    return tmp_path


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def _intruder_worker(back: str, keys, stop: threading.Event, got: list) -> None:
    """The worker's own socket code with a key the broker does not allow: heartbeats, records any frame."""
    from npc_brain.daemon import Daemon, DaemonConfig

    d = Daemon(None, DaemonConfig(worker_connect=back, curve_client_secret=keys / "k" / "intruder.key_secret",
                                  curve_server_public=keys / "k" / "server.key"), ctx=zmq.Context())
    d.ready = True
    sock = d.open_socket()
    while not stop.is_set():
        d.heartbeat()
        if sock.poll(100):
            got.append(sock.recv_multipart())
    sock.close(linger=0)
    d.ctx.term()


def test_curve_broker_serves_only_allowed_clients_and_workers(bundle_dir, keys):
    from npc_brain.keys import load_client_curve

    k = keys / "k"
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([sys.executable, "-m", "npc_brain.broker", "--frontend", front, "--backend", back,
                               "--curve-secret", str(k / "server.key_secret"), "--curve-clients",
                               str(keys / "clients"), "--curve-workers", str(keys / "workers"),
                               "--log-level", "WARNING"])]
    stop, got = threading.Event(), []
    intruder = threading.Thread(target=_intruder_worker, args=(back, keys, stop, got), daemon=True)
    intruder.start()
    good = load_client_curve(k / "client.key_secret", k / "server.key")
    sheet = yaml.safe_load(open(SAMPLES / "brom_blacksmith.yaml"))
    try:
        time.sleep(2.5)  # the intruder has sent its heartbeats by now
        with Client(front, timeout_s=5, retries=0, curve=good) as c:  # the broker answers, no worker has joined
            with pytest.raises(ClientError) as e:
                c.say("brom", "Hi.", character=sheet, seed=0, options={"max_tokens": 2})
            assert e.value.code == "NOT_READY"
        procs.append(subprocess.Popen([sys.executable, "-m", "npc_brain.daemon", "--bundle", str(bundle_dir),
                                       "--worker", "--connect", back, "--curve-client-secret",
                                       str(k / "worker.key_secret"), "--curve-server-public", str(k / "server.key"),
                                       "--log-level", "WARNING", "--threads", "1"]))
        with Client(front, timeout_s=5, retries=120, curve=good) as c:  # NOT_READY until the worker joins
            assert c.say("brom", "Hi.", character=sheet, seed=0, options={"max_tokens": 2})["type"] == "line"
        bad = load_client_curve(k / "intruder.key_secret", k / "server.key")
        for curve in (bad, None):  # a key the broker does not allow, and plain ZMTP
            with Client(front, timeout_s=2, retries=0, curve=curve) as c:
                with pytest.raises(ClientError) as e:
                    c.status()
                assert e.value.code == "TIMEOUT"
        with Client(front, timeout_s=30, retries=1, curve=good) as c:  # still serving the good client
            for i in range(3):
                assert c.say("brom", f"Question {i}?", character=sheet, seed=i, options={"max_tokens": 4})["text"]
        assert got == []  # the intruder never joined, so never got work
    finally:
        stop.set()
        intruder.join(10)
        _stop(procs)


@pytest.mark.parametrize("args, flag", [
    (["--frontend", "tcp://0.0.0.0:5901"], "--curve-clients DIR"),
    (["--backend", "tcp://10.0.0.5:5902"], "--curve-workers DIR"),
    (["--frontend", "tcp://0.0.0.0:5901", "--curve-clients", "x"], "--curve-secret SERVER.key_secret"),
])
def test_broker_refuses_non_loopback_without_curve(args, flag, capsys):
    from npc_brain import broker

    assert broker.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not loopback" in err and flag in err and "npc-brain keys" in err


def test_worker_refuses_non_loopback_connect_without_curve(tmp_path):
    r = subprocess.run([sys.executable, "-m", "npc_brain.daemon", "--bundle", str(tmp_path), "--worker",
                        "--connect", "tcp://10.0.0.5:5556"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--curve-client-secret" in r.stderr and "--curve-server-public" in r.stderr and "npc-brain keys" in r.stderr
