"""Record live traffic, replay it against a bundle: QA's regression check when a model changes.

`npc-brain serve --record FILE` appends one JSON line per line the daemon said: the request as
the NPC saw it (sheet, utterance, the scene it used, the history in its prompt, the seed that
gave the line, the client's generation options) and what it answered. A record is a valid
`npc-brain batch` input record, plus an ``expect`` object.

`npc-brain replay FILE [--bundle B]` says every recorded request again and compares:

* on the bundle that recorded it, every line must come back identical (a line depends only on
  its request and seed, not on what else the daemon was doing); anything else is a bug;
* on a new bundle, lines change by design, so the replay reports how many changed and runs the
  judges a game cares about on the new lines (empty, too long, fourth-wall words, the sheet's
  banned words). It fails on judge failures, or on any change with ``--strict``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Sequence

from npc_brain.config import DEFAULT_BUNDLE_DIR

MAX_WORDS = 60


class Recorder:
    """Appends records to a JSONL file, one complete line per write (safe to tail or cut).

    A daemon left recording for days must not fill the disk: once the file passes ``max_bytes`` it
    becomes FILE.1 (FILE.1 becomes FILE.2, ...; FILE.``keep`` is dropped) and a new FILE starts, the
    way logrotate would, so every file is a whole set of records that `npc-brain replay` reads."""

    def __init__(self, path: Path, max_bytes: int = 256 << 20, keep: int = 4):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max(1, int(max_bytes))
        self.keep = max(0, int(keep))
        self._f: IO[str] = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self.count = 0
        # Record ids must stay unique when a restarted daemon appends to the same file (a record file is
        # also `npc-brain batch` input, and batch resumes by id): each run stamps its own.
        self.run = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"p{os.getpid()}"

    def _rotate(self) -> None:
        self._f.close()
        for k in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{k}")
            newer = self.path.with_name(f"{self.path.name}.{k - 1}") if k > 1 else self.path
            if newer.exists():
                newer.replace(older)  # over the oldest, when k == keep
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def line(self, request_id: str, character: dict[str, Any], utterance: str, scene: dict[str, Any],
             history: Sequence[Any], seed: int, options: dict[str, Any], text: str, emotion: str,
             tokens: int, bundle_id: str) -> None:
        rec = {"id": f"{self.run}-{self.count}-{request_id}", "character": character, "utterance": utterance,
               "scene": scene, "history": [{"speaker": t.speaker, "text": t.text} for t in history],
               "seed": seed, "options": options,
               "expect": {"line": text, "emotion": emotion, "tokens": tokens, "bundle_id": bundle_id}}
        data = json.dumps(rec, ensure_ascii=False) + "\n"
        with self._lock:
            if self._f.tell() > 0 and self._f.tell() + len(data.encode("utf-8")) > self.max_bytes:
                self._rotate()
            self._f.write(data)
            self._f.flush()
            self.count += 1

    def close(self) -> None:
        self._f.close()


def judge(line: str, banned: Sequence[str]) -> list[str]:
    """What a game would reject in a line (empty is reported by the caller's fallback check)."""
    from npc_brain.sampler import BannedWords

    problems = []
    if not line.strip():
        problems.append("empty")
    if len(line.split()) > MAX_WORDS:
        problems.append(f"over {MAX_WORDS} words")
    if BannedWords(tuple(banned)).violates(line):
        problems.append("banned or fourth-wall word")
    return problems


def replay(engine, records_path: Path, group: int = 4, progress: bool = True) -> dict[str, Any]:
    """Say every recorded request again; returns counts and one row per record."""
    from tqdm import tqdm

    from npc_brain.batch import RecordError, parse_job, read_records
    from npc_brain.config import OptionsError
    from npc_brain.engine import LineRequest
    from npc_brain.prompt import PromptError

    rows: list[dict[str, Any]] = []
    recorded: set[str] = set()  # the bundles the records were said on
    sheets: dict = {}
    pending: list[tuple[dict, Any]] = []

    def flush() -> None:
        try:
            replies = engine.generate_many([j.request for _, j in pending])
        except PromptError as e:  # a record whose prompt no longer fits (e.g. a bigger persona)
            rows.extend({"id": job.id, "error": str(e), "same": False, "problems": ["unsayable record"]}
                        for _, job in pending)
            pending.clear()
            return
        for (exp, job), rep in zip(pending, replies):
            req = job.request
            banned = engine.banned_words(req.character, req.utterance, req.options or engine.defaults, req.history)
            rows.append({"id": job.id, "old": exp.get("line"), "new": rep.line, "old_emotion": exp.get("emotion"),
                         "new_emotion": rep.emotion, "same": (rep.line, rep.emotion) == (exp.get("line"), exp.get("emotion")),
                         "problems": judge(rep.line, banned)})
        pending.clear()

    for lineno, rec in tqdm(list(read_records(records_path)), desc="replay", unit="line", disable=not progress):
        try:
            if isinstance(rec, RecordError):
                raise rec
            exp = rec.get("expect") or {}
            if not isinstance(exp, dict):
                raise RecordError("BAD_REQUEST", f"line {lineno}: expect must be an object (line, emotion, bundle_id)")
            recorded.add(str(exp.get("bundle_id") or ""))
            job = parse_job(rec, records_path.parent, sheets)
            opts = engine.defaults.validated(job.options)
        except (RecordError, OptionsError) as e:
            rows.append({"id": f"line-{lineno}", "error": str(e), "same": False, "problems": ["unreadable record"]})
            continue
        r = job.request
        job.request = LineRequest(r.character, r.utterance, r.scene, r.history, r.seed, opts)
        pending.append((exp, job))
        if len(pending) >= group:
            flush()
    if pending:
        flush()
    return {"lines": len(rows), "same": sum(r["same"] for r in rows), "changed": sum(not r["same"] for r in rows),
            "problems": sum(bool(r["problems"]) for r in rows), "recorded_bundles": sorted(b for b in recorded if b),
            "bundle": engine.bundle.bundle_id, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="npc-brain replay", description=__doc__.split("\n\n")[0])
    p.add_argument("records", type=Path, help="a file written by `npc-brain serve --record`")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    p.add_argument("-o", "--report", type=Path, help="write one JSON line per record (old, new, problems)")
    p.add_argument("--strict", action="store_true", help="fail when any line changed, not only on judge failures")
    p.add_argument("--show", type=int, default=5, help="changed lines to print")
    a = p.parse_args(argv)
    from npc_brain.engine import Engine

    if not a.records.is_file():
        print(f"error: {a.records} does not exist (record traffic with `npc-brain serve --record FILE`)", file=sys.stderr)
        return 2
    result = replay(Engine.load(a.bundle), a.records)
    if a.report:
        with open(a.report, "w", encoding="utf-8") as f:
            for row in result["rows"]:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    same_bundle = result["recorded_bundles"] == [result["bundle"]]
    print(f"replayed {result['lines']} lines on bundle {result['bundle']} (recorded on "
          f"{', '.join(result['recorded_bundles']) or 'unknown'}): {result['same']} identical, "
          f"{result['changed']} changed, {result['problems']} with problems")
    for row in [r for r in result["rows"] if not r["same"] or r["problems"]][: a.show]:
        print(f"- {row['id']}: {row.get('old')!r} -> {row.get('new', row.get('error'))!r}"
              + (f"  [{', '.join(row['problems'])}]" if row["problems"] else ""))
    if result["problems"] or (result["changed"] and (a.strict or same_bundle)):
        if same_bundle and result["changed"]:
            print("error: lines changed on the bundle that recorded them: determinism is broken", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
