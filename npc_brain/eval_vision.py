"""Evaluate the scene reader: per-tag accuracy / F1 on held-out procedural renders and on real
screenshots of games (one left out of training), plus latency per screenshot.

    python -m npc_brain.eval_vision --vision-dir BUNDLE/vision --real minetest --threads 2 \
        --markdown docs/figures_vision.md

Real screenshots are read from build/vision/real/<game>/labels.jsonl (scripts/capture_screens.py).
Tags a game's set-up does not determine are unlabelled (null) and left out of that tag's figures.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from npc_brain.vision import SceneReader, decode_screenshot, prepare

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "build" / "vision" / "real"
HELD_OUT_SEED = 1_000_000  # training uses seeds 0 .. n_proc


def _predict(reader: SceneReader, images: list[np.ndarray], batch: int = 16) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch):
        out.append(reader.probabilities(np.stack([prepare(im) for im in images[i:i + batch]])))
    return np.concatenate(out)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def score(reader: SceneReader, probs: np.ndarray, labels: list[dict[str, Any]]) -> dict[str, Any]:
    """Per tag: n, accuracy, macro-F1 (single-label); micro-F1 and exact-set accuracy (multi)."""
    result: dict[str, Any] = {}
    for tag in reader.tags:
        name, values, off = tag["name"], tag["values"], tag["offset"]
        rows = [i for i, lab in enumerate(labels) if lab.get(name) is not None]
        if not rows:
            continue
        p = probs[rows, off:off + len(values)]
        if tag["multi"]:
            pred = p >= tag.get("threshold", 0.5)
            truth = np.array([[v in labels[i][name] for v in values] for i in rows])
            tp, fp, fn = int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum())
            per_value = {v: round(_f1(int((pred[:, j] & truth[:, j]).sum()), int((pred[:, j] & ~truth[:, j]).sum()),
                                      int((~pred[:, j] & truth[:, j]).sum())), 3)
                         for j, v in enumerate(values) if truth[:, j].any()}
            result[name] = {"n": len(rows), "exact_set_accuracy": round(float((pred == truth).all(1).mean()), 3),
                            "micro_f1": round(_f1(tp, fp, fn), 3), "f1_per_value": per_value}
        else:
            pred = p.argmax(1)
            truth = np.array([values.index(labels[i][name]) if labels[i][name] in values else -1 for i in rows])
            keep = truth >= 0
            pred, truth = pred[keep], truth[keep]
            if not len(truth):
                continue
            f1s = []
            for j in set(truth.tolist()):
                f1s.append(_f1(int(((pred == j) & (truth == j)).sum()), int(((pred == j) & (truth != j)).sum()),
                               int(((pred != j) & (truth == j)).sum())))
            confusion = {values[t]: {values[q]: int(((truth == t) & (pred == q)).sum())
                                     for q in range(len(values)) if ((truth == t) & (pred == q)).any()}
                         for t in sorted(set(truth.tolist()))}
            result[name] = {"n": int(len(truth)), "accuracy": round(float((pred == truth).mean()), 3),
                            "macro_f1": round(float(np.mean(f1s)), 3), "confusion": confusion}
    return result


def load_real(game: str) -> tuple[list[np.ndarray], list[dict[str, Any]], list[Path]]:
    base = REAL / game
    images, labels, files = [], [], []
    for line in (base / "labels.jsonl").read_text().splitlines():
        rec = json.loads(line)
        path = base / rec["file"]
        if path.exists():
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(rec["labels"])
            files.append(path)
    return images, labels, files


def latency(reader: SceneReader, images: list[np.ndarray], fmt: str = "png") -> dict[str, Any]:
    """Per screenshot: decode (from PNG/JPEG bytes or raw RGB) + resize + ONNX, in ms."""
    payloads = []
    for im in images:
        if fmt == "rgb":
            payloads.append((im.tobytes(), im.shape[1], im.shape[0]))
        else:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="PNG" if fmt == "png" else "JPEG", quality=90)
            payloads.append((buf.getvalue(), None, None))
    reader.read(images[0])  # warm-up
    times = []
    for data, w, h in payloads:
        t0 = time.perf_counter()
        reader.read(decode_screenshot(data, fmt, w, h))
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"format": fmt, "n": len(times), "size": f"{images[0].shape[1]}x{images[0].shape[0]}",
            "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[min(len(times) - 1, int(0.9 * len(times)))], 2)}


def _markdown(report: dict[str, Any]) -> str:
    lines = ["# Vision figures (measured)", "",
             f"Model: `{report['model_sha256'][:16]}…`, head trained on: {report.get('trained_on', '?')}. "
             f"Reader threads: {report['threads']}. Machine: 2 shared CPU cores.", ""]
    for split, res in report["splits"].items():
        lines += [f"## {split} ({res['n']} screenshots)", "", "| tag | n | accuracy | F1 |", "|---|---|---|---|"]
        for tag, m in res["tags"].items():
            if "accuracy" in m:
                lines.append(f"| {tag} | {m['n']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} (macro) |")
            else:
                lines.append(f"| {tag} | {m['n']} | {m['exact_set_accuracy']:.3f} (exact set) | "
                             f"{m['micro_f1']:.3f} (micro) |")
        lines.append("")
    lines += ["## Latency per screenshot (decode + resize + ONNX)", "",
              "| input | size | n | median ms | p90 ms |", "|---|---|---|---|---|"]
    for lat in report["latency"]:
        lines.append(f"| {lat['format']} | {lat['size']} | {lat['n']} | {lat['median_ms']} | {lat['p90_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="npc-brain eval vision", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vision-dir", type=Path, default=ROOT / "build" / "vision" / "bundle",
                    help="folder with scene.onnx + vocab.json (built with export.vision when missing)")
    ap.add_argument("--procedural", type=int, default=300, help="held-out procedural renders")
    ap.add_argument("--real", action="append", default=[], help="real game under build/vision/real")
    ap.add_argument("--threads", type=int, default=1, help="ONNX intra-op threads (1 is fastest on 2 shared cores)")
    ap.add_argument("--latency-n", type=int, default=60)
    ap.add_argument("--head-dir", type=Path, default=ROOT / "export" / "artifacts",
                    help="where the head's recipe (scene_head.json) lives, for the report's 'trained on'")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)

    if not (args.vision_dir / "scene.onnx").exists():
        from export.vision import build_vision  # needs torch: only when no bundle was given
        build_vision(args.vision_dir)
    reader = SceneReader(args.vision_dir, threads=args.threads)
    import hashlib
    report: dict[str, Any] = {
        "model_sha256": hashlib.sha256((args.vision_dir / "scene.onnx").read_bytes()).hexdigest(),
        "threads": args.threads, "splits": {}, "latency": []}
    head_json = args.head_dir / "scene_head.json"
    if head_json.exists():
        recipe = json.loads(head_json.read_text())
        report["trained_on"] = "procedural" + "".join(f" + {r['game']}" for r in recipe.get("real", []))

    if args.procedural:
        from npc_brain.render_scenes import render_sample
        rendered = [render_sample(HELD_OUT_SEED + i) for i in range(args.procedural)]
        imgs, labs = [r[0] for r in rendered], [r[1] for r in rendered]
        report["splits"]["procedural (held-out seeds)"] = {
            "n": len(imgs), "tags": score(reader, _predict(reader, imgs), labs)}
    real_images: list[np.ndarray] = []
    for game in args.real:
        imgs, labs, _ = load_real(game)
        if not imgs:
            print(f"no screenshots for {game} under {REAL / game}", file=sys.stderr)
            continue
        report["splits"][f"real: {game}"] = {"n": len(imgs), "tags": score(reader, _predict(reader, imgs), labs)}
        real_images = real_images or imgs
    lat_images = real_images[:args.latency_n] if real_images else \
        [__import__("npc_brain.render_scenes", fromlist=["x"]).render_sample(HELD_OUT_SEED + i, (1280, 720))[0]
         for i in range(args.latency_n)]
    for fmt in ("png", "jpeg", "rgb") if lat_images else ():  # --latency-n 0: accuracy only
        report["latency"].append(latency(reader, lat_images, fmt))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if args.markdown:
        args.markdown.write_text(_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
