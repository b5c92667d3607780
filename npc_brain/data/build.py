"""``npc-brain data build``: fetch the packages, extract, clean, write.

Outputs under ``out_dir`` (default ``build/data``, git-ignored):
- ``dialogue.jsonl``: one record per NPC line (see ``record.Line``);
- ``characters/<source>__<speaker>.json``: sheets for speakers with >= 5 lines;
- ``stats.json``: counts per source / kind, speakers, timings.
Downloads and extractions are cached (``debs/``, ``raw/``, ``pypi/``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import cataclysm, characters, chitchat, crawl, crossfire, fetch, freedroid, nethack, wesnoth
from .clean import clean_lines
from .record import Line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """A named source: the packages it needs and how to read one of them."""

    name: str
    packages: list[str]
    extract: Callable[[Path, str], Iterator[Line]]  # (extracted root or wheel, package) -> lines
    setting: str
    pypi: bool = False


SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("crossfire", crossfire.PACKAGES, lambda root, _p: crossfire.extract(root), crossfire.SETTING),
    Source("freedroid", freedroid.PACKAGES, lambda root, _p: freedroid.extract(root), freedroid.SETTING),
    Source("cataclysm", cataclysm.PACKAGES, lambda root, _p: cataclysm.extract(root), cataclysm.SETTING),
    Source("wesnoth", wesnoth.PACKAGES, wesnoth.extract, wesnoth.SETTING),
    Source("crawl", crawl.PACKAGES, lambda root, _p: crawl.extract(root), crawl.SETTING),
    Source("nethack", nethack.PACKAGES, lambda root, _p: nethack.extract(root), nethack.SETTING),
    # Last, so game lines win the cross-source dedup.
    Source("chitchat", [chitchat.PACKAGE], lambda wheel, _p: chitchat.extract(wheel), chitchat.SETTING,
           pypi=True),
]}


def _lines_of(source: Source, out_dir: Path, force: bool) -> Iterator[Line]:
    for pkg in source.packages:
        where = fetch.pypi_wheel(pkg, out_dir, force) if source.pypi else fetch.debian_package(pkg, out_dir, force)
        yield from source.extract(where, pkg)


def build_data(out_dir: Path = Path("build/data"), sources: list[str] | None = None,
               force: bool = False) -> Path:
    """Build the dialogue corpus; returns the path of ``dialogue.jsonl``.

    ``sources`` picks by name (see ``SOURCES``; default all). ``force``
    re-downloads and re-extracts instead of using the cache. A source that
    fails is reported in ``stats.json`` (``errors``) and the rest still build.
    """
    names = list(SOURCES) if not sources else sources
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; choose from {list(SOURCES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seen: set[str] = set()
    kept: list[Line] = []
    raw_counts: Counter[str] = Counter()
    timings: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in [n for n in SOURCES if n in names]:  # registry order: chitchat last
        t = time.perf_counter()
        src = SOURCES[name]
        try:
            raw = list(_lines_of(src, out_dir, force))
        except Exception as e:  # noqa: BLE001 - one broken source must not sink the build
            log.error("source %s failed: %s", name, e)
            errors[name] = f"{type(e).__name__}: {e}"
            continue
        raw_counts[name] = len(raw)
        kept.extend(clean_lines(raw, seen))
        timings[name] = round(time.perf_counter() - t, 2)

    out = out_dir / "dialogue.jsonl"
    tmp = out.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for rec in kept:
            f.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(out)

    settings = {pkg: SOURCES[n].setting for n in SOURCES for pkg in SOURCES[n].packages}
    sheets = characters.derive_sheets(kept, settings)
    char_dir = out_dir / "characters"
    char_dir.mkdir(exist_ok=True)
    for old in char_dir.glob("*.json"):
        old.unlink()
    for stem, sheet in sheets.items():
        (char_dir / f"{stem}.json").write_text(json.dumps(sheet, indent=2, ensure_ascii=False) + "\n")

    stats = _stats(kept, raw_counts, sheets, timings, errors, time.perf_counter() - t0)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(format_table(stats))
    return out


def _stats(kept: list[Line], raw_counts: Counter[str], sheets: dict[str, dict],
           timings: dict[str, float], errors: dict[str, str], seconds: float) -> dict:
    per_source: dict[str, dict] = defaultdict(lambda: {"lines": 0, "with_player_line": 0,
                                                        "kinds": Counter(), "speakers": set()})
    for rec in kept:
        s = per_source[rec.source]
        s["lines"] += 1
        s["with_player_line"] += rec.player_line is not None
        s["kinds"][rec.kind] += 1
        s["speakers"].add(rec.speaker)
    sources = {
        src: {"lines": s["lines"], "with_player_line": s["with_player_line"], "kinds": dict(s["kinds"]),
              "speakers": len(s["speakers"]), "licence": next(r.licence for r in kept if r.source == src),
              "characters": sum(1 for sh in sheets.values() if sh["source"] == src)}
        for src, s in sorted(per_source.items())
    }
    return {
        "total_lines": len(kept),
        "per_source": sources,
        "per_kind": dict(Counter(r.kind for r in kept).most_common()),
        "raw_lines_before_cleaning": dict(raw_counts),
        "characters": len(sheets),
        "seconds": round(seconds, 1),
        "seconds_per_source": timings,
        "errors": errors,
    }


def format_table(stats: dict) -> str:
    """A plain-text summary table (one row per package)."""
    rows = [("source", "lines", "w/ player", "speakers", "sheets", "kinds")]
    for src, s in stats["per_source"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(s["kinds"].items(), key=lambda kv: -kv[1]))
        rows.append((src, str(s["lines"]), str(s["with_player_line"]), str(s["speakers"]),
                     str(s["characters"]), kinds))
    rows.append(("total", str(stats["total_lines"]), "", "", str(stats["characters"]),
                 f"built in {stats['seconds']} s"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             + "  " + r[5] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    for name, err in stats["errors"].items():
        lines.append(f"FAILED {name}: {err}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry (wired to ``npc-brain data build``)."""
    p = argparse.ArgumentParser(prog="npc-brain data build", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("build/data"), help="output folder (default build/data)")
    p.add_argument("--sources", type=lambda s: [x.strip() for x in s.split(",") if x.strip()], default=None,
                   help=f"comma-separated subset of: {','.join(SOURCES)}")
    p.add_argument("--force", action="store_true", help="re-download and re-extract everything")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        build_data(args.out, args.sources, args.force)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stats = json.loads((args.out / "stats.json").read_text())
    return 1 if stats["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
