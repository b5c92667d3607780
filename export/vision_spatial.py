"""A small convolutional head for danger (fire, a fight): things in one part of the picture.

Why: the scene head (export.vision) sees the backbone's pooled features, where a sword arc or a
torch in one corner is averaged away; on held-out procedural renders it found combat with F1
0.45 (recall 0.32), and `npc-brain eval scene` missed most fights. This
head reads the backbone's 7 x 7 map at the input of block 15 (192 channels, the same cut as
export.vision_top), looks at each cell and its neighbours, and keeps the strongest response
anywhere (max pool) beside the average. Its sigmoid outputs replace the scene head's for its
tags; every other tag is the scene head's as before.

Trained on procedural renders (seeds 0..n_proc) and, with ``--real GAME``, a real game's frames whose
danger the capture settled (Wesnoth views without units: no danger), weighted together like the scene
head's real frames (a third of the renders' weight); Minetest, the one game with real fires, is left as an
unseen check: its fires, and false alarms on its 312 frames without danger. Inputs are the cut
activations cached by export.vision_top. ``python -m export.vision train-spatial`` writes
scene_spatial.npz and records it in scene_head.json; ``build_vision`` then puts it in the graph.
"""

from __future__ import annotations

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
from export.vision_top import CUT_SHAPE, TOP_FROM, cache_cut_procedural, cache_cut_real

SPATIAL_NPZ = "scene_spatial.npz"
TAGS = ("danger",)  # creatures tried too: on unseen Wesnoth it called undead on ~3 frames in 4
WIDTH = 64
RECIPE = {"epochs": 30, "lr": 2e-3, "weight_decay": 1e-2, "batch": 128, "feature_noise": 0.1, "seed": 0}


def spatial_layout() -> list[dict[str, Any]]:
    """The scene layout's entries for TAGS (their offsets are those of the full output)."""
    return [t for t in V.tag_layout() if t["name"] in TAGS]


def n_spatial() -> int:
    return sum(len(t["values"]) for t in spatial_layout())


