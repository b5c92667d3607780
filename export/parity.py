"""Parity between PyTorch eager and the exported graphs (greedy, token for token).

`python -m export.parity` prints how far each quantized graph agrees with fp32;
the test suite asserts fp32 ONNX == PyTorch exactly on fixed prompts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

PROMPTS = [
    ("You are Brom, the blacksmith of Emberfall. Reply in one short sentence.", "Can you fix my sword?"),
    ("You are Mara, who keeps the Singing Kettle tavern. Reply in one short sentence.", "Any rumours tonight?"),
    ("You are a tired space station engineer. Reply in one short sentence.", "Why is the air so cold?"),
    ("You are a sheriff in a dusty frontier town. Reply in one short sentence.", "Who robbed the bank?"),
]


def prompt_ids(tok, system: str, user: str) -> list[int]:
    text = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    return tok(text).input_ids


def reference_model(adapter: Path | None = None):
    """(transformers model, tokenizer) with the weights the bundle is exported from: the base model,
    plus the installed adapter merged in when there is one (merged through our own module, then
    copied back, so the reference runs transformers' code on exactly the exported weights)."""
    import torch

    from export.base_model import load_hf
    from export.bundle import ADAPTER

    adapter = ADAPTER if adapter is None else adapter
    hf, tok = load_hf()
    if adapter and Path(adapter).exists():
        from export.llama import load_from_hf
        from npc_brain.train.lora import merge_adapter_file

        ours = load_from_hf(hf)
        merge_adapter_file(ours, adapter)
        target = hf.state_dict()
        with torch.no_grad():
            for name, value in ours.state_dict().items():
                key = "model." + name if "model." + name in target else name
                if key in target and target[key].shape == value.shape:
                    target[key].copy_(value)
    return hf, tok


def greedy_torch(hf_model, ids: list[int], n: int) -> list[int]:
    import torch

    out = []
    with torch.no_grad():
        o = hf_model(torch.tensor([ids]), use_cache=True)
        for _ in range(n):
            t = o.logits[:, -1].argmax(-1, keepdim=True)
            out.append(int(t))
            o = hf_model(t, past_key_values=o.past_key_values, use_cache=True)
    return out


def greedy_onnx(lm, ids: list[int], n: int) -> list[int]:
    logits, kv = lm.forward(np.array([ids]), lm.empty(capacity=len(ids) + n))
    out = []
    for _ in range(n):
        out.append(int(logits[0].argmax()))
        logits, kv = lm.forward(np.array([[out[-1]]]), kv, decode=True)
    return out


def agreement(ref: list[int], other: list[int]) -> tuple[float, float]:
    """(fraction of positions equal, matching prefix length / n)."""
    same = sum(a == b for a, b in zip(ref, other)) / len(ref)
    prefix = next((i for i, (a, b) in enumerate(zip(ref, other)) if a != b), len(ref))
    return same, prefix / len(ref)


def main(argv: list[str] | None = None) -> int:
    from npc_brain.bench import FP32_PATH, INT_PATHS, ensure_variant_graphs
    from npc_brain.bundle import Bundle
    from npc_brain.lm import LanguageModel

    bundle = Path(argv[0] if argv else "build/bundle")
    ensure_variant_graphs(bundle)
    hf, tok = reference_model()
    b = Bundle.open(bundle)
    graphs = {"onnx-fp32": LanguageModel(FP32_PATH), "onnx-int8": LanguageModel(INT_PATHS["onnx-int8"]),
              "onnx-int4": LanguageModel(INT_PATHS["onnx-int4"]),
              "bundle (int8 prefill + int4 decode)": LanguageModel(b.lm_path("prefill"), b.lm_path("decode"))}
    n = 32
    refs = [greedy_torch(hf, prompt_ids(tok, s, u), n) for s, u in PROMPTS]
    from datetime import date

    from npc_brain.bench import write_section

    rows = [f"Command: `python -m export.parity`; {date.today()}; greedy, {len(PROMPTS)} prompts x {n} tokens, "
            "reference PyTorch eager (transformers, fp32, the bundle's weights: base + installed adapter).\n", "| graph | tokens equal | matching prefix |", "|---|---|---|"]
    for name, lm in graphs.items():
        scores = [agreement(r, greedy_onnx(lm, prompt_ids(tok, s, u), n)) for r, (s, u) in zip(refs, PROMPTS)]
        rows.append(f"| {name} | {np.mean([s[0] for s in scores]):.0%} | {np.mean([s[1] for s in scores]):.0%} |")
    table = "\n".join(rows) + "\n"
    print(table)
    write_section(Path("docs/figures.md"), "parity", table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
