"""Which lines can the persona judge tell apart? Split `eval lines` output by what a line names.

Embeds the sheets and the greedy + sampled lines of an `npc-brain eval lines` JSONL exactly as the
persona top-1 judge does (all-MiniLM-L6-v2, nearest sheet), then reports top-1 for lines that do / do
not hold the speaker's first name, a word of its role (> 3 letters), a word of its setting (> 4
letters), or three words in a row from its sample lines; and top-1 per probe kind.
Run: .venv/bin/python scripts/persona_by_feature.py build/eval_r8/lines_r8_t0.85.jsonl
"""

from __future__ import annotations

import collections
import json
import re
import sys

import numpy as np

from npc_brain.eval_lines import Embedder, sheet_text
from npc_brain.train.examples import load_sheets
from npc_brain.train.voice import voice_of


def features(line: str, sheet) -> dict[str, bool]:
    c, v, low = sheet.character, voice_of(sheet.character), line.lower()
    words = low.split()
    sample = " ".join(c.examples).lower()
    return {
        "first name": v.first.lower() in low,
        "role word": any(w in low for w in re.findall(r"[a-z]+", v.role.lower()) if len(w) > 3),
        "setting word": any(w in low for w in re.findall(r"[a-z]+", (c.setting or "").lower()) if len(w) > 4),
        "sample-line words": any(" ".join(words[i:i + 3]) in sample for i in range(max(0, len(words) - 2))),
    }


def main(path: str) -> None:
    sheets = load_sheets("heldout")
    rows = [r for r in map(json.loads, open(path, encoding="utf-8")) if r.get("mode") in ("greedy", "sampled")]
    embed = Embedder()
    top = np.argmax(embed([r["line"] or "..." for r in rows]) @ embed([sheet_text(s) for s in sheets]).T, axis=1)
    split: dict[tuple[str, bool], list[bool]] = collections.defaultdict(list)
    for t, r in zip(top, rows):
        ok = int(t) == r["sheet_index"]
        split[("kind: " + r["kind"], True)].append(ok)
        for name, has in features(r["line"], sheets[r["sheet_index"]]).items():
            split[(name, has)].append(ok)
    print(f"{path}: {len(rows)} lines, persona top-1 {100 * np.mean(top == [r['sheet_index'] for r in rows]):.0f}%")
    for (name, has), oks in sorted(split.items()):
        label = name if name.startswith("kind") else f"{name}: {'yes' if has else 'no'}"
        print(f"  {label:28} {len(oks):4} lines  top-1 {100 * sum(oks) / len(oks):3.0f}%")


if __name__ == "__main__":
    main(sys.argv[1])
