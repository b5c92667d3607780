"""Scale-out: a broker with two real workers; one is killed mid-request."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from npc_brain.client import Client
from tests.conftest import SAMPLES
from tests.test_daemon import free_port


@pytest.fixture()
def cluster(bundle_dir):
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([sys.executable, "-m", "npc_brain.broker", "--frontend", front, "--backend", back,
                               "--log-level", "WARNING"])]
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "npc_brain.daemon", "--bundle", str(bundle_dir), "--worker",
                                       "--connect", back, "--log-level", "WARNING", "--threads", "1"]))
    yield front, procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


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
    time.sleep(3)  # both workers heartbeating
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
