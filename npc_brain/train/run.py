"""`npc-brain train`: LoRA fine-tuning of the voice, seeded, on CPU (2 threads) or CUDA.

    npc-brain train [--config npc_brain/train/config.yaml] [--out build/train] [--set optim.lr=1e-4]
                    [--install]   # also copy the adapter + recipe to export/artifacts/

Writes ``lora_adapter.pt`` (fp16 A/B, a few MB), ``lora_recipe.json`` (the config actually used,
with the step count it ran, data counts, base-model hash and timings), ``train_log.json`` (loss per
step) and a loss curve to ``docs/plots/loss_<name>.png``. The LR runs warmup -> stable -> cosine decay;
on a shared CPU the wall clock decides when the decay starts and how long it lasts (``budget.max_minutes``,
``budget.decay_at``), and the recipe records both step numbers: ``--set budget.max_steps=N --set
budget.decay_from=M`` reproduces a run exactly.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")
ARTIFACTS = ROOT / "export" / "artifacts"


def load_config(path: Path, overrides: list[str]) -> dict[str, Any]:
    """config.yaml, or a run's lora_recipe.json (the config it used, every --set applied; its "run" block,
    what happened, is dropped), with `overrides` on top."""
    cfg = yaml.safe_load(Path(path).read_text())
    cfg.pop("run", None)
    for item in overrides:
        key, _, raw = item.partition("=")
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return cfg


def _git_commit() -> str | None:
    """HEAD of the checkout the run trained from, "+dirty" when tracked files differ from it (the data
    code lives in the repository, so the commit is part of the recipe); None outside a git checkout."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _batches(seqs, size: int, rng: random.Random):
    order = list(range(len(seqs)))
    rng.shuffle(order)
    return [[seqs[i] for i in order[k:k + size]] for k in range(0, len(order), size)]


def _collate(batch, torch, device):
    S = max(len(s.ids) for s in batch)
    ids = torch.zeros(len(batch), S, dtype=torch.long)
    lab = torch.full((len(batch), S), -100, dtype=torch.long)
    mask = torch.zeros(len(batch), S, dtype=torch.long)
    pos = torch.arange(S, dtype=torch.long).repeat(len(batch), 1)
    seg = torch.full((len(batch), S), -1, dtype=torch.long)
    for b, s in enumerate(batch):
        n = len(s.ids)
        ids[b, :n] = torch.tensor(s.ids)
        lab[b, :n] = torch.tensor(s.labels)
        mask[b, :n] = 1
        if s.pos is not None:
            pos[b, :n] = torch.tensor(s.pos)
            seg[b, :n] = torch.tensor(s.seg)
        else:  # one dialogue: a single segment
            seg[b, :n] = 1
    return ids.to(device), mask.to(device), lab.to(device), pos.to(device), seg.to(device)


