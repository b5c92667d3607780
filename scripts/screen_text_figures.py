"""What `read_text` (OCR of on-screen text) reads on real captured screenshots, and what it costs.

Flare draws the map's title over its minimap on every frame, so each Flare frame has a known piece of
text: the `title=` line of its map file (the game's own data). Minetest and Wesnoth frames carry interface
text only (plus whatever the maps label); everything kept there is printed so it can be judged by eye.

    python scripts/screen_text_figures.py [--games flare minetest wesnoth] [--per-game 0 (all)] [--lines 20]

`--lines N`: on N Flare frames of different maps, the NPC (the sample sheets in turn, greedy) is asked
"Where are we?" with and without `read_text`; a line names the place if it has a word of the title.

Needs captured frames (`python scripts/capture_screens.py GAME`) and the ocr extra.
"""

from __future__ import annotations

import argparse
import collections
import glob
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_brain.eval_vision import load_real  # noqa: E402
from npc_brain.screen_text import TextReader  # noqa: E402

FLARE_MODS = Path("/usr/share/games/flare/mods")


def flare_title(map_file: str) -> str | None:
    """The `title=` of a Flare map, from the installed game data."""
    for path in sorted(glob.glob(str(FLARE_MODS / "*" / "maps" / map_file))):
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith("title="):
                return line.split("=", 1)[1].strip()
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--games", nargs="*", default=["flare", "minetest", "wesnoth"])
    ap.add_argument("--per-game", type=int, default=0, help="every k-th frame so that about N are read (0: all)")
    ap.add_argument("--lines", type=int, default=0, help="also ask the NPC where it is on this many Flare frames")
    ap.add_argument("--bundle", type=Path, default=ROOT / "build" / "bundle")
    a = ap.parse_args()
    if a.lines:
        lines_name_the_place(a.bundle, a.lines)
    reader = TextReader(threads=1)
    ms: list[float] = []
    for game in a.games:
        images, labels, paths = load_real(game)
        step = max(1, len(images) // a.per_game) if a.per_game else 1
        kept_counts: collections.Counter[str] = collections.Counter()
        hits = loose = known = frames_with_text = 0
        for img, path in list(zip(images, paths))[::step]:
            t0 = time.perf_counter()
            got = reader.read(img)
            ms.append((time.perf_counter() - t0) * 1000)
            frames_with_text += bool(got)
            truth = flare_title(_flare_map(path)) if game == "flare" else None
            if truth:
                known += 1
                hits += truth.lower() in [t.lower() for t in got]
                loose += _letters(truth) in [_letters(t) for t in got]  # the words, whatever the spacing
                got = [t for t in got if _letters(t) != _letters(truth)]
            kept_counts.update(got)
        n = len(images[::step])
        line = f"{game}: {n} frames, {frames_with_text} with text kept"
        if known:
            line += f"; map title read exactly on {hits} of {known}, its letters on {loose}"
        print(line)
        print(f"  other text kept ({sum(kept_counts.values())}): {kept_counts.most_common(15)}")
    if not ms:
        return 0
    ms.sort()
    print(f"OCR per screenshot (1 ONNX thread, {len(ms)} frames): median {statistics.median(ms):.0f} ms, "
          f"p10 {ms[len(ms) // 10]:.0f}, p90 {ms[(9 * len(ms)) // 10]:.0f}")
    return 0


def lines_name_the_place(bundle: Path, n: int) -> None:
    import io

    from PIL import Image

    from npc_brain.character import load_character
    from npc_brain.config import GenerationOptions
    from npc_brain.engine import Engine, LineRequest

    engine = Engine.load(bundle, threads=2)
    sheets = [load_character(p) for p in sorted((ROOT / "samples" / "characters").glob("*.yaml"))]
    images, _, paths = load_real("flare")
    seen_maps: set[str] = set()
    named = {True: 0, False: 0}
    shown = []
    for img, path in zip(images, paths):
        title = flare_title(_flare_map(path))
        if not title or title in seen_maps:
            continue
        seen_maps.add(title)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        sheet = sheets[len(seen_maps) % len(sheets)]
        words = {w for w in _letters_words(title) if len(w) >= 4}
        for read in (True, False):
            scene = engine.see(buf.getvalue(), read_text=read)
            rep = engine.generate(LineRequest(sheet, "Where are we?", scene, (), 1, GenerationOptions(temperature=0.0)))
            hit = bool(words & set(_letters_words(rep.line)))
            named[read] += hit
            if read and len(shown) < 6:
                shown.append(f"  {title!r}: read {scene.get('text')} -> {sheet.name}: {rep.line!r} ({'names it' if hit else 'no'})")
        if len(seen_maps) >= n:
            break
    print(f"'Where are we?' on {len(seen_maps)} Flare maps: the line names the place {named[True]} times with "
          f"read_text, {named[False]} without")
    print("\n".join(shown))


def _letters_words(text: str) -> list[str]:
    return ["".join(ch for ch in w if ch.isalnum()) for w in text.lower().split()]


def _letters(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _flare_map(path: str) -> str:
    """flare_s1_abandoned_mines_0.png -> abandoned_mines.txt (the capture's file naming)."""
    stem = Path(path).stem.split("_", 2)[2]
    return stem.rsplit("_", 1)[0] + ".txt"


if __name__ == "__main__":
    sys.exit(main())
