"""`npc-brain batch IN -o OUT`: lines in bulk for writers, QA and evaluation.

Contract (DESIGN.md): one request per input record (JSONL or CSV)::

    {"id", "character": <sheet object or path>, "utterance", "scene"?: {tag: value},
     "screenshot"?: path, "read_text"?: bool, "history"?: [{"speaker", "text"}], "seed"?: int, "n"?: int,
     "options"?: {generation option: value}}

(``read_text``: also read the screenshot's signs and banners with OCR, as ``--read-text`` does for
every record; needs the ``ocr`` extra.)

and one output record per variant::

    {"id", "variant", "line", "emotion", "scene", "seed", "timing_ms"}

A record that cannot run gets ``{"id", "variant": null, "error": {"code", "message"}}``
and the rest still run. Re-running skips ids already in OUT, and a half-written
last record (a killed run) is cut off before appending, so OUT is never corrupt.
Seeds: variant k uses ``seed + k``; with no seed, the seed derives from the id,
so the same file and bundle always give the same lines.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from npc_brain.character import Character, CharacterError, load_character
from npc_brain.config import OptionsError
from npc_brain.engine import Engine, LineRequest
from npc_brain.prompt import PromptError, clean_utterance, parse_history

MAX_N = 16
MAX_RECORD_BYTES = 1024 * 1024
OUT_FIELDS = ["id", "variant", "line", "emotion", "scene", "seed", "timing_ms", "error"]


class RecordError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Job:
    id: str
    request: LineRequest
    n: int
    screenshot: Path | None
    options: dict[str, Any] | None = None  # generation overrides, checked against the bundle's defaults
    read_text: bool | None = None  # OCR the screenshot too (None: the run's --read-text)


def _fmt(path: Path) -> str:
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | RecordError]]:
    """(line number, record or the reason it is unreadable)."""
    if _fmt(path) == "csv":
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for i, row in enumerate(csv.DictReader(f), start=2):
                yield i, {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        return
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            if len(raw) > MAX_RECORD_BYTES:
                yield i, RecordError("TOO_LARGE", f"line {i} is {len(raw)} bytes; the limit is {MAX_RECORD_BYTES}")
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                yield i, RecordError("BAD_REQUEST", f"line {i} is not valid JSON: {e}")
                continue
            yield i, rec if isinstance(rec, dict) else RecordError("BAD_REQUEST", f"line {i} is not a JSON object")


def _json_field(rec: dict, key: str) -> Any:
    """CSV cells carry objects as JSON text; `scene` may also be `k=v;k=v`."""
    v = rec.get(key)
    if not isinstance(v, str):
        return v
    v = v.strip()
    if v[:1] in "{[":
        try:
            return json.loads(v)
        except json.JSONDecodeError as e:
            raise RecordError("BAD_REQUEST", f"{key} is not valid JSON: {e}") from e
    if key == "scene":
        return dict(p.split("=", 1) for p in v.split(";") if "=" in p)
    return v


def seed_for(record_id: str, seed: Any) -> int:
    if seed is None or seed == "":
        return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:4], "little")
    try:
        s = int(seed)
    except (TypeError, ValueError):
        raise RecordError("BAD_REQUEST", f"seed must be an integer, got {seed!r}") from None
    if not 0 <= s < 2**63:
        raise RecordError("BAD_REQUEST", "seed must be in [0, 2^63)")
    return s


def parse_job(rec: dict[str, Any], base: Path, sheets: dict[str, Character]) -> Job:
    rid = rec.get("id")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or not str(rid) or len(str(rid)) > 128:
        raise RecordError("BAD_REQUEST", "every record needs an id (string or integer, up to 128 characters)")
    rid = str(rid)
    ch = _json_field(rec, "character")
    try:
        if isinstance(ch, str):
            p = (base / ch) if not os.path.isabs(ch) else Path(ch)
            key = str(p.resolve())
            if key not in sheets:
                sheets[key] = load_character(p)
            character = sheets[key]
        elif isinstance(ch, dict):
            character = load_character(ch)
        else:
            raise RecordError("BAD_REQUEST", "character must be a sheet object or a path to one")
        utterance = clean_utterance(rec.get("utterance"))
        history = parse_history(_json_field(rec, "history"))
    except CharacterError as e:
        raise RecordError("BAD_CHARACTER", str(e)) from e
    except PromptError as e:
        raise RecordError("BAD_REQUEST", str(e)) from e
    scene = _json_field(rec, "scene") or {}
    if not isinstance(scene, dict):
        raise RecordError("BAD_REQUEST", "scene must be an object of tag: value")
    n = rec.get("n", 1)
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise RecordError("BAD_REQUEST", f"n must be an integer, got {n!r}") from None
    if not 1 <= n <= MAX_N:
        raise RecordError("BAD_REQUEST", f"n must be between 1 and {MAX_N}")
    shot = rec.get("screenshot")
    shot_path = ((base / shot) if not os.path.isabs(shot) else Path(shot)) if isinstance(shot, str) else None
    options = _json_field(rec, "options")
    if options is not None and not isinstance(options, dict):
        raise RecordError("BAD_REQUEST", "options must be an object of generation option: value")
    read_text = _json_field(rec, "read_text")
    if isinstance(read_text, str) and read_text.strip().lower() in ("true", "false", ""):  # a CSV cell
        read_text = {"true": True, "false": False}.get(read_text.strip().lower())
    if read_text is not None and not isinstance(read_text, bool):
        raise RecordError("BAD_REQUEST", "read_text must be true or false")
    req = LineRequest(character, utterance, scene, tuple(history), seed_for(rid, rec.get("seed")))
    return Job(rid, req, n, shot_path, options, read_text)


class OutFile:
    """Append-only output that survives being killed mid-write."""

    def __init__(self, path: Path):
        self.path = path
        self.fmt = _fmt(path)
        self.done: set[str] = set()
        if path.exists():
            self._repair_and_scan()
        new = not path.exists() or path.stat().st_size == 0
        self.f = open(path, "a", newline="", encoding="utf-8")
        if self.fmt == "csv":
            self.writer = csv.DictWriter(self.f, fieldnames=OUT_FIELDS)
            if new:
                self.writer.writeheader()
                self.f.flush()

    def _repair_and_scan(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # a killed run left half a record: cut it off
            data = data[: data.rfind(b"\n") + 1]
            with open(self.path, "r+b") as f:
                f.truncate(len(data))
        text = data.decode("utf-8", errors="replace")
        rows = csv.DictReader(io.StringIO(text)) if self.fmt == "csv" else (
            json.loads(line) for line in text.splitlines() if line.strip())
        for row in rows:
            if isinstance(row, dict) and row.get("id") is not None:
                self.done.add(str(row["id"]))

    def write(self, rec: dict[str, Any]) -> None:
        if self.fmt == "csv":
            self.writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in rec.items()})
        else:
            self.f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def run_batch(engine: Engine, src: Path, dst: Path, n_override: int | None = None, group: int = 4,
              progress: bool = True, read_text: bool = False) -> dict[str, int]:
    """Run every record of `src` into `dst`; returns counts (written, skipped, errors)."""
    from tqdm import tqdm

    out = OutFile(dst)
    sheets: dict[str, Character] = {}
    counts = {"lines": 0, "skipped": 0, "errors": 0}
    records = list(read_records(src))
    pending: list[tuple[Job, int]] = []

    def flush() -> None:
        if not pending:
            return
        reqs = [replace(j.request, seed=j.request.seed + k) for j, k in pending]
        try:
            replies = engine.generate_many(reqs)
        except PromptError as e:
            replies = [e] * len(pending)
        for (job, k), rep in zip(pending, replies):
            if isinstance(rep, Exception):
                out.write({"id": job.id, "variant": k, "error": {"code": "BAD_REQUEST", "message": str(rep)}})
                counts["errors"] += 1
                continue
            out.write({"id": job.id, "variant": k, "line": rep.line, "emotion": rep.emotion, "scene": rep.scene,
                       "seed": rep.seed, "timing_ms": round(rep.timings["total_ms"], 1)})
            counts["lines"] += 1
        pending.clear()

    bar = tqdm(records, desc="batch", unit="rec", disable=not progress)
    for lineno, rec in bar:
        rid = str(rec.get("id")) if isinstance(rec, dict) and rec.get("id") is not None else None
        if rid is not None and rid in out.done:
            counts["skipped"] += 1
            continue
        try:
            if isinstance(rec, RecordError):
                raise rec
            job = parse_job(rec, src.parent, sheets)
            if job.options:
                job.request = replace(job.request, options=engine.defaults.validated(job.options))
            if job.screenshot is not None:
                job = _with_vision(engine, job, read_text if job.read_text is None else job.read_text)
        except (RecordError, OptionsError) as e:
            code = getattr(e, "code", "BAD_REQUEST")
            out.write({"id": rid if rid is not None else f"line-{lineno}", "variant": None,
                       "error": {"code": code, "message": str(e)}})
            counts["errors"] += 1
            continue
        for k in range(n_override or job.n):
            pending.append((job, k))
            if len(pending) >= group:
                flush()
    flush()
    out.close()
    return counts


def _with_vision(engine: Engine, job: Job, read_text: bool = False) -> Job:
    from npc_brain.screen_text import TextReaderUnavailable
    from npc_brain.vision import ImageError

    try:
        data = job.screenshot.read_bytes() if job.screenshot.stat().st_size <= 64 * 1024 * 1024 else b""
    except OSError as e:
        raise RecordError("BAD_IMAGE", f"cannot read screenshot {job.screenshot}: {e}") from e
    try:
        scene = engine.see(data, engine_tags=job.request.scene, read_text=read_text)
    except TextReaderUnavailable as e:
        raise RecordError("BAD_REQUEST", str(e)) from e
    except ImageError as e:
        if job.request.scene:  # the engine's tags still describe the scene
            return job
        raise RecordError(e.code, f"screenshot {job.screenshot.name}: {e}") from e
    return replace(job, request=replace(job.request, scene=scene), screenshot=None)
