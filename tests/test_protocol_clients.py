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
