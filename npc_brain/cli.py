"""`npc-brain ...`: one entry point, one subcommand per job. Imports are lazy so
`npc-brain say` never pays for (or needs) PyTorch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from npc_brain.config import DEFAULT_BUNDLE_DIR


def _scene_args(pairs: list[str] | None) -> dict[str, str]:
    scene = {}
    for p in pairs or []:
        if "=" not in p:
            raise SystemExit(f"--scene wants key=value, got {p!r}")
        k, v = p.split("=", 1)
        scene[k.strip()] = v.strip()
    return scene


# The sampling flags of `say`: the parser adds one per entry, `_options` reads them back.
_SAY_OPTIONS = (("temperature", float), ("top_p", float), ("min_p", float), ("top_k", int),
                ("repetition_penalty", float), ("max_tokens", int))


def _options(a: argparse.Namespace) -> dict:
    return {k: getattr(a, k) for k, _ in _SAY_OPTIONS if getattr(a, k, None) is not None}


def cmd_build(a: argparse.Namespace) -> int:
    from export.bundle import build_bundle

    build_bundle(a.bundle, force=a.force, with_vision=not a.no_vision)
    return 0


def cmd_say(a: argparse.Namespace) -> int:
    from npc_brain.character import CharacterError, load_character
    from npc_brain.config import GenerationOptions, OptionsError
    from npc_brain.prompt import PromptError

    try:
        character = load_character(a.character)
        GenerationOptions().validated(_options(a))  # a bad option fails before the bundle loads
    except (CharacterError, OptionsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scene = _scene_args(a.scene)
    if a.connect:
        from npc_brain.client import Client, ClientError
        from npc_brain.keys import client_curve_from_args

        curve = client_curve_from_args(a.connect, a.curve_client_secret, a.curve_server_public)
        shot = Path(a.screenshot).read_bytes() if a.screenshot else None
        try:
            with Client(a.connect, timeout_s=a.timeout, curve=curve) as c:
                rep = c.say(a.npc or character.id, a.utterance, character=character.to_dict(), scene=scene,
                            screenshot=shot, seed=a.seed, options=_options(a), read_text=a.read_text)
        except ClientError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(json.dumps(rep, ensure_ascii=False) if a.json else f"[{rep['emotion']}] {rep['text']}")
        return 0
    from npc_brain.engine import Engine, LineRequest

    engine = Engine.load(a.bundle)
    opts = engine.defaults.validated(_options(a))  # the bundle's defaults (its voice's), then the flags
    if a.screenshot:
        from npc_brain.screen_text import TextReaderUnavailable
        from npc_brain.vision import ImageError

        try:
            scene = engine.see(Path(a.screenshot).read_bytes(), engine_tags=scene, read_text=a.read_text)
        except TextReaderUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except (ImageError, OSError) as e:
            print(f"error: screenshot: {e}", file=sys.stderr)
            if not scene:
                return 2
    try:
        rep = engine.generate(LineRequest(character, a.utterance, scene, (), a.seed, opts))
    except PromptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(rep.__dict__, ensure_ascii=False))
    else:
        print(f"[{rep.emotion}] {rep.line}")
    return 0


def cmd_batch(a: argparse.Namespace) -> int:
    from npc_brain.batch import run_batch
    from npc_brain.engine import Engine

    if not a.input.exists():
        print(f"error: {a.input} does not exist", file=sys.stderr)
        return 2
    engine = Engine.load(a.bundle, deterministic=True)  # same seed => same line, whatever the grouping
    counts = run_batch(engine, a.input, a.output, n_override=a.n, read_text=a.read_text)
    print(f"{counts['lines']} lines written, {counts['skipped']} records skipped (already in {a.output}), "
          f"{counts['errors']} errors", file=sys.stderr)
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from npc_brain.bench import main as bench_main

    return bench_main(a)


def _delegate(module: str, argv: list[str]) -> int:
    import importlib

    return int(importlib.import_module(module).main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    from npc_brain.keys import add_client_curve_args

    p = argparse.ArgumentParser(prog="npc-brain", description="Local NPC dialogue backend.")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR, help="model bundle folder (default: %(default)s)")
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="build the default model bundle (PyTorch -> ONNX), cached by content hash")
    b.add_argument("--force", action="store_true")
    b.add_argument("--no-vision", action="store_true")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("say", help="one line from one NPC")
    s.add_argument("utterance")
    s.add_argument("--character", required=True, help="sheet: .yaml/.json/.png card")
    s.add_argument("--scene", action="append", metavar="KEY=VALUE")
    s.add_argument("--screenshot", help="PNG/JPEG screenshot the NPC sees")
    s.add_argument("--read-text", action="store_true",
                   help="with --screenshot: also read its signs and banners (OCR, ~300 ms; needs the ocr extra)")
    s.add_argument("--seed", type=int)
    s.add_argument("--npc", help="npc id (default: the sheet's id)")
    s.add_argument("--connect", help="ask a running daemon instead, e.g. tcp://127.0.0.1:5555")
    s.add_argument("--timeout", type=float, default=30.0, help="with --connect: seconds to wait for each try")
    add_client_curve_args(s)
    s.add_argument("--json", action="store_true", help="print the whole reply as JSON")
    for opt, typ in _SAY_OPTIONS:
        s.add_argument(f"--{opt.replace('_', '-')}", dest=opt, type=typ)
    s.set_defaults(func=cmd_say)

    bt = sub.add_parser("batch", help="generate lines for every record of a JSONL/CSV file (resumable)")
    bt.add_argument("input", type=Path)
    bt.add_argument("-o", "--output", type=Path, required=True)
    bt.add_argument("--n", type=int, help="variants per record (overrides the records' n)")
    bt.add_argument("--read-text", action="store_true",
                    help="also read each screenshot's signs and banners (OCR; needs the ocr extra)")
    bt.set_defaults(func=cmd_batch)

    be = sub.add_parser("bench", help="speed: PyTorch eager vs ONNX fp32 vs the bundle vs llama.cpp")
    be.add_argument("--reps", type=int, default=5)
    be.add_argument("--out", type=Path, default=Path("docs/figures.md"))
    be.add_argument("--skip-torch", action="store_true")
    be.set_defaults(func=cmd_bench)

    for name, module, help_ in DELEGATED_LIST:
        d = sub.add_parser(name, help=help_, add_help=False)
        d.set_defaults(func=None, module=module, rest=[])
    return p


DELEGATED_LIST = (
        ("serve", "npc_brain.daemon", "run the daemon (ZeroMQ ROUTER)"),
        ("demo", "npc_brain.demo", "build the bundle if missing, start the daemon, hold a short conversation"),
        ("loadtest", "npc_brain.loadtest", "latency/throughput against a running daemon"),
        ("broker", "npc_brain.broker", "scale-out broker: clients connect here, workers behind it"),
        ("relay", "npc_brain.relay", "the protocol over plain loopback TCP (length-prefixed frames) for engines without ZeroMQ"),
        ("replay", "npc_brain.replay", "say recorded traffic (`serve --record`) again and compare: QA regressions"),
        ("keys", "npc_brain.keys", "generate CurveZMQ key pairs"),
        ("data", "npc_brain.data.build", "build the real-dialogue data set (`npc-brain data build`)"),
        ("eval", "npc_brain.evaluate", "evaluation: `eval vision`, `eval lines`"),
        ("train", "npc_brain.train.run", "LoRA fine-tuning of the voice"),
)
DELEGATED = {name for name, _, _ in DELEGATED_LIST}


def main(argv: list[str] | None = None) -> int:
    from npc_brain.bundle import BundleError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Delegated subcommands own their options: split argv at the subcommand ourselves
    # (argparse's REMAINDER drops a leading "--option").
    cut = next((i for i, x in enumerate(argv) if x in DELEGATED), None)
    if cut is not None:
        args = parser.parse_args(argv[:cut + 1])
        args.rest = argv[cut + 1:]
    else:
        args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.func is None:
        rest = list(args.rest)
        if args.cmd == "data" and rest[:1] == ["build"]:
            rest = rest[1:]
        if args.cmd in ("serve", "demo", "loadtest", "replay") and "--bundle" not in rest:
            rest = ["--bundle", str(args.bundle), *rest]
        return _delegate(args.module, rest)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
