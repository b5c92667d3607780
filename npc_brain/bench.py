"""`npc-brain bench`: the same prompt through every runtime, in one run, as ratios.

Each variant runs in its own subprocess so its peak RSS is its own. Timings are
greedy, exactly 30 new tokens after a ~250-token prompt (a persona, a scene and
an utterance), repeated `--reps` times; we report the median and the spread
(min-max). Variants:

* ``torch``      PyTorch eager (transformers, fp32, KV cache)
* ``onnx-fp32``  our ONNX export, fp32
* ``onnx-int8``  dynamic int8 (MatMulInteger) for both phases
* ``onnx-int4``  int4 MatMulNBits for both phases
* ``bundle``     what we ship: int8 prefill + int4 decode
* ``llama.cpp``  llama-cpp-python on the original Q4_1 GGUF (when installed)
* ``batched``    the bundle's decode graph stepping 1-16 conversations at once
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

N_NEW = 30
FP32_PATH = Path("build/bench/model_fp32.onnx")
INT_PATHS = {"onnx-int8": Path("build/bench/model_int8.onnx"), "onnx-int4": Path("build/bench/model_int4.onnx")}


def bench_prompt_ids(bundle: Path) -> list[int]:
    from npc_brain.character import load_character
    from npc_brain.prompt import PromptBuilder, load_tokenizer
    from npc_brain.scene import scene_to_text

    tok = load_tokenizer(bundle / "tokenizer.json")
    pb = PromptBuilder(tok)
    root = Path(__file__).resolve().parent.parent
    full = load_character(root / "samples/characters/brom_blacksmith.yaml").to_dict()
    # a compact sheet, so the whole prompt is ~250 tokens like a typical cold request
    c = load_character({k: full[k] for k in ("name", "role", "personality")} |
                       {"knowledge": full["knowledge"][:2], "catchphrases": full["catchphrases"]})
    scene = scene_to_text({"place": "tavern", "time": "night", "weather": "rain", "danger": "fire"})
    return pb.persona_ids(c) + pb.turn_ids("The tavern is burning and I am wounded. What do we do now, smith?", scene)


def _rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: ru_maxrss survives exec, so a variant
    would inherit the parent's peak (which exported the graphs with torch loaded)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_onnx(prefill: Path, decode: Path, ids: list[int], reps: int) -> dict:
    from npc_brain.lm import LanguageModel

    lm = LanguageModel(prefill, decode, threads=2)
    out = {"prefill": [], "decode": [], "ttft": [], "line": []}
    # One cache for every repetition, as the daemon keeps its row pool and llama.cpp its context:
    # fresh memory each time would time the VM's first touch of it, not the model.
    cache = lm.empty(capacity=len(ids) + N_NEW)
    for _ in range(reps + 1):
        cache.lengths[:] = 0
        t0 = time.perf_counter()
        logits, kv = lm.forward(np.array([ids]), cache)
        t1 = time.perf_counter()
        tok = int(logits[0].argmax())
        for _ in range(N_NEW - 1):
            logits, kv = lm.forward(np.array([[tok]]), kv, decode=True)
            tok = int(logits[0].argmax())
        t2 = time.perf_counter()
        for k, v in (("prefill", t1 - t0), ("ttft", t1 - t0), ("decode", (N_NEW - 1) / (t2 - t1)), ("line", t2 - t0)):
            out[k].append(v)
    return {k: v[1:] for k, v in out.items()}  # first repetition warms up


def _run_torch(ids: list[int], reps: int) -> dict:
    import torch

    from export.base_model import load_hf

    torch.set_num_threads(2)
    model, _ = load_hf()
    out = {"prefill": [], "decode": [], "ttft": [], "line": []}
    x = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            o = model(x, use_cache=True)
            t1 = time.perf_counter()
            past, tok = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(N_NEW - 1):
                o = model(tok, past_key_values=past, use_cache=True)
                past, tok = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
            t2 = time.perf_counter()
            for k, v in (("prefill", t1 - t0), ("ttft", t1 - t0), ("decode", (N_NEW - 1) / (t2 - t1)), ("line", t2 - t0)):
                out[k].append(v)
    return {k: v[1:] for k, v in out.items()}


def _llama_logits(llm) -> np.ndarray:
    """Last-position logits straight from the context (no logits_all: that would make
    llama.cpp compute the LM head for every prompt token, an unfair handicap)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def _run_llamacpp(ids: list[int], reps: int) -> dict:
    from llama_cpp import Llama

    from export.base_model import find_gguf

    llm = Llama(model_path=str(find_gguf()), n_ctx=1024, n_threads=2, n_batch=512, verbose=False)
    out = {"prefill": [], "decode": [], "ttft": [], "line": []}
    for _ in range(reps + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        tok = int(np.argmax(_llama_logits(llm)))
        for _ in range(N_NEW - 1):
            llm.eval([tok])
            tok = int(np.argmax(_llama_logits(llm)))
        t2 = time.perf_counter()
        for k, v in (("prefill", t1 - t0), ("ttft", t1 - t0), ("decode", (N_NEW - 1) / (t2 - t1)), ("line", t2 - t0)):
            out[k].append(v)
    return {k: v[1:] for k, v in out.items()}


BATCHES = (1, 2, 4, 8, 16)


def _run_batched(bundle: Path, ids: list[int], reps: int) -> dict:
    """Aggregate decode tokens/s when B conversations of different lengths share each step
    (what the daemon's continuous batching does), on each of the bundle's graphs: this is
    what the choice of `lm.WIDE_DECODE` (never use the prefill graph for decode) rests on."""
    from npc_brain.bundle import Bundle
    from npc_brain.lm import KV, LanguageModel

    b = Bundle.open(bundle)
    lm = LanguageModel(b.lm_path("prefill"), b.lm_path("decode"), threads=2)
    graphs = {"decode": lm.decode_session, "prefill": lm.prefill_session}
    rows = []
    for r in range(max(BATCHES)):  # rows 0..15 tokens shorter than the bench prompt: all lengths differ
        prompt = ids[: len(ids) - r]
        logits, kv = lm.forward(np.array([prompt]), lm.empty(capacity=len(prompt) + N_NEW))
        rows.append((int(logits[0].argmax()), kv))
    out: dict = {}
    for B in BATCHES:
        for name, session in graphs.items():
            lm.decode_session = lm.prefill_session = session
            rates = []
            batch = KV.stack([kv for _, kv in rows[:B]])  # one copy; each repetition rewinds it
            start = batch.lengths.copy()
            for _ in range(reps + 1):
                kv = batch
                kv.lengths[:] = start
                toks = np.array([[t] for t, _ in rows[:B]])
                t0 = time.perf_counter()
                for _ in range(N_NEW - 1):
                    logits, kv = lm.forward(toks, kv, decode=True)
                    toks = logits.argmax(-1)[:, None]
                rates.append(B * (N_NEW - 1) / (time.perf_counter() - t0))
            out[f"{name}:{B}"] = rates[1:]
    return out


def ensure_variant_graphs(bundle: Path) -> None:
    """The fp32 and single-precision graphs are bench-only, cached in build/bench and rebuilt
    whenever the bundle was built from another recipe (its manifest's build key)."""
    key = json.loads((bundle / "manifest.json").read_text())["provenance"]["build_key"]
    stamp = FP32_PATH.parent / "build_key"
    if (FP32_PATH.exists() and all(p.exists() for p in INT_PATHS.values()) and stamp.exists()
            and stamp.read_text() == key):
        return
    from export.bundle import load_torch_model
    from export.onnx_lm import export_fp32, quantize_int4, quantize_int8

    model, _ = load_torch_model()
    export_fp32(model, FP32_PATH)
    quantize_int8(FP32_PATH, INT_PATHS["onnx-int8"])
    quantize_int4(FP32_PATH, INT_PATHS["onnx-int4"])
    stamp.write_text(key)


def run_variant(name: str, bundle: Path, reps: int) -> dict:
    ids = bench_prompt_ids(bundle)
    if name == "torch":
        r = _run_torch(ids, reps)
    elif name == "llama.cpp":
        r = _run_llamacpp(ids, reps)
    elif name == "batched":
        r = _run_batched(bundle, ids, reps)
    elif name == "bundle":
        from npc_brain.bundle import Bundle

        b = Bundle.open(bundle)
        r = _run_onnx(b.lm_path("prefill"), b.lm_path("decode"), ids, reps)
    else:
        path = FP32_PATH if name == "onnx-fp32" else INT_PATHS[name]
        r = _run_onnx(path, path, ids, reps)
    r["rss_mb"] = _rss_mb()
    r["prompt_tokens"] = len(ids)
    return r


def _stat(xs: list[float], scale: float = 1.0) -> tuple[float, float, float]:
    return statistics.median(xs) * scale, min(xs) * scale, max(xs) * scale


def variant_main(argv: list[str] | None = None) -> int:
    """One variant in this process (what `main` runs in a subprocess per variant); prints JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("--variant", required=True)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--reps", type=int, default=5)
    w = p.parse_args(argv)
    print(json.dumps(run_variant(w.variant, w.bundle, w.reps)))
    return 0


def main(a: argparse.Namespace) -> int:
    bundle = Path(a.bundle)
    ensure_variant_graphs(bundle)
    variants = ([] if a.skip_torch else ["torch"]) + ["onnx-fp32", "onnx-int8", "onnx-int4", "bundle", "batched"]
    try:
        import llama_cpp  # noqa: F401

        variants.append("llama.cpp")
    except ImportError:
        print("llama-cpp-python not installed: no llama.cpp column (see docs/figures.md for how)", file=sys.stderr)
    results = {}
    for v in variants:
        print(f"bench: {v} ...", file=sys.stderr)
        proc = subprocess.run([sys.executable, "-m", "npc_brain.bench", "--variant", v, "--bundle", str(bundle),
                               "--reps", str(a.reps)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"bench: {v} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results[v] = json.loads(proc.stdout.strip().splitlines()[-1])
    batched = results.pop("batched", None)
    table = render(results, a.reps)
    print(table)
    write_section(Path(a.out), "bench", table)
    if batched:
        table = render_batched(batched, a.reps)
        print(table)
        write_section(Path(a.out), "bench-batched", table)
    return 0


def render(results: dict, reps: int) -> str:
    ref = results.get("llama.cpp")
    head = (f"Machine: {platform.machine()} {platform.processor() or ''}, 2 threads; {date.today()}; "
            f"command: `npc-brain bench --reps {reps}`; greedy, {N_NEW} new tokens after a "
            f"{next(iter(results.values()))['prompt_tokens'] if results else '?'}-token prompt; "
            "median (min-max) over the repetitions.\n\n")
    rows = ["| variant | prefill ms | first token ms | decode tok/s | 30-token line ms | peak RSS MB | decode vs llama.cpp | line vs llama.cpp |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        pf, tt, dc, ln = (_stat(r["prefill"], 1000), _stat(r["ttft"], 1000), _stat(r["decode"]), _stat(r["line"], 1000))
        rd = f"{dc[0] / statistics.median(ref['decode']):.2f}x" if ref else "n/a"
        rl = f"{statistics.median(ref['line']) * 1000 / ln[0]:.2f}x faster" if ref else "n/a"
        rows.append(f"| {name} | {pf[0]:.0f} ({pf[1]:.0f}-{pf[2]:.0f}) | {tt[0]:.0f} | {dc[0]:.1f} ({dc[1]:.1f}-{dc[2]:.1f}) "
                    f"| {ln[0]:.0f} ({ln[1]:.0f}-{ln[2]:.0f}) | {r['rss_mb']:.0f} | {rd} | {rl} |")
    return head + "\n".join(rows) + "\n"


def render_batched(r: dict, reps: int) -> str:
    head = (f"Batched decode, {date.today()}, `npc-brain bench --reps {reps}` (2 threads): B conversations of "
            f"different lengths ({r['prompt_tokens'] - max(BATCHES) + 1}-{r['prompt_tokens']} tokens) decode "
            f"{N_NEW - 1} greedy steps together; aggregate tokens/s over all rows, median (min-max), on the bundle's "
            "decode graph (int4) and its prefill graph (int8). The runtime decodes on the int4 graph at every batch size "
            "(a batched row is then bit-identical to the row alone); the last column is what it gets, as a ratio to "
            "one conversation.\n\n")
    one = statistics.median(r["decode:1"])
    rows = ["| conversations | int4 decode graph | int8 prefill graph | runtime vs 1 conversation |", "|---|---|---|---|"]
    for B in BATCHES:
        a, b = _stat(r[f"decode:{B}"]), _stat(r[f"prefill:{B}"])
        rows.append(f"| {B} | {a[0]:.1f} ({a[1]:.1f}-{a[2]:.1f}) | {b[0]:.1f} ({b[1]:.1f}-{b[2]:.1f}) | {a[0] / one:.2f}x |")
    return head + "\n".join(rows) + "\n"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the block between <!-- name:start --> and <!-- name:end --> (append if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Figures\n"
    block = f"{start}\n{body}{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(variant_main())
