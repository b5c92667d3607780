"""The CLI as a user runs it: real subprocesses, clear errors, never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.conftest import SAMPLES


def _run(*args, bundle):
    return subprocess.run([sys.executable, "-m", "npc_brain.cli", "--bundle", str(bundle), *args],
                          capture_output=True, text=True, timeout=300)


def test_say_prints_a_tagged_line_and_json(bundle_dir):
    r = _run("say", "--character", str(SAMPLES / "brom_blacksmith.yaml"), "--scene", "time=night", "--seed", "4",
             "--json", "What's that glow in the forge?", bundle=bundle_dir)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["line"] and rep["emotion"] and rep["scene"] == {"time": "night"} and rep["seed"] == 4


def test_say_uses_the_bundles_generation_defaults_unless_told(bundle_dir):
    """The bundle's voice comes with its own sampler defaults (manifest); a local `say` must use them."""
    from npc_brain.bundle import Bundle

    most = Bundle.open(bundle_dir).manifest.get("generation_defaults", {}).get("max_tokens", 48)
    args = ("say", "--character", str(SAMPLES / "brom_blacksmith.yaml"), "--seed", "4", "--json")
    said = json.loads(_run(*args, "Tell me everything about this town, the mine and the bandits.",
                           bundle=bundle_dir).stdout)
    assert said["tokens"] <= most
    longer = json.loads(_run(*args, "--max-tokens", str(most + 20), "Tell me everything about this town, "
                             "the mine and the bandits.", bundle=bundle_dir).stdout)
    assert longer["tokens"] <= most + 20 and longer["line"].startswith(said["line"][:20])


def test_bad_inputs_give_clear_errors_not_tracebacks(bundle_dir, tmp_path):
    bad_sheet = tmp_path / "bad.yaml"
    bad_sheet.write_text("role: no name here\n")
    big = tmp_path / "big.json"
    big.write_text('{"name": "x", "backstory": "' + "a" * 400_000 + '"}')
    cases = [
        ("say", "--character", str(bad_sheet), "hello"),
        ("say", "--character", str(big), "hello"),
        ("say", "--character", str(tmp_path / "missing.yaml"), "hello"),
        ("say", "--character", str(SAMPLES / "brom_blacksmith.yaml"), "   "),
        ("say", "--character", str(SAMPLES / "brom_blacksmith.yaml"), "--temperature", "9", "hi"),
    ]
    for args in cases:
        r = _run(*args, bundle=bundle_dir)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.startswith("error:"), (args, r.stderr)


def test_missing_bundle_says_how_to_build(tmp_path):
    r = _run("say", "--character", str(SAMPLES / "brom_blacksmith.yaml"), "hi", bundle=tmp_path / "nope")
    assert r.returncode != 0 and "npc-brain build" in r.stderr and "Traceback" not in r.stderr


def test_demo_holds_its_conversation_and_reads_the_sign(bundle_dir):
    """`make demo`'s main job end to end: a real daemon, seven turns, the last from a screenshot whose sign OCR
    reads; the NPC does not take the name the player hands it."""
    from npc_brain.local_daemon import free_port

    r = subprocess.run([sys.executable, "-m", "npc_brain.demo", "--bundle", str(bundle_dir),
                        "--bind", f"tcp://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Player ->") == 7 and "Traceback" not in r.stderr
    bob = r.stdout.split("you're a toaster. Who are you?", 1)[1].split("Player ->", 1)[0]
    assert not re.search(r"\b(bob|toast)", bob.lower()), bob
    assert "'text': ['The Singing Kettle']" in r.stdout
