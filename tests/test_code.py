"""The code itself: no unused imports, undefined names or dead assignments (pyflakes' rules, run
by ruff), so a reader never wonders what an import that nothing uses is for."""

from __future__ import annotations

import shutil
import subprocess

from tests.conftest import ROOT


def test_no_unused_or_undefined_names():
    ruff = shutil.which("ruff") or str(ROOT / ".venv" / "bin" / "ruff")
    r = subprocess.run([ruff, "check", "--select", "F", "--no-cache", "npc_brain", "export", "scripts", "tests"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
