"""A model bundle on disk: one folder, immutable, identified by its manifest hash.

Layout (the contract in DESIGN.md)::

    manifest.json      format, component hashes, prompt template, vocab, defaults, provenance
    tokenizer.json
    lm/*.onnx          the language model (prefill and decode graphs)
    vision/            scene.onnx + vocab.json (optional)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from npc_brain.prompt import TEMPLATE_VERSION

#: 2: the language model writes its KV cache in place (GroupQueryAttention; see export/llama.py).
FORMAT_VERSION = 2


class BundleError(RuntimeError):
    """The bundle is missing, incomplete or of another format; says how to rebuild it."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    bundle_id: str

    @classmethod
    def open(cls, path: Path | str) -> "Bundle":
        path = Path(path)
        mf = path / "manifest.json"
        if not mf.exists():
            raise BundleError(f"no model bundle at {path}: build it with `npc-brain build` (or `make demo`)")
        raw = mf.read_bytes()
        try:
            manifest = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BundleError(f"{mf} is not valid JSON ({e}); rebuild with `npc-brain build --force`") from e
        if manifest.get("format_version") != FORMAT_VERSION:
            raise BundleError(f"{path} has bundle format {manifest.get('format_version')}, this npc-brain reads "
                              f"{FORMAT_VERSION}; rebuild with `npc-brain build --force`")
        if manifest.get("prompt_template") != TEMPLATE_VERSION:
            # The voice was trained on prompts of one shape; serving it another one quietly degrades it.
            raise BundleError(f"{path} was built for prompt template {manifest.get('prompt_template')!r}, this "
                              f"npc-brain writes {TEMPLATE_VERSION!r}; rebuild with `npc-brain build --force`")
        for rel in manifest.get("components", {}):
            if not (path / rel).exists():
                raise BundleError(f"bundle {path} is incomplete: {rel} is missing; rebuild with `npc-brain build --force`")
        return cls(path, manifest, "b-" + hashlib.sha256(raw).hexdigest()[:16])

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"

    def lm_path(self, phase: str) -> Path:
        return self.path / self.manifest["lm"][phase]

    @property
    def vision_dir(self) -> Path | None:
        v = self.path / "vision"
        return v if (v / "scene.onnx").exists() else None

    def verify(self) -> None:
        """Re-hash every component (slow: reads the whole bundle). For replays and CI."""
        for rel, digest in self.manifest.get("components", {}).items():
            h = hashlib.sha256()
            with open(self.path / rel, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != digest:
                raise BundleError(f"{rel} does not match its manifest hash: the bundle was modified; rebuild it")
