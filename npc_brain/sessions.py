"""Conversation memory per (npc, session): bounded, exportable, optionally on disk.

A game saves a conversation by exporting it (an opaque msgpack blob it can store
in its save file) and restores it with an import. With a state directory the
daemon also keeps every conversation on disk, so a restart loses nothing.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict, deque
from pathlib import Path

import msgpack

from npc_brain.config import LIMITS
from npc_brain.prompt import Turn

STATE_VERSION = 1
MAX_TURNS = LIMITS.max_history_turns
MAX_TEXT = LIMITS.max_history_chars


class StateError(ValueError):
    """An imported session blob is not one we wrote (or is damaged)."""


class SessionStore:
    def __init__(self, max_sessions: int = 10_000, max_turns: int = MAX_TURNS, state_dir: Path | None = None):
        self.max_sessions = max_sessions
        self.max_turns = max_turns
        self.state_dir = state_dir
        self._sessions: OrderedDict[tuple[str, str], deque[Turn]] = OrderedDict()
        if state_dir:
            state_dir.mkdir(parents=True, exist_ok=True)
            for f in sorted(state_dir.glob("*.json")):
                try:
                    data = json.loads(f.read_text())
                    self._sessions[(data["npc"], data["session"])] = deque(
                        (Turn(s, t) for s, t in data["turns"]), maxlen=max_turns)
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # a damaged file costs one conversation, not the daemon

    def history(self, npc: str, session: str) -> list[Turn]:
        turns = self._sessions.get((npc, session))
        if turns is None:
            return []
        self._sessions.move_to_end((npc, session))
        return list(turns)

    def append(self, npc: str, session: str, player: str, npc_line: str) -> None:
        key = (npc, session)
        turns = self._sessions.setdefault(key, deque(maxlen=self.max_turns))
        turns.append(Turn("player", player[:MAX_TEXT]))
        turns.append(Turn("npc", npc_line[:MAX_TEXT]))
        self._sessions.move_to_end(key)
        while len(self._sessions) > self.max_sessions:
            old, _ = self._sessions.popitem(last=False)
            self._forget_file(old)
        self._persist(key)

    def reset(self, npc: str, session: str) -> None:
        self._sessions.pop((npc, session), None)
        self._forget_file((npc, session))

    def export(self, npc: str, session: str) -> bytes:
        turns = [[t.speaker, t.text] for t in self.history(npc, session)]
        return msgpack.packb({"v": STATE_VERSION, "npc": npc, "session": session, "turns": turns}, use_bin_type=True)

    def import_(self, npc: str, session: str, blob: bytes) -> None:
        try:
            data = msgpack.unpackb(blob, raw=False, strict_map_key=True, max_str_len=MAX_TEXT * 4,
                                   max_array_len=MAX_TURNS * 4, max_map_len=8, max_bin_len=0, max_ext_len=0)
        except Exception as e:  # msgpack raises many types for damaged input
            raise StateError(f"session state is not valid msgpack: {e}") from None
        if not isinstance(data, dict) or data.get("v") != STATE_VERSION or not isinstance(data.get("turns"), list):
            raise StateError("session state has an unknown format; export it from this npc-brain version")
        turns = deque(maxlen=self.max_turns)
        for t in data["turns"]:
            if not (isinstance(t, list) and len(t) == 2 and t[0] in ("player", "npc") and isinstance(t[1], str)):
                raise StateError("session state holds a malformed turn")
            turns.append(Turn(t[0], t[1][:MAX_TEXT]))
        self._sessions[(npc, session)] = turns
        self._persist((npc, session))

    # --- disk -------------------------------------------------------------------
    def _file(self, key: tuple[str, str]) -> Path | None:
        return self.state_dir / f"{key[0]}__{key[1]}.json" if self.state_dir else None

    def _persist(self, key: tuple[str, str]) -> None:
        path = self._file(key)
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        turns = [[t.speaker, t.text] for t in self._sessions.get(key, ())]
        tmp.write_text(json.dumps({"npc": key[0], "session": key[1], "turns": turns}))
        os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one

    def _forget_file(self, key: tuple[str, str]) -> None:
        path = self._file(key)
        if path is not None:
            path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._sessions)
