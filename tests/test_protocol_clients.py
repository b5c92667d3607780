"""Client libraries against the golden vectors (protocol/clients/*).

The C# test needs Mono (`apt-get install mono-mcs mono-runtime`); the GDScript
check needs gdtoolkit (`pip install gdtoolkit`) for a Godot 4 syntax parse, or a
headless Godot 4 (`godot4`/`godot` on PATH) to run the codec test. Each test
skips with the reason when its tool is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / "protocol" / "clients"
VECTORS = ROOT / "protocol" / "vectors"


@pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")),
                    reason="C# vector test needs Mono: apt-get install mono-mcs mono-runtime")
def test_csharp_codec_matches_vectors(tmp_path):
    exe = tmp_path / "VectorTest.exe"
    cs = CLIENTS / "csharp"
    build = subprocess.run(
        ["mcs", "-nologo", "-warnaserror+", f"-out:{exe}", str(cs / "NpcBrainClient.cs"),
         str(cs / "tests" / "VectorTest.cs")],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run(["mono", str(exe), str(VECTORS)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 failed" in run.stdout


def _godot4() -> str | None:
    for name in ("godot4", "godot"):
        path = shutil.which(name)
        if path:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
            if out.stdout.strip().startswith("4."):
                return path
    return None


def test_gdscript_parses_as_godot4():
    parser = pytest.importorskip("gdtoolkit.parser", reason="GDScript parse check needs gdtoolkit")
    for path in sorted((CLIENTS / "godot").rglob("*.gd")):
        parser.parser.parse(path.read_text(encoding="utf-8"))


@pytest.mark.skipif(_godot4() is None, reason="GDScript vector test needs a headless Godot 4 on PATH")
def test_gdscript_codec_matches_vectors():
    godot = _godot4()
    run = subprocess.run(
        [godot, "--headless", "--path", str(CLIENTS / "godot"), "--script", "tests/vector_test.gd",
         "--", str(VECTORS)],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 failed" in run.stdout


def _godot3() -> str | None:
    """A headless Godot 3 (Debian's godot3-server; the godot3 editor binary also runs scripts)."""
    for name in ("godot3-server", "godot3"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_godot3() is None, reason="Godot 3 vector test needs godot3-server: apt-get install godot3-server")
def test_godot3_codec_matches_vectors(tmp_path):
    """The Godot 3 client (protocol/clients/godot3) run inside a real Godot 3 engine against the vectors."""
    env = {"NPCB_VECTORS": str(VECTORS), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([_godot3(), "--path", str(CLIENTS / "godot3"), "--script", "res://tests/vector_test.gd"],
                         capture_output=True, text=True, timeout=120, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    tail = next(line for line in reversed(run.stdout.splitlines()) if line.endswith("failed"))
    passed, failed = (int(w) for w in tail.replace(" passed,", "").replace(" failed", "").split())
    assert failed == 0 and passed > 100, tail