class SpatialHead(nn.Module):
    """192 x 7 x 7 cut activations -> logits for the values of TAGS (standardised per channel,
    1x1 conv, 3x3 conv, max + mean pool, linear)."""

    def __init__(self, width: int = WIDTH):
        super().__init__()
        c = CUT_SHAPE[0]
        self.register_buffer("mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("scale", torch.ones(1, c, 1, 1))
        self.conv = nn.Sequential(nn.Conv2d(c, width, 1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.out = nn.Linear(2 * width, n_spatial())

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        h = self.conv((acts - self.mean) * self.scale)
        return self.out(torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=1))

    def override(self, probs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """`probs` (the scene head's, full layout) with TAGS' columns replaced by this head's."""
        mine = torch.sigmoid(self(acts))
        parts, at, used = [], 0, 0
        for tag in spatial_layout():
            n = len(tag["values"])
            parts += [probs[:, at:tag["offset"]], mine[:, used:used + n]]
            at, used = tag["offset"] + n, used + n
        parts.append(probs[:, at:])
        return torch.cat(parts, dim=1)


def _columns() -> list[int]:
    return [t["offset"] + i for t in spatial_layout() for i in range(len(t["values"]))]


def procedural_multi(start: int, count: int) -> np.ndarray:
    """Multi-label targets of procedural seeds start..start+count (the cut cache keeps only the
    single-label ones), cached: rendering is most of the cost."""
    path = V.WORK / "features" / f"multi_proc_{start}_{count}.npy"
    if path.exists():
        return np.load(path)
    from npc_brain.render_scenes import render_sample

    out = np.stack([V.encode_labels(render_sample(seed)[1])[1] for seed in range(start, start + count)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def real_rows(backbone: nn.Module, games: tuple[str, ...], n_proc: int, real_weight: float = 1.0
              ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Cut activations and targets of the games' frames with a known danger label, each repeated so that
    all real frames together weigh ``real_weight`` x a third of the n_proc renders (shared equally by the
    games; feature noise makes the copies differ)."""
    acts, multi, used = [], [], []
    for game in games:
        a = np.load(cache_cut_real(backbone, game))["acts"]
        m = _multi(V.real_labels(game)[0])  # labels only: the images are the check set's business
        known = (m[:, _columns()] >= 0).all(axis=1)
        if not known.any():
            continue
        copies = max(1, round(real_weight * n_proc / 3 / len(games) / int(known.sum())))
        acts.append(np.repeat(a[known], copies, axis=0))
        multi.append(np.repeat(m[known], copies, axis=0))
        used.append({"game": game, "frames": int(known.sum()), "copies": copies,
                     "with_danger": int((m[known][:, _columns()] > 0.5).any(axis=1).sum())})
    if not acts:
        return np.zeros((0, *CUT_SHAPE), np.float32), np.zeros((0, V.n_outputs()), np.float32), used
    return np.concatenate(acts), np.concatenate(multi), used


def train_spatial_head(acts: np.ndarray, multi: np.ndarray, recipe: dict[str, Any] = RECIPE) -> SpatialHead:
    """Masked BCE on the columns of TAGS (-1 = unknown), AdamW, cosine, feature noise."""
    torch.manual_seed(recipe["seed"])
    head = SpatialHead()
    X = torch.from_numpy(acts.astype(np.float32))
    Y = torch.from_numpy(multi[:, _columns()].astype(np.float32))
    head.mean.copy_(X.mean(dim=(0, 2, 3), keepdim=True))
    head.scale.copy_(1.0 / (X.std(dim=(0, 2, 3), keepdim=True) + 1e-3))
    opt = torch.optim.AdamW(head.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe["epochs"])
    gen = torch.Generator().manual_seed(recipe["seed"])
    for _ in range(recipe["epochs"]):
        head.train()
        order = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X), recipe["batch"]):
            idx = order[i:i + recipe["batch"]]
            x = X[idx] + recipe["feature_noise"] * torch.randn_like(X[idx]) / head.scale
            y = Y[idx]
            known = y >= 0
            if not known.any():
                continue
            loss = nn.functional.binary_cross_entropy_with_logits(head(x)[known], y[known])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():  # stored in fp16: score what will be shipped
        for t in list(head.parameters()) + list(head.buffers()):
            t.copy_(t.half().float())
    return head.eval()


def f1_per_value(probs: np.ndarray, multi: np.ndarray) -> dict[str, dict[str, float]]:
    """Per value of TAGS (full-layout columns): F1, precision, recall at the tag's threshold, positives."""
    out = {}
    for tag in spatial_layout():
        for i, v in enumerate(tag["values"]):
            col = tag["offset"] + i
            known = multi[:, col] >= 0
            truth, pred = multi[known, col] > 0.5, probs[known, col] >= tag["threshold"]
            tp = int((truth & pred).sum())
            out[f"{tag['name']}.{v}"] = {"predicted": int(pred.sum()),
                "f1": round(2 * tp / max(1, int(truth.sum() + pred.sum())), 3),
                "precision": round(tp / max(1, int(pred.sum())), 3), "recall": round(tp / max(1, int(truth.sum())), 3),
                "positives": int(truth.sum()), "n": int(known.sum())}
    return out


def false_alarms(probs: np.ndarray, multi: np.ndarray) -> dict[str, float | int]:
    """Frames labelled with none of a tag's values (for TAGS) on which any value is predicted."""
    out: dict[str, float | int] = {}
    for tag in spatial_layout():
        cols = slice(tag["offset"], tag["offset"] + len(tag["values"]))
        calm = (multi[:, cols] == 0).all(axis=1)
        fired = (probs[calm, cols] >= tag["threshold"]).any(axis=1)
        out[tag["name"]] = {"frames": int(calm.sum()), "false_alarms": int(fired.sum()),
                            "rate": round(float(fired.mean()), 3) if calm.any() else 0.0}
    return out


def _scene_probs(model: V.SceneModel, images: list[np.ndarray], batch: int = 32) -> np.ndarray:
    from npc_brain.vision import prepare

    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(np.stack([prepare(im) for im in images[i:i + batch]]))).numpy()
                               for i in range(0, len(images), batch)])


def _check_set(name: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Images and multi-label targets of a check set, each read once: the validation renders (rendered
    here; their cut activations are cached) or a real game (rows in its cut cache's order)."""
    if name == "validation renders":
        from npc_brain.render_scenes import render_sample

        start, count = V.VALIDATION_SEEDS
        renders = [render_sample(seed) for seed in range(start, start + count)]
        images, labels = [img for img, _ in renders], [lab for _, lab in renders]
    else:
        images, labels, _ = V.load_real(name)
    return images, _multi(labels)


def _multi(labels: list[dict[str, Any]]) -> np.ndarray:
    """Multi-label targets (full layout) of a list of label dicts."""
    return np.stack([V.encode_labels(lab)[1] for lab in labels]) if labels else np.zeros((0, V.n_outputs()), np.float32)


def save_spatial(head: SpatialHead, info: dict[str, Any], head_dir: Path = V.ARTIFACTS) -> None:
    npz = head_dir / SPATIAL_NPZ
    np.savez_compressed(npz, **{k: v.numpy().astype(np.float16) for k, v in head.state_dict().items()})
    recipe_path = head_dir / V.HEAD_JSON.name
    recipe = json.loads(recipe_path.read_text())
    recipe["spatial"] = dict(info, file=SPATIAL_NPZ, sha256=hashlib.sha256(npz.read_bytes()).hexdigest())
    recipe_path.write_text(json.dumps(recipe, indent=2) + "\n")


def load_spatial(head_dir: Path = V.ARTIFACTS) -> SpatialHead | None:
    recipe = json.loads((head_dir / V.HEAD_JSON.name).read_text())
    entry = recipe.get("spatial")
    if not entry:
        return None
    if entry.get("from_block") != TOP_FROM or entry.get("tags") != list(TAGS):
        raise ValueError(f"{head_dir / V.HEAD_JSON.name}: the spatial head reads block {entry.get('from_block')} "
                         f"for {entry.get('tags')}, this code block {TOP_FROM} for {list(TAGS)}: retrain it")
    data = np.load(head_dir / entry["file"])
    head = SpatialHead()
    head.load_state_dict({k: torch.from_numpy(data[k].astype(np.float32)) for k in data.files})
    return head.eval()


def train(n_proc: int = 4000, head_dir: Path = V.ARTIFACTS, check_games: tuple[str, ...] = ("minetest", "wesnoth"),
          save: bool = True, real: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train on procedural renders (plus the `real` games' frames of known danger), score on the
    validation renders and the check games against the scene head alone; save into head_dir when `save`."""
    torch.set_num_threads(1)
    t0 = time.time()
    backbone = V.load_backbone()
    acts = np.load(cache_cut_procedural(backbone, 0, n_proc))["acts"]
    multi = procedural_multi(0, n_proc)
    r_acts, r_multi, used_real = real_rows(backbone, real, n_proc)
    head = train_spatial_head(np.concatenate([acts, r_acts]), np.concatenate([multi, r_multi]))
    seconds = round(time.time() - t0, 1)
    scored: dict[str, Any] = {}
    names = ["validation renders"] + [g for g in check_games if (V.WORK / "real" / g / "labels.jsonl").exists()]
    scene = V.load_scene_model(head_dir)
    scene.spatial = None  # the scene head alone, for comparison
    for name in names:
        cut = cache_cut_procedural(backbone, *V.VALIDATION_SEEDS) if name == "validation renders" \
            else cache_cut_real(backbone, name)
        a = np.load(cut)["acts"]
        images, multi = _check_set(name)
        with torch.no_grad():
            mine = torch.sigmoid(head(torch.from_numpy(a.astype(np.float32)))).numpy()
        probs = np.zeros((len(a), V.n_outputs()), np.float32)
        probs[:, _columns()] = mine
        base = _scene_probs(scene, images)
        scored[name] = {"spatial": f1_per_value(probs, multi), "scene head": f1_per_value(base, multi),
                        "false alarms": {"spatial": false_alarms(probs, multi), "scene head": false_alarms(base, multi)}}
        print(f"  scored {name}", file=sys.stderr)
    info = {"from_block": TOP_FROM, "tags": list(TAGS), "width": WIDTH, "training": dict(RECIPE),
            "procedural": {"seeds": [0, n_proc]}, "real": used_real, "train_seconds": seconds, "scores": scored,
            "command": f"python -m export.vision train-spatial --n-proc {n_proc}" + "".join(f" --real {g}" for g in real)}
    if save:
        save_spatial(head, info, head_dir)
    return info