def plot_loss(log: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    steps = [r["step"] for r in log]
    loss = [r["loss"] for r in log]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    ax.plot(steps, loss, lw=1, alpha=0.5, label="per step")
    k = max(1, len(loss) // 15)
    if len(loss) > k:
        sm = [sum(loss[max(0, i - k + 1):i + 1]) / len(loss[max(0, i - k + 1):i + 1]) for i in range(len(loss))]
        ax.plot(steps, sm, lw=2, label=f"mean of {k}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("reply-token cross-entropy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def train(cfg: dict[str, Any], out: Path, name: str, log=print) -> dict[str, Any]:
    import torch

    from export import base_model
    from export.bundle import load_torch_model
    from npc_brain.prompt import PromptBuilder
    from npc_brain.train import lora
    from npc_brain.train.examples import build_sequences

    t_start = time.time()
    commit = _git_commit()  # now: commits made while the run trains are not what it trained from
    seed = int(cfg["seed"])
    random.seed(seed)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(int(cfg["budget"]["threads"]))
    torch.use_deterministic_algorithms(True, warn_only=True)

    model, hf_tok = load_torch_model(adapter=None)
    from tokenizers import Tokenizer

    builder = PromptBuilder(Tokenizer.from_str(hf_tok.backend_tokenizer.to_str()))
    seqs = build_sequences(builder, cfg["data"], seed, data_dir=ROOT / "build" / "data", log=log)

    lc = cfg["lora"]
    lora.apply_lora(model, int(lc["rank"]), float(lc["alpha"]), lc["targets"], float(lc.get("dropout", 0.0)))
    first = int(lc.get("layers_from", 0))
    # Unwrap the layers below `layers_from`: no adapter there, and no autograd through them.
    for i, layer in enumerate(model.layers):
        if i < first:
            for path, m in list(lora.lora_modules(layer).items()):
                parent, _, attr = path.rpartition(".")
                setattr(layer.get_submodule(parent) if parent else layer, attr, m.base)
    model.to(device).train()
    params = lora.lora_parameters(model)
    n_params = sum(p.numel() for p in params)
    log(f"LoRA r={lc['rank']} alpha={lc['alpha']} on layers {first}..{model.cfg.n_layers - 1}: "
        f"{n_params / 1e6:.2f}M trainable parameters; device={device}")

    oc, bc = cfg["optim"], cfg["budget"]
    opt = torch.optim.AdamW(params, lr=float(oc["lr"]), weight_decay=float(oc["weight_decay"]))
    rng = random.Random(seed + 1)
    batches = _batches(seqs, int(oc["batch_sequences"]), rng)
    amp = bool(bc.get("bf16_autocast")) or device == "cuda"

    def step_loss(batch):
        ids, mask, lab, pos, seg = _collate(batch, torch, device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            if first:
                with torch.no_grad():
                    h = _lower(model, ids, mask, first, pos, seg)
                return _upper_loss(model, h, ids, mask, lab, first, pos, seg)
            return _upper_loss(model, model.embed_tokens(ids), ids, mask, lab, 0, pos, seg)

    # Schedule: warmup, a stable phase at the full LR, then a cosine decay to 10% over the last steps.
    # With budget.max_steps > 0 everything is fixed up front (decay from budget.decay_from, default 80%
    # of the steps). With max_steps 0 the wall clock decides: the stable phase runs until
    # budget.decay_at (share of max_minutes) has passed, then the decay length is set from the recent
    # step times so the run ends inside the budget. The steps actually run (and where the decay began)
    # go into the recipe, so replaying them with --set reproduces the run whatever the machine load.
    base_lr, warm = float(oc["lr"]), int(oc["warmup_steps"])
    max_steps = int(bc.get("max_steps") or 0)
    budget_s = float(bc["max_minutes"]) * 60
    if max_steps > 0:
        total_steps = max_steps
        decay_from = int(bc.get("decay_from") or max(warm, int(0.8 * total_steps)))
    else:
        total_steps, decay_from = None, None
    planned = len(batches)

    def lr_at(step: int) -> float:
        if step < warm:
            return base_lr * (step + 1) / max(1, warm)
        if decay_from is None or step < decay_from:
            return base_lr
        frac = (step - decay_from) / max(1, total_steps - decay_from)
        return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    history: list[dict] = []
    t_loop = time.time()
    step = 0
    tokens = 0
    while total_steps is None or step < total_steps:
        batch = batches[step % len(batches)]
        lr = lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        t0 = time.time()
        loss, n = step_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, float(oc["grad_clip"]))
        opt.step()
        dt = time.time() - t0
        tokens += sum(len(s.ids) for s in batch)
        history.append({"step": step + 1, "loss": round(float(loss.detach()), 4), "targets": n, "lr": lr,
                        "seconds": round(dt, 2)})
        elapsed = time.time() - t_loop
        if total_steps is None and elapsed >= float(bc.get("decay_at", 0.8)) * budget_s:
            recent = [r["seconds"] for r in history[-8:]]
            per = sum(recent) / len(recent)
            decay_from = step + 1
            total_steps = decay_from + max(3, int((budget_s - elapsed) / per))
            log(f"{elapsed / 60:.1f} min: ~{per:.1f}s per step; decaying over steps {decay_from}..{total_steps}")
        if (step + 1) % 5 == 0 or step + 1 == total_steps:
            recent = history[-5:]
            log(f"step {step + 1}/{total_steps or '?'} loss {sum(r['loss'] for r in recent) / len(recent):.3f} "
                f"lr {lr:.2e} {tokens / (time.time() - t_loop):.0f} tok/s")
        step += 1
    train_s = time.time() - t_loop

    out.mkdir(parents=True, exist_ok=True)
    gguf = base_model.find_gguf()
    recipe = copy.deepcopy(cfg)
    recipe["budget"]["max_steps"] = total_steps  # replaying with these two reproduces the run
    recipe["budget"]["decay_from"] = decay_from
    recipe["run"] = {
        "name": name, "device": device, "steps": total_steps, "planned_steps": planned,
        "sequences": len(seqs), "tokens_seen": tokens,
        "reply_tokens_in_data": sum(s.n_targets for s in seqs),
        "trainable_parameters": n_params, "train_seconds": round(train_s, 1),
        "total_seconds": round(time.time() - t_start, 1),
        "final_loss_mean_last10": round(sum(r["loss"] for r in history[-10:]) / len(history[-10:]), 4),
        "first_loss_mean_first5": round(sum(r["loss"] for r in history[:5]) / len(history[:5]), 4),
        "base_model": {"package": f"{base_model.GGUF_PACKAGE}=={base_model.GGUF_VERSION}",
                       "sha256": base_model.sha256_file(gguf)},
        "torch": str(torch.__version__),
        "epochs": round(total_steps / max(1, planned), 2),
        "commit": commit,
        # this file is the whole config (every --set applied): replaying it at that commit is the run again
        "command": "npc-brain train --config lora_recipe.json",
    }
    lora.save_adapter(model, out / "lora_adapter.pt", recipe=recipe)
    (out / "lora_recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    (out / "train_log.json").write_text(json.dumps(history) + "\n")
    try:
        plot_loss(history, ROOT / "docs" / "plots" / f"loss_{name}.png",
                  f"LoRA r={lc['rank']} layers {first}+, {total_steps} steps (decay from {decay_from}), {device}")
    except ImportError:
        log("matplotlib missing: no loss plot (pip install matplotlib)")
    log(f"trained {total_steps} steps in {train_s / 60:.1f} min; adapter -> {out / 'lora_adapter.pt'}")
    return recipe


def _lower(model, ids, mask, first: int, pos=None, seg=None):
    """Hidden state after the frozen lower layers (no autograd)."""
    return _run_layers(model, ids, mask, 0, first, model.embed_tokens(ids), pos, seg)


def _upper_loss(model, h, ids, mask, lab, first: int, pos=None, seg=None):
    import torch.nn.functional as F

    x = _run_layers(model, ids, mask, first, model.cfg.n_layers, h, pos, seg)
    x = model.norm(x)
    tgt = lab[:, 1:]
    sel = tgt != -100
    logits = model.lm_head(x[:, :-1][sel])
    return F.cross_entropy(logits.float(), tgt[sel]), int(sel.sum())


def _run_layers(model, ids, mask, lo: int, hi: int, x, pos=None, seg=None):
    """Layers lo..hi-1. ``pos`` (B, S): position ids (default 0..S-1). ``seg`` (B, S): segment ids for
    packed sequences - a token sees earlier tokens of its own segment and of segment 0 (the persona)."""
    import torch

    B, S = ids.shape
    idx = torch.arange(S, device=ids.device)
    if pos is None:
        pos = idx.repeat(B, 1)
    freqs = pos.to(torch.float32).unsqueeze(-1) * model.inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)[:, None]
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    allowed = (idx[None, :] <= idx[:, None])[None] & (mask[:, None, :] > 0)
    if seg is not None:
        allowed = allowed & ((seg[:, None, :] == seg[:, :, None]) | (seg[:, None, :] == 0))
    bias = torch.where(allowed, 0.0, -1e9).to(x.dtype).unsqueeze(1)
    c = model.cfg
    empty = torch.zeros(B, c.n_kv_heads, 0, c.head_dim, dtype=x.dtype, device=x.device)
    for layer in model.layers[lo:hi]:
        x, _, _ = layer(x, cos, sin, bias, empty, empty)
    return x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="npc-brain train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "train")
    p.add_argument("--name", default="lora", help="run name (loss plot: docs/plots/loss_<name>.png)")
    p.add_argument("--install", action="store_true",
                   help="copy the adapter + recipe to export/artifacts/ (the default bundle then merges it)")
    p.add_argument("--dump-data", type=Path, help="write the rendered training sequences as JSONL and exit")
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.set)
    if a.dump_data:
        from tokenizers import Tokenizer

        from npc_brain.prompt import PromptBuilder
        from npc_brain.train.examples import build_sequences, iter_jsonl

        b = PromptBuilder(Tokenizer.from_file(str(ROOT / "build" / "bundle" / "tokenizer.json")))
        seqs = build_sequences(b, cfg["data"], int(cfg["seed"]), data_dir=ROOT / "build" / "data")
        a.dump_data.write_text("\n".join(iter_jsonl(seqs, b)) + "\n")
        return 0
    train(cfg, a.out, a.name)
    if a.install:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for f in ("lora_adapter.pt", "lora_recipe.json"):
            shutil.copy2(a.out / f, ARTIFACTS / f)
        print(f"installed into {ARTIFACTS}")
    return 0
