"""Short on-screen text (signs, place banners, quest titles) read from a screenshot with OCR.

Optional and off by default: it needs the ``ocr`` extra (``pip install 'npc-brain[ocr]'``, which brings
``rapidocr-onnxruntime`` and its PP-OCR ONNX models) and costs about 300 ms a screenshot on 2 CPU cores,
more than a line's whole vision budget, so a game asks for it per screenshot (``read_text``) when the
words on screen matter: a tavern sign, the name of the map just entered, a wanted poster.

What OCR finds on a game screen is mostly interface: "Menu", "End Turn", "0/200", "HP", chat and server
lines. ``keep_text`` keeps what an NPC could remark on: confident, Latin-script, mostly letters, short,
not a common interface word. The few that are left go to the prompt as the ``text`` scene tag, larger
lettering first (titles and signs are drawn big; counters and chat small).
"""

from __future__ import annotations

import importlib.util
import re
import threading
from typing import Any

import numpy as np

MAX_TEXTS = 3  # at most this many pieces of text reach the prompt
MAX_WORDS = 12  # longer lines are chat, logs or paragraphs of UI, not a sign
MAX_CHARS = 64  # as a scene value (scene.MAX_CHARS)
MIN_SCORE = 0.8  # recogniser confidence below this is mostly misread lettering
# Words and phrases that game interfaces print on nearly every screen; an NPC has nothing to say about them.
# Chosen from what OCR read on Flare, Minetest and Wesnoth frames plus the usual menu words, so those games'
# figures are not blind to this list (docs/figures_vision.md).
UI_WORDS = frozenset("""
menu
main menu
actions
end turn
options
settings
inventory
quit
exit
pause
paused
resume
save
load
loading
save game
load game
game saved
quest added
quest updated
quest complete
quest completed
level up
new game
continue
back
cancel
ok
map
hp
xp
mp
def
atk
health
mana
stamina
gold
score
turn
help
close
equip
skills
stats
character
journal
chat
controls
keyboard
mouse
audio
video
save exit
""".strip().splitlines())  # one word or phrase a line

_WORD = re.compile(r"[^\W\d_]+")
_UI_LETTERS = frozenset("".join(_WORD.findall(w)) for w in UI_WORDS)
_LATIN_MAX = 0x24F  # Basic Latin .. Latin Extended-B: the voice is an English model


class TextReaderUnavailable(RuntimeError):
    """OCR was asked for but the ``ocr`` extra is not installed here."""


def available() -> bool:
    """Whether this installation can read on-screen text (the ``ocr`` extra is installed)."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


_JOINED = re.compile(r"(?<=[a-z]{2})(?=[A-Z][a-z]{2})")  # "BlackOakFarm": small lettering loses its spaces
_AFTER_MARK = re.compile(r"(?<=[a-z][.:,;])(?=[A-Z])")  # "St.Maria:Catacombs"


def _normalise(text: str) -> str:
    """Spaces the recogniser dropped put back where the case or a mark says so, then cut to MAX_CHARS."""
    text = " ".join(str(text).split())
    text = _AFTER_MARK.sub(" ", _JOINED.sub(" ", text))
    if len(text) > MAX_CHARS:  # cut at a word boundary
        text = text[:MAX_CHARS].rsplit(" ", 1)[0]
    return text.strip(" ,;:-")


def keep_text(text: str, score: float) -> bool:
    """Whether one recognised piece of text is worth telling the NPC (see the module docstring)."""
    text = " ".join(str(text).split())
    if score < MIN_SCORE or not text:
        return False
    if not (text[0].isalnum() or text[0] in "\"'“‘("):
        return False  # "#Server: ...", "***Ann joined", "[12:01] ...": logs and chat
    letters = [ch for ch in text if ch.isalpha()]
    visible = [ch for ch in text if not ch.isspace()]
    if len(letters) < 3 or len(letters) < 0.6 * len(visible):
        return False  # "0/200", "04:34", "x3"
    if any(ord(ch) > _LATIN_MAX for ch in letters):
        return False  # a misread glyph from the recogniser's other scripts, or text the voice cannot read
    if len(text.split()) > MAX_WORDS:
        return False
    return "".join(_WORD.findall(text.lower())) not in _UI_LETTERS  # "Gamesaved." is "Game saved."


class TextReader:
    """Reads short text from an RGB screenshot (HxWx3 uint8). One instance per process; thread-safe."""

    def __init__(self, threads: int = 1):
        if not available():
            raise TextReaderUnavailable(
                "reading on-screen text needs the ocr extra: pip install 'npc-brain[ocr]'")
        from rapidocr_onnxruntime import RapidOCR

        per_model = {f"{m}.intra_op_num_threads": max(1, int(threads)) for m in ("Det", "Cls", "Rec")}
        # no angle classifier: game text is upright, and it costs a model run per box
        self._ocr = RapidOCR(**{"Global.use_cls": False, **per_model})
        self._lock = threading.Lock()

    def read(self, pixels: np.ndarray) -> list[str]:
        """The pieces of text worth telling the NPC, largest lettering first, at most MAX_TEXTS."""
        bgr = np.ascontiguousarray(pixels[:, :, 2::-1])  # the OCR models were trained on OpenCV's BGR
        with self._lock:
            found, _ = self._ocr(bgr)
        return pick_texts(found or [])


def pick_texts(found: list[Any]) -> list[str]:
    """OCR results ([box, text, score], box = 4 corner points) -> kept texts, tallest first, no repeats."""
    kept: list[tuple[float, str]] = []
    for box, text, score in found:
        if keep_text(text, float(score)):
            height = float(np.ptp(np.asarray(box, dtype=np.float32)[:, 1]))
            kept.append((height, _normalise(text)))
    out: list[str] = []
    for _, text in sorted(kept, key=lambda x: -x[0]):
        if text and text.lower() not in (t.lower() for t in out):
            out.append(text)
    return out[:MAX_TEXTS]
