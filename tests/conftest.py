"""Shared fixtures. The real bundle is built once per run (cached by content hash in
build/bundle) and shared by every test that needs it; nothing here downloads from a hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "characters"


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    path = Path(os.environ.get("NPC_BRAIN_BUNDLE", ROOT / "build" / "bundle"))
    if not (path / "manifest.json").exists():
        try:
            from export.bundle import build_bundle
        except ImportError as e:  # torch missing: a serving-only install
            pytest.skip(f"no bundle at {path} and the train extra is not installed ({e})")
        build_bundle(path)
    return path


@pytest.fixture(scope="session")
def engine(bundle_dir):
    from npc_brain.engine import Engine

    return Engine.load(bundle_dir, threads=2)


@pytest.fixture(scope="session")
def brom():
    from npc_brain.character import load_character

    return load_character(SAMPLES / "brom_blacksmith.yaml")


@pytest.fixture(scope="session")
def mara():
    from npc_brain.character import load_character

    return load_character(SAMPLES / "mara_tavernkeeper.yaml")
