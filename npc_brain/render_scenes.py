"""Procedural game-like screenshots with exact scene labels (numpy + Pillow only).

``render_sample(seed)`` draws one screenshot and returns ``(HxWx3 uint8, labels)`` where labels maps
every tag of ``SCENE_VOCAB`` to its value (a list for multi-label tags) or ``None`` when the picture
cannot show it (weather indoors, time of day in a windowless room, player state without a HUD).

Variety, so a head trained on these learns the vocabulary rather than one look: three camera styles
(perspective with a horizon, top-down, isometric), pixel-art upscaling or smooth rendering, many
resolutions, four HUD layouts (bars, hearts + hotbar, health orb, centred bars), rain / snow / fog /
storm particles, day / dusk / night lighting with torch and fire glow, and creature silhouettes; plus
first-person block worlds (rooms seen from inside, voxel outdoors), a grey-blue twilight next to the
orange one, and maps floating in a black void (these draw from their own random stream, so the seeds
that do not use them render exactly as before they were added).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from npc_brain.scene import INDOOR_PLACES, OUTDOOR_PLACES, SCENE_VOCAB

RESOLUTIONS = [(320, 240), (640, 360), (640, 480), (800, 600), (960, 540), (1024, 576),
               (1280, 720), (1024, 768), (854, 480)]

SKY = {  # top colour, horizon colour
    "day": ((70, 130, 220), (170, 210, 245)),
    "dusk": ((60, 50, 110), (250, 140, 70)),
    "night": ((5, 8, 25), (25, 35, 70)),
}
TINT = {"day": (1.0, 1.0, 1.0), "dusk": (0.95, 0.62, 0.45), "night": (0.18, 0.22, 0.38)}
# the other twilight: a dim, grey-blue sky and cool, washed-out light instead of an orange sunset
TWILIGHT_SKY, TWILIGHT_TINT = ((80, 95, 130), (150, 150, 168)), (0.55, 0.6, 0.72)
GROUND = {
    "forest": [(40, 110, 40), (60, 90, 35)], "town": [(130, 125, 115), (110, 100, 90)],
    "field": [(110, 170, 60), (170, 160, 70)], "desert": [(220, 190, 120), (200, 165, 100)],
    "snow": [(235, 240, 250), (210, 220, 235)], "beach": [(230, 210, 150), (215, 195, 140)],
    "mountain": [(120, 115, 110), (95, 95, 95)], "sea": [(30, 80, 150), (40, 100, 170)],
}
INDOOR = {  # wall, floor, accent
    "tavern": ((120, 80, 45), (90, 60, 35), (160, 110, 60)),
    "shop": ((150, 120, 85), (110, 85, 60), (180, 150, 90)),
    "house": ((180, 160, 130), (120, 90, 60), (200, 190, 170)),
    "dungeon": ((80, 80, 85), (60, 60, 65), (100, 100, 105)),
    "cave": ((85, 70, 60), (65, 55, 48), (110, 95, 80)),
    "castle_hall": ((140, 135, 130), (100, 90, 85), (150, 30, 35)),
}
WINDOWED = ("tavern", "shop", "house", "castle_hall")


class _Draw(ImageDraw.ImageDraw):
    """ImageDraw that accepts boxes given in any corner order (tiny shapes may invert)."""

    @staticmethod
    def _box(xy):
        (x0, y0, x1, y1) = xy
        return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]

    def rectangle(self, xy, *args, **kwargs):
        return super().rectangle(self._box(xy), *args, **kwargs)

    def ellipse(self, xy, *args, **kwargs):
        return super().ellipse(self._box(xy), *args, **kwargs)

    def arc(self, xy, *args, **kwargs):
        return super().arc(self._box(xy), *args, **kwargs)


def Draw(img):  # noqa: N802 - mirrors ImageDraw.Draw
    return _Draw(img)


def _jitter(rng: np.random.Generator, color, amount: int = 20) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)


def sample_labels(rng: np.random.Generator) -> dict[str, Any]:
    outdoor = rng.random() < 0.55
    place = str(rng.choice(OUTDOOR_PLACES if outdoor else INDOOR_PLACES))
    time = str(rng.choice(SCENE_VOCAB["time"]))
    weather = None
    if outdoor:
        probs = [0.36, 0.16, 0.16, 0.16, 0.16]
        if place == "snow":
            probs = [0.3, 0.05, 0.45, 0.1, 0.1]
        if place == "desert":
            probs = [0.6, 0.05, 0.0, 0.2, 0.15]
        weather = str(rng.choice(SCENE_VOCAB["weather"], p=probs))
    danger = [d for d, p in (("fire", 0.22), ("combat", 0.22)) if rng.random() < p]
    creatures = [c for c in SCENE_VOCAB["creatures"] if rng.random() < (0.06 if c == "dragon" else 0.14)]
    if place == "sea":
        creatures = [c for c in creatures if c in ("dragon",)]
    return {"place": place, "setting": "outdoor" if outdoor else "indoor", "time": time,
            "weather": weather, "danger": danger, "creatures": creatures, "player": None}


# ---------------------------------------------------------------- drawing helpers

def _gradient(h: int, w: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    arr = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.broadcast_to(arr, (h, w, 3)).copy()


def _noise(rng, h, w, scale: float, cells: int = 8) -> np.ndarray:
    small = rng.random((cells, max(2, int(cells * w / max(h, 1))))).astype(np.float32)
    im = Image.fromarray((small * 255).astype(np.uint8), "L").resize((w, h), Image.BILINEAR)
    return (np.asarray(im, np.float32) / 255.0 - 0.5) * scale


def _tree(d, x, y, s, rng, snowy=False, style=0):
    trunk = _jitter(rng, (90, 60, 30))
    d.rectangle([x - s * 0.08, y - s * 0.5, x + s * 0.08, y], fill=trunk)
    leaf = _jitter(rng, (30, 100, 35) if not snowy else (40, 80, 50), 25)
    if style == 0:  # conifer
        for k in range(3):
            top = y - s * (0.5 + 0.35 * k) - s * 0.5
            d.polygon([(x, top), (x - s * (0.45 - 0.1 * k), top + s * 0.7),
                       (x + s * (0.45 - 0.1 * k), top + s * 0.7)], fill=leaf)
            if snowy:
                d.polygon([(x, top), (x - s * 0.12, top + s * 0.18), (x + s * 0.12, top + s * 0.18)],
                          fill=(240, 245, 250))
    elif style == 1:  # round crown
        d.ellipse([x - s * 0.45, y - s * 1.3, x + s * 0.45, y - s * 0.4], fill=leaf)
    else:  # blocky crown
        d.rectangle([x - s * 0.4, y - s * 1.2, x + s * 0.4, y - s * 0.45], fill=leaf)


def _house(d, x, y, s, rng):
    wall = _jitter(rng, (180, 160, 130), 30)
    roof = _jitter(rng, (140, 50, 40), 30)
    d.rectangle([x - s * 0.6, y - s, x + s * 0.6, y], fill=wall)
    d.polygon([(x - s * 0.75, y - s), (x, y - s * 1.6), (x + s * 0.75, y - s)], fill=roof)
    d.rectangle([x - s * 0.12, y - s * 0.45, x + s * 0.12, y], fill=(80, 50, 30))
    for wx in (-0.38, 0.38):
        d.rectangle([x + s * (wx - 0.1), y - s * 0.8, x + s * (wx + 0.1), y - s * 0.6],
                    fill=(200, 190, 120))


def _creature(d, kind, x, y, s, rng):
    if kind == "wolves":
        for k in range(int(rng.integers(1, 4))):
            cx, col = x + k * s * 1.3, _jitter(rng, (95, 95, 100), 25)
            d.ellipse([cx - s * 0.5, y - s * 0.55, cx + s * 0.4, y - s * 0.2], fill=col)  # body
            d.polygon([(cx + s * 0.3, y - s * 0.5), (cx + s * 0.75, y - s * 0.55),
                       (cx + s * 0.45, y - s * 0.3)], fill=col)  # head
            d.polygon([(cx + s * 0.35, y - s * 0.5), (cx + s * 0.42, y - s * 0.75),
                       (cx + s * 0.5, y - s * 0.52)], fill=col)  # ear
            d.line([(cx - s * 0.45, y - s * 0.45), (cx - s * 0.8, y - s * 0.6)], fill=col,
                   width=max(1, int(s * 0.08)))  # tail
            for lx in (-0.35, -0.2, 0.15, 0.28):
                d.line([(cx + s * lx, y - s * 0.3), (cx + s * lx, y)], fill=col,
                       width=max(1, int(s * 0.07)))
            d.point([(cx + s * 0.55, y - s * 0.48)], fill=(255, 230, 60))
    elif kind == "undead":
        for k in range(int(rng.integers(1, 4))):
            cx = x + k * s * 0.8
            col = (225, 220, 200) if rng.random() < 0.6 else _jitter(rng, (110, 150, 90), 20)
            w = max(1, int(s * 0.07))
            d.ellipse([cx - s * 0.13, y - s * 1.25, cx + s * 0.13, y - s * 0.98], fill=col)
            d.ellipse([cx - s * 0.07, y - s * 1.17, cx - s * 0.02, y - s * 1.1], fill=(20, 10, 10))
            d.ellipse([cx + s * 0.02, y - s * 1.17, cx + s * 0.07, y - s * 1.1], fill=(20, 10, 10))
            d.line([(cx, y - s * 0.98), (cx, y - s * 0.5)], fill=col, width=w)
            for r in range(3):
                d.line([(cx - s * 0.12, y - s * (0.9 - 0.1 * r)), (cx + s * 0.12, y - s * (0.9 - 0.1 * r))],
                       fill=col, width=max(1, w // 2))
            d.line([(cx, y - s * 0.88), (cx + s * 0.35, y - s * 0.95)], fill=col, width=w)  # reaching arm
            d.line([(cx, y - s * 0.88), (cx - s * 0.3, y - s * 0.6)], fill=col, width=w)
            d.line([(cx, y - s * 0.5), (cx - s * 0.15, y)], fill=col, width=w)
            d.line([(cx, y - s * 0.5), (cx + s * 0.15, y)], fill=col, width=w)
    elif kind == "dragon":
        col = _jitter(rng, (150, 40, 30) if rng.random() < 0.6 else (50, 110, 50), 30)
        s2, cy = s * 2.2, y - s * (1.5 if rng.random() < 0.5 else 0.4)
        d.ellipse([x - s2 * 0.45, cy - s2 * 0.2, x + s2 * 0.35, cy + s2 * 0.12], fill=col)
        d.polygon([(x - s2 * 0.1, cy - s2 * 0.1), (x - s2 * 0.6, cy - s2 * 0.8), (x - s2 * 0.35, cy - s2 * 0.45),
                   (x - s2 * 0.15, cy - s2 * 0.7), (x + s2 * 0.1, cy - s2 * 0.1)], fill=col)  # wing
        d.line([(x + s2 * 0.3, cy - s2 * 0.05), (x + s2 * 0.55, cy - s2 * 0.35)], fill=col,
               width=max(2, int(s2 * 0.09)))  # neck
        d.polygon([(x + s2 * 0.5, cy - s2 * 0.42), (x + s2 * 0.78, cy - s2 * 0.36),
                   (x + s2 * 0.52, cy - s2 * 0.28)], fill=col)  # head
        d.line([(x - s2 * 0.4, cy), (x - s2 * 0.85, cy + s2 * 0.15)], fill=col,
               width=max(2, int(s2 * 0.06)))  # tail
        if rng.random() < 0.4:
            d.polygon([(x + s2 * 0.78, cy - s2 * 0.36), (x + s2 * 1.2, cy - s2 * 0.5),
                       (x + s2 * 1.2, cy - s2 * 0.2)], fill=(255, 150, 30))  # breath
    elif kind == "soldiers":
        for k in range(int(rng.integers(1, 5))):
            cx = x + k * s * 0.55
            armour = _jitter(rng, (150, 150, 160), 20)
            tabard = _jitter(rng, (150, 30, 30) if rng.random() < 0.5 else (30, 50, 140), 20)
            w = max(1, int(s * 0.08))
            d.rectangle([cx - s * 0.14, y - s * 0.95, cx + s * 0.14, y - s * 0.45], fill=tabard)
            d.ellipse([cx - s * 0.11, y - s * 1.2, cx + s * 0.11, y - s * 0.97], fill=armour)
            d.polygon([(cx - s * 0.13, y - s * 1.12), (cx, y - s * 1.3), (cx + s * 0.13, y - s * 1.12)],
                      fill=armour)  # helmet
            d.line([(cx - s * 0.07, y - s * 0.45), (cx - s * 0.1, y)], fill=armour, width=w)
            d.line([(cx + s * 0.07, y - s * 0.45), (cx + s * 0.1, y)], fill=armour, width=w)
            d.line([(cx + s * 0.22, y - s * 1.5), (cx + s * 0.22, y)], fill=(120, 90, 50), width=max(1, w // 2))
            d.polygon([(cx + s * 0.22, y - s * 1.62), (cx + s * 0.17, y - s * 1.48),
                       (cx + s * 0.27, y - s * 1.48)], fill=(200, 200, 210))  # spear tip
            d.ellipse([cx - s * 0.3, y - s * 0.9, cx - s * 0.05, y - s * 0.5], fill=tabard,
                      outline=armour)  # shield


def _fire(d, x, y, s, rng):
    for _ in range(int(rng.integers(4, 9))):
        fx = x + rng.normal(0, s * 0.3)
        fh = s * rng.uniform(0.6, 1.4)
        fw = s * rng.uniform(0.15, 0.3)
        col = (255, int(rng.integers(80, 200)), int(rng.integers(0, 40)))
        d.polygon([(fx - fw, y), (fx + rng.normal(0, fw * 0.5), y - fh), (fx + fw, y)], fill=col)
        d.polygon([(fx - fw * 0.5, y), (fx, y - fh * 0.55), (fx + fw * 0.5, y)], fill=(255, 240, 120))
    for _ in range(int(rng.integers(2, 5))):
        sx, sy = x + rng.normal(0, s * 0.4), y - s * rng.uniform(1.3, 2.4)
        r = s * rng.uniform(0.2, 0.45)
        g = int(rng.integers(40, 90))
        d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(g, g, g))


def _glow(arr: np.ndarray, x: float, y: float, radius: float, color, strength: float) -> None:
    h, w = arr.shape[:2]
    x0, x1 = int(max(0, x - radius)), int(min(w, x + radius))
    y0, y1 = int(max(0, y - radius)), int(min(h, y + radius))
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    fall = np.clip(1.0 - np.hypot(xx - x, yy - y) / radius, 0, 1) ** 2 * strength
    arr[y0:y1, x0:x1] += fall[..., None] * np.asarray(color, np.float32)


# ---------------------------------------------------------------- scene layers

def _outdoor_persp(rng, W, H, lab, twilight: bool = False):
    place, time = lab["place"], lab["time"]
    horizon = int(H * rng.uniform(0.3, 0.55))
    top, bottom = TWILIGHT_SKY if twilight else SKY[time]
    if lab["weather"] in ("rain", "storm", "fog", "snow"):
        grey = np.asarray((120, 125, 135) if time == "day" else (60, 60, 70) if time == "dusk" else (20, 22, 30))
        top = tuple((np.asarray(top) * 0.35 + grey * 0.65).astype(int))
        bottom = tuple((np.asarray(bottom) * 0.45 + grey * 0.55).astype(int))
    sky = _gradient(horizon, W, _jitter(rng, top, 12), _jitter(rng, bottom, 12))
    ground_col = GROUND[place]
    ground = _gradient(H - horizon, W, _jitter(rng, ground_col[1]), _jitter(rng, ground_col[0]))
    ground += _noise(rng, H - horizon, W, 40, cells=int(rng.integers(6, 40)))[..., None]
    tint = np.asarray(TWILIGHT_TINT if twilight else TINT[time], np.float32) * rng.uniform(0.85, 1.1)
    img = Image.fromarray(np.clip(np.concatenate([sky, ground * tint], 0), 0, 255).astype(np.uint8))
    d = Draw(img)
    # sun / moon / stars
    if lab["weather"] in (None, "clear") or rng.random() < 0.3:
        if time == "night":
            for _ in range(int(rng.integers(20, 120))):
                sx, sy = rng.integers(0, W), rng.integers(0, max(1, horizon))
                d.point((int(sx), int(sy)), fill=(230, 230, 255))
            mx, my, r = rng.uniform(0.1, 0.9) * W, rng.uniform(0.1, 0.6) * horizon, H * 0.04
            d.ellipse([mx - r, my - r, mx + r, my + r], fill=(235, 235, 210))
        elif time == "day":
            sx, sy, r = rng.uniform(0.1, 0.9) * W, rng.uniform(0.05, 0.4) * horizon, H * 0.045
            d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, 250, 210))
        else:
            sx, sy, r = rng.uniform(0.1, 0.9) * W, horizon * rng.uniform(0.8, 1.0), H * 0.06
            d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, 170, 80))
    shade = tuple(int(255 * t) for t in tint)

    def lit(col):
        return tuple(int(c * s / 255) for c, s in zip(col, shade))

    # far silhouettes
    if place in ("mountain", "snow", "forest", "field", "desert") or rng.random() < 0.3:
        pts = [(0, horizon)]
        peak_h = H * (0.35 if place == "mountain" else 0.12)
        for k in range(int(rng.integers(3, 8))):
            pts.append((W * (k + rng.random()) / 6, horizon - rng.uniform(0.3, 1) * peak_h))
        pts.append((W, horizon))
        col = (105, 105, 115) if place == "mountain" else (150, 150, 160)
        d.polygon(pts, fill=lit(col))
        if place in ("mountain", "snow"):
            for px, py in pts[1:-1]:
                d.polygon([(px, py), (px - H * 0.04, py + H * 0.05), (px + H * 0.04, py + H * 0.05)],
                          fill=lit((240, 240, 250)))
    if place in ("sea", "beach"):
        sea_end = horizon + int((H - horizon) * (0.95 if place == "sea" else rng.uniform(0.3, 0.5)))
        d.rectangle([0, horizon, W, sea_end], fill=lit(_jitter(rng, (40, 100, 170))))
        for _ in range(int(rng.integers(20, 60))):
            wx, wy = rng.uniform(0, W), rng.uniform(horizon, sea_end)
            d.arc([wx, wy, wx + W * 0.03, wy + H * 0.01], 180, 360, fill=lit((200, 220, 240)))
        if place == "sea":
            d.polygon([(0, H), (W * 0.1, H * 0.85), (W * 0.9, H * 0.85), (W, H)], fill=lit((110, 75, 40)))
    # place props, far to near
    n = int(rng.integers(4, 14))
    for k in range(n):
        depth = (k + 1) / n
        py = horizon + (H - horizon) * depth * rng.uniform(0.2, 0.9)
        px = rng.uniform(-0.05, 1.05) * W
        s = H * (0.06 + 0.3 * depth) * rng.uniform(0.7, 1.3)
        if place == "forest":
            _tree(d, px, py, s, rng, style=int(rng.integers(0, 3)))
        elif place == "snow":
            if rng.random() < 0.6:
                _tree(d, px, py, s, rng, snowy=True, style=0)
        elif place == "town":
            _house(d, px, py, s, rng)
        elif place == "field":
            if rng.random() < 0.5:
                d.line([(px - s, py), (px + s, py)], fill=(120, 90, 50), width=max(1, int(s * 0.05)))
                for q in range(4):
                    d.line([(px - s + q * s * 0.66, py), (px - s + q * s * 0.66, py - s * 0.3)],
                           fill=(120, 90, 50), width=max(1, int(s * 0.05)))
            else:
                d.line([(px, py), (px + s * 0.05, py - s * 0.2)], fill=(90, 150, 40), width=2)
        elif place == "desert":
            if rng.random() < 0.4:
                c = (60, 130, 60)
                d.rectangle([px - s * 0.08, py - s * 0.8, px + s * 0.08, py], fill=c)
                d.rectangle([px - s * 0.3, py - s * 0.55, px - s * 0.08, py - s * 0.45], fill=c)
                d.rectangle([px - s * 0.3, py - s * 0.75, px - s * 0.2, py - s * 0.45], fill=c)
            else:
                d.arc([px - s, py - s * 0.2, px + s, py + s * 0.2], 180, 360, fill=(200, 160, 100), width=2)
        elif place == "mountain":
            d.polygon([(px - s * 0.4, py), (px - s * 0.1, py - s * 0.35), (px + s * 0.3, py - s * 0.2),
                       (px + s * 0.45, py)], fill=_jitter(rng, (110, 105, 100)))
        elif place == "beach" and rng.random() < 0.3:
            d.line([(px, py), (px + s * 0.2, py - s)], fill=(120, 90, 50), width=max(1, int(s * 0.07)))
            for a in range(5):
                ang = math.pi * (0.1 + 0.2 * a)
                d.line([(px + s * 0.2, py - s), (px + s * 0.2 + math.cos(ang) * s * 0.5,
                                                  py - s + math.sin(ang) * s * 0.25 - s * 0.1)],
                       fill=(40, 130, 50), width=max(1, int(s * 0.05)))
    return img, horizon


def _outdoor_flat(rng, W, H, lab, iso: bool):
    place = lab["place"]
    a, b = GROUND[place]
    tile = int(rng.integers(16, 64))
    arr = np.zeros((H, W, 3), np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    if iso:
        u, v = (xx / tile + yy / (tile / 2)) // 1, (xx / tile - yy / (tile / 2)) // 1
        checker = ((u + v) % 2).astype(np.float32)
    else:
        checker = ((xx // tile + yy // tile) % 2).astype(np.float32)
    arr += np.asarray(a, np.float32) * (1 - checker[..., None] * 0.3) + np.asarray(b, np.float32) * checker[..., None] * 0.3
    arr += _noise(rng, H, W, 40, cells=int(rng.integers(8, 40)))[..., None]
    if place == "beach":
        edge = int(W * rng.uniform(0.4, 0.7))
        arr[:, edge:] = np.asarray((40, 100, 170)) + _noise(rng, H, W - edge, 30, 20)[..., None]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = Draw(img)
    for _ in range(int(rng.integers(5, 30))):
        px, py, s = rng.uniform(0, W), rng.uniform(0, H), tile * rng.uniform(0.8, 2.5)
        if place in ("forest", "snow"):
            col = (30, 100, 35) if place == "forest" else (225, 235, 240)
            d.ellipse([px - s * 0.5, py - s * 0.5, px + s * 0.5, py + s * 0.5], fill=_jitter(rng, col),
                      outline=(20, 60, 20))
        elif place == "town":
            d.rectangle([px - s, py - s * 0.7, px + s, py + s * 0.7], fill=_jitter(rng, (150, 60, 45), 30))
            d.line([(px - s, py), (px + s, py)], fill=(90, 40, 30), width=2)
        elif place == "field":
            d.rectangle([px - s, py - s * 0.3, px + s, py + s * 0.3], fill=_jitter(rng, (200, 180, 80), 20))
        elif place == "mountain":
            d.polygon([(px - s, py + s * 0.5), (px, py - s), (px + s, py + s * 0.5)],
                      fill=_jitter(rng, (90, 85, 80)), outline=(60, 60, 60))
        elif place == "sea":
            d.arc([px, py, px + s, py + s * 0.3], 180, 360, fill=(200, 220, 240), width=2)
        elif place == "desert":
            d.arc([px - s, py - s * 0.3, px + s, py + s * 0.3], 180, 360, fill=(190, 150, 90), width=2)
    return img, 0


def _indoor(rng, W, H, lab):
    place, time = lab["place"], lab["time"]
    wall, floor, accent = (_jitter(rng, c, 18) for c in INDOOR[place])
    topdown = rng.random() < 0.3
    img = Image.new("RGB", (W, H), floor)
    d = Draw(img)
    windows = place in WINDOWED and not topdown and rng.random() < 0.75
    if topdown:
        tile = max(4, min(int(rng.integers(16, 48)), H // 5, W // 5))
        for y in range(0, H, tile):
            for x in range(0, W, tile):
                d.rectangle([x, y, x + tile - 2, y + tile - 2], fill=_jitter(rng, floor, 10))
        bw = int(tile * 1.2)
        for box in ([0, 0, W, bw], [0, H - bw, W, H], [0, 0, bw, H], [W - bw, 0, W, H]):
            d.rectangle(box, fill=wall)
        for _ in range(int(rng.integers(3, 9))):
            px, py, s = rng.uniform(bw, W - bw), rng.uniform(bw, H - bw), tile * rng.uniform(0.6, 2)
            d.rectangle([px - s, py - s * 0.6, px + s, py + s * 0.6], fill=_jitter(rng, accent, 25),
                        outline=(30, 20, 10))
        horizon = bw
    else:
        horizon = int(H * rng.uniform(0.55, 0.75))
        inset = W * rng.uniform(0.1, 0.25)
        ceiling = int(H * rng.uniform(0.05, 0.2))
        d.polygon([(0, 0), (W, 0), (W - inset, ceiling), (inset, ceiling)], fill=tuple(int(c * 0.6) for c in wall))
        d.polygon([(0, H), (W, H), (W - inset, horizon), (inset, horizon)], fill=floor)
        d.rectangle([inset, ceiling, W - inset, horizon], fill=wall)
        d.polygon([(0, 0), (inset, ceiling), (inset, horizon), (0, H)], fill=tuple(int(c * 0.8) for c in wall))
        d.polygon([(W, 0), (W - inset, ceiling), (W - inset, horizon), (W, H)], fill=tuple(int(c * 0.8) for c in wall))
        # wall texture: planks or bricks or rock
        if place in ("dungeon", "castle_hall"):
            bh = max(4, int(H * rng.uniform(0.02, 0.05)))
            for y in range(ceiling, horizon, bh):
                d.line([(inset, y), (W - inset, y)], fill=tuple(int(c * 0.7) for c in wall))
                off = (y // bh) % 2 * bh
                for x in range(int(inset) + off, int(W - inset), bh * 2):
                    d.line([(x, y), (x, y + bh)], fill=tuple(int(c * 0.7) for c in wall))
        elif place == "cave":
            for _ in range(int(rng.integers(10, 30))):
                px, py, r = rng.uniform(0, W), rng.uniform(0, horizon), H * rng.uniform(0.03, 0.12)
                d.ellipse([px - r, py - r, px + r, py + r], fill=_jitter(rng, wall, 20))
            for _ in range(int(rng.integers(3, 9))):
                px = rng.uniform(0, W)
                d.polygon([(px - H * 0.03, 0), (px, H * rng.uniform(0.1, 0.3)), (px + H * 0.03, 0)],
                          fill=_jitter(rng, wall, 15))
        else:
            pw = max(4, int(W * rng.uniform(0.02, 0.05)))
            for x in range(int(inset), int(W - inset), pw):
                d.line([(x, ceiling), (x, horizon)], fill=tuple(int(c * 0.75) for c in wall))
        if windows:
            top, bottom = SKY[time]
            for _ in range(int(rng.integers(1, 4))):
                wx = rng.uniform(inset + W * 0.05, W - inset - W * 0.15)
                wy = rng.uniform(ceiling + H * 0.05, horizon - H * 0.3)
                ww, wh = W * rng.uniform(0.06, 0.12), H * rng.uniform(0.12, 0.22)
                d.rectangle([wx, wy, wx + ww, wy + wh], fill=_jitter(rng, bottom, 10), outline=(60, 40, 20),
                            width=max(2, int(W * 0.006)))
                d.line([(wx + ww / 2, wy), (wx + ww / 2, wy + wh)], fill=(60, 40, 20), width=max(1, int(W * 0.004)))
        # furniture
        for _ in range(int(rng.integers(2, 7))):
            fx = rng.uniform(0.05, 0.95) * W
            fy = rng.uniform(horizon, H)
            s = H * 0.1 * (0.5 + (fy - horizon) / max(1, H - horizon))
            kind = rng.integers(0, 4)
            if place in ("tavern", "house") and kind < 2:  # table
                d.rectangle([fx - s, fy - s * 0.6, fx + s, fy - s * 0.45], fill=_jitter(rng, accent))
                d.rectangle([fx - s * 0.9, fy - s * 0.45, fx - s * 0.8, fy], fill=_jitter(rng, accent))
                d.rectangle([fx + s * 0.8, fy - s * 0.45, fx + s * 0.9, fy], fill=_jitter(rng, accent))
                if place == "tavern":
                    d.rectangle([fx - s * 0.2, fy - s * 0.85, fx, fy - s * 0.6], fill=(200, 170, 60))
            elif place == "tavern":  # barrel
                d.ellipse([fx - s * 0.4, fy - s, fx + s * 0.4, fy], fill=(110, 70, 35), outline=(50, 40, 30))
            elif place == "shop":  # shelves with goods
                d.rectangle([fx - s, fy - s * 2, fx + s, fy], fill=_jitter(rng, accent), outline=(60, 40, 20))
                for r in range(3):
                    for q in range(4):
                        d.rectangle([fx - s + q * s * 0.5 + 2, fy - s * 2 + r * s * 0.66 + 3,
                                     fx - s + q * s * 0.5 + s * 0.35, fy - s * 2 + r * s * 0.66 + s * 0.5],
                                    fill=tuple(int(v) for v in rng.integers(40, 255, 3)))
            elif place == "castle_hall":  # pillar / banner
                d.rectangle([fx - s * 0.25, horizon - H * 0.4, fx + s * 0.25, fy], fill=_jitter(rng, wall, 10))
                d.rectangle([fx - s * 0.2, horizon - H * 0.35, fx + s * 0.2, horizon - H * 0.15], fill=accent)
            elif place == "dungeon":  # bars / chains
                for q in range(5):
                    d.line([(fx + q * s * 0.2, horizon - H * 0.25), (fx + q * s * 0.2, horizon)],
                           fill=(50, 50, 55), width=max(1, int(s * 0.05)))
            elif place == "house":  # bed
                d.rectangle([fx - s * 1.2, fy - s * 0.5, fx + s * 1.2, fy], fill=(150, 40, 40))
                d.rectangle([fx - s * 1.2, fy - s * 0.6, fx - s * 0.7, fy - s * 0.3], fill=(230, 230, 230))
            else:  # cave rocks
                d.ellipse([fx - s, fy - s * 0.6, fx + s, fy], fill=_jitter(rng, wall, 20))
    return img, horizon, windows, topdown


# ---------------------------------------------------------------- first-person block worlds
# A second family of looks: a first-person camera in a world of textured blocks (voxel games), with
# rooms seen from inside (walls, floor and ceiling fill the frame, no sky), low-saturation twilight
# next to the orange one, and a held item and crosshair. Drawn for FIRST_PERSON_SHARE of the seeds,
# decided by a separate random stream so every other seed renders exactly as before.

FIRST_PERSON_SHARE = 0.3
MATERIALS = {  # base colour, pattern
    "planks": ((150, 110, 65), "planks"), "dark_planks": ((95, 65, 40), "planks"),
    "stone": ((125, 125, 125), "noise"), "cobble": ((110, 110, 105), "cobble"),
    "brick": ((140, 75, 60), "brick"), "sandstone": ((205, 190, 140), "brick"),
    "dirt": ((115, 85, 55), "noise"), "grass": ((85, 150, 55), "noise"), "sand": ((215, 200, 145), "noise"),
    "snow": ((235, 240, 248), "noise"), "water": ((40, 90, 170), "noise"), "leaves": ((40, 100, 40), "cobble"),
    "gravel": ((120, 112, 105), "cobble"),
}
ROOM_MATERIALS = {"tavern": ("planks", "dark_planks"), "shop": ("planks", "dark_planks", "brick"),
                  "house": ("planks", "brick", "sandstone"), "dungeon": ("cobble", "stone", "brick"),
                  "cave": ("stone", "dirt", "gravel"), "castle_hall": ("stone", "brick", "cobble")}
GROUND_MATERIALS = {"forest": "grass", "town": "cobble", "field": "grass", "desert": "sand", "snow": "snow",
                    "beach": "sand", "mountain": "stone", "sea": "water"}
SKY_FP = {  # (top, horizon) choices per time; dusk has a grey-blue, dim variant as well as an orange one
    "day": [((70, 140, 235), (150, 200, 245)), ((100, 160, 230), (185, 215, 240))],
    "dusk": [((60, 50, 110), (250, 140, 70)), ((75, 90, 125), (140, 140, 160)), ((55, 65, 95), (170, 120, 90))],
    "night": [((4, 6, 18), (15, 22, 45)), ((10, 14, 30), (25, 30, 55))],
}
LIGHT_FP = {"day": (0.9, 1.15), "dusk": (0.4, 0.75), "night": (0.07, 0.22)}


def _block_texture(rng, material: str, nx: int, ny: int, px: int = 16) -> Image.Image:
    base, pattern = MATERIALS[material]
    base = np.asarray(_jitter(rng, base, 15), np.float32)
    h, w = ny * px, nx * px
    arr = base + rng.normal(0, 12, (h, w, 1)).astype(np.float32) * rng.uniform(0.5, 1.5)
    yy, xx = np.mgrid[0:h, 0:w]
    if pattern == "planks":
        arr[(yy % (px // 4)) == 0] *= 0.65
        arr[((xx + (yy // (px // 4)) * 5) % px) == 0] *= 0.7
    elif pattern == "brick":
        arr[(yy % (px // 2)) == 0] *= 0.6
        arr[((xx + (yy // (px // 2)) % 2 * (px // 2)) % px) == 0] *= 0.6
    elif pattern == "cobble":
        blobs = _noise(rng, h, w, 1.0, cells=max(2, ny * 3))
        arr *= (1.0 + 0.6 * blobs)[..., None]
    arr[(yy % px) == 0] *= 0.85  # block seams
    arr[(xx % px) == 0] *= 0.85
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _perspective_coeffs(dst, src):
    """Coefficients for Image.transform(PERSPECTIVE) that map dst (canvas) corners to src corners."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y]); rhs.append(u)
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y]); rhs.append(v)
    return np.linalg.lstsq(np.asarray(rows, np.float64), np.asarray(rhs, np.float64), rcond=None)[0]


def _textured_quad(img: Image.Image, quad, texture: Image.Image, shade: float = 1.0) -> None:
    """Paste texture into the canvas quad (corners: top-left, top-right, bottom-right, bottom-left)."""
    tw, th = texture.size
    try:
        coeffs = _perspective_coeffs(quad, [(0, 0), (tw, 0), (tw, th), (0, th)])
        warped = texture.transform(img.size, Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.NEAREST)
    except (np.linalg.LinAlgError, ValueError):
        return
    if shade != 1.0:
        warped = Image.fromarray(np.clip(np.asarray(warped, np.float32) * shade, 0, 255).astype(np.uint8))
    mask = Image.new("L", img.size, 0)
    Draw(mask).polygon([tuple(map(float, p)) for p in quad], fill=255)
    img.paste(warped, (0, 0), mask)


def _sky_fp(rng, W, h, time):
    top, bottom = SKY_FP[time][int(rng.integers(len(SKY_FP[time])))]
    sky = _gradient(max(1, h), W, _jitter(rng, top, 12), _jitter(rng, bottom, 15))
    img = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8))
    d = Draw(img)
    if time == "night":
        for _ in range(int(rng.integers(10, 150))):
            d.point((int(rng.integers(0, W)), int(rng.integers(0, max(1, h)))), fill=(220, 220, 240))
    cloud = {"day": (245, 245, 250), "dusk": (150, 140, 150), "night": (30, 32, 45)}[time]
    for _ in range(int(rng.integers(0, 6))):
        cx, cy = rng.uniform(0, W), rng.uniform(0, max(1, h) * 0.8)
        cw, ch = W * rng.uniform(0.05, 0.3), h * rng.uniform(0.03, 0.12)
        d.polygon([(cx, cy), (cx + cw, cy - ch * 0.3), (cx + cw * 1.1, cy + ch), (cx + cw * 0.1, cy + ch * 1.2)],
                  fill=_jitter(rng, cloud, 10))
    if time == "day" and rng.random() < 0.5:
        sx, sy, r = rng.uniform(0.1, 0.9) * W, rng.uniform(0.05, 0.5) * h, h * 0.08
        d.rectangle([sx - r, sy - r, sx + r, sy + r], fill=(255, 255, 235))
    elif time == "dusk" and rng.random() < 0.5:
        sx, r = rng.uniform(0.1, 0.9) * W, h * 0.05
        d.rectangle([sx - r * 2, h - r, sx + r * 2, h], fill=(255, 200, 90))
    return img


def _first_person_outdoor(rng, W, H, lab):
    place, time = lab["place"], lab["time"]
    horizon = int(H * rng.uniform(0.3, 0.65))
    img = Image.new("RGB", (W, H))
    img.paste(_sky_fp(rng, W, horizon, time), (0, 0))
    ground = _block_texture(rng, GROUND_MATERIALS[place], 24, 24)
    spread = W * rng.uniform(1.5, 4.0)
    _textured_quad(img, [(W / 2 - spread * 0.2, horizon), (W / 2 + spread * 0.2, horizon),
                         (W / 2 + spread, H + 1), (W / 2 - spread, H + 1)], ground)
    # blocky hills, trees and walls: axis-aligned block stacks, larger when nearer
    for _ in range(int(rng.integers(2, 10))):
        depth = rng.uniform(0.05, 1.0)
        y = horizon + (H - horizon) * depth * 0.9
        s = H * (0.015 + 0.12 * depth) * rng.uniform(0.7, 1.3)
        x = rng.uniform(-0.1, 1.0) * W
        kind = rng.random()
        if place in ("forest", "snow") and kind < 0.7:
            _textured_quad(img, [(x, y - s * 3), (x + s, y - s * 3), (x + s, y), (x, y)],
                           _block_texture(rng, "dark_planks", 1, 3))
            leaf = "leaves" if place == "forest" else "snow"
            _textured_quad(img, [(x - s * 1.5, y - s * 6), (x + s * 2.5, y - s * 6), (x + s * 2.5, y - s * 3),
                                 (x - s * 1.5, y - s * 3)], _block_texture(rng, leaf, 4, 3))
        else:
            mat = {"town": "cobble", "desert": "sandstone", "mountain": "stone", "sea": "sand"}.get(
                place, "dirt" if kind < 0.5 else GROUND_MATERIALS[place])
            nx, ny = int(rng.integers(2, 9)), int(rng.integers(1, 6 if place == "mountain" else 3))
            _textured_quad(img, [(x, y - s * ny), (x + s * nx, y - s * ny), (x + s * nx, y), (x, y)],
                           _block_texture(rng, mat, nx, ny), shade=rng.uniform(0.7, 1.0))
    arr = np.asarray(img, np.float32)
    light = rng.uniform(*LIGHT_FP[time])
    ground_tint = np.asarray((1.0, 1.0, 1.0) if time == "day" else (0.85, 0.85, 1.0) if time == "dusk"
                             else (0.6, 0.7, 1.0), np.float32)
    arr[horizon:] *= light * ground_tint
    if time == "dusk":  # twilight washes colour out
        grey = arr.mean(axis=2, keepdims=True)
        arr = grey + (arr - grey) * rng.uniform(0.4, 0.9)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), horizon


def _first_person_room(rng, W, H, lab):
    """A room seen from inside: one-point (facing a wall) or corner view; no sky unless a window."""
    place, time = lab["place"], lab["time"]
    mats = ROOM_MATERIALS[place]
    wall_m = str(rng.choice(mats))
    floor_m = str(rng.choice(mats + ("planks", "stone")))
    ceil_m = str(rng.choice(mats))
    img = Image.new("RGB", (W, H), (0, 0, 0))
    nb = int(rng.integers(3, 10))
    if rng.random() < 0.5:  # facing a wall
        l, r = W * rng.uniform(0.0, 0.3), W * rng.uniform(0.7, 1.0)
        t, b = H * rng.uniform(-0.1, 0.3), H * rng.uniform(0.55, 0.85)
        _textured_quad(img, [(l, t), (r, t), (r, b), (l, b)], _block_texture(rng, wall_m, nb, max(2, nb // 2)))
        _textured_quad(img, [(-W * 0.5, -1), (W * 1.5, -1), (r, t), (l, t)], _block_texture(rng, ceil_m, nb, nb), 0.55)
        _textured_quad(img, [(l, b), (r, b), (W * 1.5, H + 1), (-W * 0.5, H + 1)],
                       _block_texture(rng, floor_m, nb, nb), 0.8)
        for quad in ([(-1, -H * 0.5), (l, t), (l, b), (-1, H * 1.5)],
                     [(r, t), (W + 1, -H * 0.5), (W + 1, H * 1.5), (r, b)]):
            _textured_quad(img, quad, _block_texture(rng, wall_m, nb, nb), 0.7)
        wall_box = (l, t, r, b)
    else:  # a corner
        cx = W * rng.uniform(0.25, 0.75)
        t, b = H * rng.uniform(-0.2, 0.25), H * rng.uniform(0.5, 0.8)
        spread = rng.uniform(0.3, 0.8)
        _textured_quad(img, [(-1, t - H * spread * 0.5), (cx, t), (cx, b), (-1, b + H * spread)],
                       _block_texture(rng, wall_m, nb, nb), rng.uniform(0.6, 1.0))
        _textured_quad(img, [(cx, t), (W + 1, t - H * spread * 0.5), (W + 1, b + H * spread), (cx, b)],
                       _block_texture(rng, wall_m, nb, nb), rng.uniform(0.6, 1.0))
        _textured_quad(img, [(-1, b + H * spread), (cx, b), (W + 1, b + H * spread), (cx, H * 2)],
                       _block_texture(rng, floor_m, nb, nb), 0.8)
        if t > 0:
            _textured_quad(img, [(cx, -H), (W + 1, -H), (W + 1, t - H * spread * 0.5), (cx, t)],
                           _block_texture(rng, ceil_m, nb, nb), 0.5)
            _textured_quad(img, [(-1, -H), (cx, -H), (cx, t), (-1, t - H * spread * 0.5)],
                           _block_texture(rng, ceil_m, nb, nb), 0.5)
        wall_box = (cx * 0.2, max(0, t), cx * 0.9, b)
    windows = place in WINDOWED and rng.random() < 0.3
    d = Draw(img)
    if windows:
        l, t, r, b = wall_box
        ww, wh = (r - l) * rng.uniform(0.15, 0.3), (b - t) * rng.uniform(0.2, 0.4)
        wx, wy = rng.uniform(l, max(l + 1, r - ww)), rng.uniform(t, max(t + 1, b - wh * 1.5))
        top, bottom = SKY_FP[time][int(rng.integers(len(SKY_FP[time])))]
        d.rectangle([wx, wy, wx + ww, wy + wh], fill=_jitter(rng, bottom if rng.random() < 0.5 else top, 10),
                    outline=(40, 30, 20), width=max(1, int(W * 0.004)))
    arr = np.asarray(img, np.float32)
    light = rng.uniform(0.15, 0.75)
    arr *= light * (1.0 + _noise(rng, H, W, 0.9, cells=3))[..., None] * np.asarray((1.0, 0.92, 0.8), np.float32)
    for _ in range(int(rng.integers(0, 3))):  # torch light pools
        _glow(arr, rng.uniform(0, W), rng.uniform(0, H), H * rng.uniform(0.2, 0.6), (255, 170, 80), 0.3)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), int(wall_box[3]), windows


def _void_map(rng, img: Image.Image) -> Image.Image:
    """Top-down / isometric map drawn as an island in black (the unexplored void of many RPGs)."""
    W, H = img.size
    cx, cy = W * rng.uniform(0.35, 0.65), H * rng.uniform(0.35, 0.65)
    n = int(rng.integers(5, 11))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radius = rng.uniform(0.3, 0.8, n) * max(W, H) * 0.6
    pts = [(cx + r * math.cos(a), cy + r * math.sin(a) * 0.6) for a, r in zip(angles, radius)]
    mask = Image.new("L", img.size, 0)
    Draw(mask).polygon(pts, fill=255)
    black = Image.new("RGB", img.size, _jitter(rng, (4, 4, 6), 4))
    black.paste(img, (0, 0), mask)
    return black


def _held_item(rng, img):
    W, H = img.size
    d = Draw(img)
    d.line([(W / 2 - H * 0.012, H / 2), (W / 2 + H * 0.012, H / 2)], fill=(230, 230, 230))
    d.line([(W / 2, H / 2 - H * 0.012), (W / 2, H / 2 + H * 0.012)], fill=(230, 230, 230))
    if rng.random() < 0.7:
        x, y, s = W * rng.uniform(0.78, 0.9), H * rng.uniform(0.75, 0.88), H * rng.uniform(0.12, 0.25)
        skin = _jitter(rng, (200, 160, 130), 30)
        d.polygon([(x, y), (x + s * 0.6, y - s * 0.15), (x + s * 1.2, H + 1), (x + s * 0.4, H + 1)], fill=skin)


def _hud(rng, img, lab):
    W, H = img.size
    frac = float(rng.uniform(0.03, 1.0))
    lab["player"] = "healthy" if frac > 0.66 else "hurt" if frac > 0.33 else "badly_hurt"
    d = Draw(img)
    style = int(rng.integers(0, 4))
    u = max(4, int(min(W, H) * rng.uniform(0.025, 0.045)))
    if style == 0:  # bars top-left
        x, y, bw = u, u, int(W * rng.uniform(0.18, 0.3))
        d.rectangle([x - 2, y - 2, x + bw + 2, y + u + 2], fill=(20, 20, 20), outline=(200, 180, 120))
        d.rectangle([x, y, x + int(bw * frac), y + u], fill=_jitter(rng, (200, 30, 30), 20))
        if rng.random() < 0.7:
            m = rng.uniform(0.1, 1.0)
            d.rectangle([x - 2, y + u + 4, x + bw + 2, y + 2 * u + 6], fill=(20, 20, 20))
            d.rectangle([x, y + u + 6, x + int(bw * m), y + 2 * u + 4], fill=(40, 70, 210))
    elif style == 1:  # hearts + hotbar (voxel-game style)
        n = 10
        cx0 = W / 2 - n * u * 0.6
        hy = H - u * 3.2
        for k in range(n):
            fill = frac * n - k
            x = cx0 + k * u * 1.2
            col = (220, 20, 30) if fill >= 0.75 else (120, 20, 25) if fill > 0.25 else (45, 20, 20)
            d.polygon([(x, hy), (x + u * 0.5, hy + u * 0.9), (x + u, hy)], fill=col)
            d.ellipse([x, hy - u * 0.3, x + u * 0.5, hy + u * 0.25], fill=col)
            d.ellipse([x + u * 0.5, hy - u * 0.3, x + u, hy + u * 0.25], fill=col)
        for k in range(8):
            x = W / 2 - 4 * u * 1.6 + k * u * 1.6
            d.rectangle([x, H - u * 1.8, x + u * 1.5, H - u * 0.3], fill=(60, 60, 60), outline=(180, 180, 180))
    elif style == 2:  # health orb
        r = u * 2.2
        cx, cy = r + u, H - r - u
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(30, 10, 10), outline=(170, 150, 100), width=max(1, u // 4))
        level = cy + r - 2 * r * frac
        mask = Image.new("L", img.size, 0)
        md = Draw(mask)
        md.ellipse([cx - r + 2, cy - r + 2, cx + r - 2, cy + r - 2], fill=255)
        md.rectangle([0, 0, W, level], fill=0)
        img.paste(Image.new("RGB", img.size, (190, 20, 25)), (0, 0), mask)
        d.rectangle([cx + r * 1.5, H - u * 1.8, W - cx - r * 1.5, H - u * 0.3], fill=(40, 35, 30), outline=(140, 120, 80))
    else:  # centred bars
        bw = int(W * 0.3)
        x = (W - bw) // 2
        y = H - u * 2
        d.rectangle([x - 2, y - 2, x + bw + 2, y + u + 2], fill=(10, 10, 10))
        d.rectangle([x, y, x + int(bw * frac), y + u], fill=(180, 25, 25))
        d.rectangle([x - 2, y + u + 2, x + bw + 2, y + u + u // 2 + 4], fill=(10, 10, 10))
        d.rectangle([x, y + u + 4, x + int(bw * 0.7), y + u + u // 2 + 2], fill=(40, 60, 200))
    if rng.random() < 0.35:  # minimap
        r = u * 3
        d.rectangle([W - 2 * r - u, u, W - u, 2 * r + u], fill=(40, 50, 40), outline=(200, 200, 200))
    if rng.random() < 0.3:  # chat / quest text
        for k in range(int(rng.integers(1, 4))):
            d.text((u, H * 0.6 + k * u * 1.5), "".join(chr(int(c)) for c in rng.integers(97, 122, 18)),
                   fill=(240, 240, 240))
    if frac < 0.25 and rng.random() < 0.5:  # low-health vignette
        arr = np.asarray(img, np.float32)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        v = np.clip(np.hypot((xx - W / 2) / (W / 2), (yy - H / 2) / (H / 2)) - 0.6, 0, 1)[..., None]
        arr = arr * (1 - v * 0.6) + np.asarray((160, 0, 0), np.float32) * v * 0.6
        img.paste(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))


def _weather(rng, arr: np.ndarray, lab) -> np.ndarray:
    H, W = arr.shape[:2]
    w = lab["weather"]
    if w in (None, "clear"):
        return arr
    if w == "fog":
        fog = np.asarray((180, 185, 190) if lab["time"] == "day" else (90, 90, 100) if lab["time"] == "dusk"
                         else (35, 38, 48), np.float32)
        a = rng.uniform(0.45, 0.75)
        grad = np.linspace(a, a * rng.uniform(0.5, 1.0), H, dtype=np.float32)[:, None, None]
        grad = np.clip(grad + _noise(rng, H, W, 0.25, 6)[..., None], 0, 0.9)
        return arr * (1 - grad) + fog * grad
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    d = Draw(layer)
    if w in ("rain", "storm"):
        slant = rng.uniform(-0.4, 0.4) + (0.5 if w == "storm" else 0)
        length = H * rng.uniform(0.03, 0.08)
        n = int(W * H / rng.uniform(300, 1200)) * (2 if w == "storm" else 1)
        col = (190, 200, 220, int(rng.integers(90, 190)))
        xs, ys = rng.uniform(0, W, n), rng.uniform(0, H, n)
        for x, y in zip(xs, ys):
            d.line([(x, y), (x + slant * length, y + length)], fill=col, width=1 if W < 900 else 2)
        img = Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
        out = np.asarray(img, np.float32) * (0.8 if w == "rain" else 0.6)
        if w == "storm" and rng.random() < 0.4:  # lightning
            out = out * 0.6 + 255 * 0.4
        return out
    # snow
    n = int(W * H / rng.uniform(250, 1000))
    xs, ys = rng.uniform(0, W, n), rng.uniform(0, H, n)
    rs = rng.uniform(0.6, 1.0, n) * max(1.0, W / 400)
    for x, y, r in zip(xs, ys, rs):
        d.ellipse([x - r, y - r, x + r, y + r], fill=(250, 250, 255, 220))
    img = Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
    return np.asarray(img, np.float32) * 0.95 + 8


def render_labels(labels: dict[str, Any], seed: int, size: tuple[int, int] | None = None
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw a screenshot for (mostly) the given labels; returns the image and its exact labels."""
    rng = np.random.default_rng(seed)
    lab = dict(labels)
    lab["danger"], lab["creatures"] = list(lab["danger"]), list(lab["creatures"])
    W, H = size or RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
    pixel = size is None and rng.random() < 0.3
    if pixel:
        f = int(rng.integers(2, 5))
        W, H = max(64, W // f), max(48, H // f)
    time = lab["time"]
    lights: list[tuple[float, float, float, tuple[int, int, int], float]] = []
    # looks added later draw from their own stream, so seeds that do not use them render as before
    style = np.random.default_rng([seed, 11])
    first_person = size is None and style.random() < FIRST_PERSON_SHARE
    twilight = style.random() < 0.5 and time == "dusk"
    void = style.random() < 0.4
    if first_person:
        if W > 480:  # drawn smaller (the reader sees 224x224 anyway): texture warps cost per pixel
            W, H = 480, int(H * 480 / W)
        if lab["setting"] == "outdoor":
            img, ground_y = _first_person_outdoor(rng, W, H, lab)
        else:
            img, ground_y, windows = _first_person_room(rng, W, H, lab)
            lab["time"] = time if windows else None
            lab["weather"] = None
        topdown = False
    elif lab["setting"] == "outdoor":
        mode = rng.random()
        if mode < 0.6:
            img, ground_y = _outdoor_persp(rng, W, H, lab, twilight)
        else:
            img, ground_y = _outdoor_flat(rng, W, H, lab, iso=mode > 0.8)
            tint = TWILIGHT_TINT if twilight else TINT[time]
            arr = np.asarray(img, np.float32) * np.asarray(tint, np.float32) * rng.uniform(0.85, 1.1)
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        topdown = mode >= 0.6
    else:
        img, ground_y, windows, topdown = _indoor(rng, W, H, lab)
        lab["time"] = time if windows else None
        lab["weather"] = None
        arr = np.asarray(img, np.float32) * rng.uniform(0.45, 0.85) * np.asarray((1.0, 0.9, 0.75))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        d = Draw(img)
        for _ in range(int(rng.integers(1, 4))):  # torches
            tx, ty = rng.uniform(0.1, 0.9) * W, rng.uniform(0.15, 0.5) * H
            d.rectangle([tx - 2, ty, tx + 2, ty + H * 0.05], fill=(80, 50, 20))
            d.ellipse([tx - H * 0.012, ty - H * 0.03, tx + H * 0.012, ty], fill=(255, 200, 80))
            lights.append((tx, ty, H * rng.uniform(0.2, 0.4), (255, 160, 60), 0.35))
    if topdown and void:
        img = _void_map(rng, img)
    d = Draw(img)
    base_y = max(ground_y, 1)

    def spot():
        if topdown:
            return rng.uniform(0.1, 0.8) * W, rng.uniform(0.2, 0.9) * H, H * rng.uniform(0.08, 0.15)
        y = rng.uniform(base_y + (H - base_y) * 0.1, H * 0.95)
        return rng.uniform(0.05, 0.75) * W, y, H * (0.1 + 0.35 * (y - base_y) / max(1, H - base_y))

    dark = TINT[time] if lab["setting"] == "outdoor" else (0.7, 0.6, 0.5)
    for kind in lab["creatures"]:
        x, y, s = spot()
        layer = Image.new("RGB", img.size)
        _creature(Draw(layer), kind, x, y, s, rng)
        arr = np.asarray(layer, np.float32) * np.asarray(dark, np.float32) * rng.uniform(0.9, 1.3)
        mask = Image.fromarray(((np.asarray(layer).max(axis=2) > 0) * 255).astype(np.uint8))
        img.paste(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), (0, 0), mask)
        if kind == "undead" and time == "night":
            lights.append((x, y - s, s, (80, 255, 120), 0.25))
    d = Draw(img)
    if "fire" in lab["danger"]:
        for _ in range(int(rng.integers(1, 4))):
            x, y, s = spot()
            s *= rng.uniform(1.0, 2.5)
            _fire(d, x, y, s, rng)
            lights.append((x, y - s * 0.5, s * 2.5, (255, 120, 30), 0.55))
    if "combat" in lab["danger"]:
        x, y, s = spot()
        if not lab["creatures"]:  # an enemy fighter
            d.ellipse([x - s * 0.12, y - s * 1.2, x + s * 0.12, y - s * 0.96], fill=(50, 40, 35))
            d.rectangle([x - s * 0.15, y - s * 0.96, x + s * 0.15, y - s * 0.45], fill=_jitter(rng, (90, 60, 40)))
            d.line([(x - s * 0.08, y - s * 0.45), (x - s * 0.1, y)], fill=(50, 40, 35), width=max(1, int(s * 0.08)))
            d.line([(x + s * 0.08, y - s * 0.45), (x + s * 0.1, y)], fill=(50, 40, 35), width=max(1, int(s * 0.08)))
        px = x + s * rng.uniform(0.5, 0.9)
        d.ellipse([px - s * 0.12, y - s * 1.2, px + s * 0.12, y - s * 0.96], fill=(220, 180, 140))
        d.rectangle([px - s * 0.15, y - s * 0.96, px + s * 0.15, y - s * 0.45], fill=_jitter(rng, (40, 80, 160)))
        d.line([(px - s * 0.1, y - s * 0.8), (px - s * 0.55, y - s * 1.3)], fill=(220, 220, 230), width=max(2, int(s * 0.05)))
        for _ in range(int(rng.integers(1, 4))):  # slash arcs
            ax, ay, r = x + rng.normal(0, s * 0.3), y - s * rng.uniform(0.5, 1.1), s * rng.uniform(0.3, 0.6)
            st = float(rng.uniform(0, 360))
            d.arc([ax - r, ay - r, ax + r, ay + r], st, st + 120, fill=(255, 255, 255), width=max(2, int(s * 0.04)))
        for _ in range(int(rng.integers(0, 4))):  # blood / damage numbers / sparks
            bx, by = x + rng.normal(0, s * 0.4), y - s * rng.uniform(0.3, 1.4)
            if rng.random() < 0.5:
                d.text((bx, by), str(int(rng.integers(3, 99))), fill=(255, 60, 40) if rng.random() < 0.6 else (255, 255, 80))
            else:
                r = s * 0.05
                d.ellipse([bx - r, by - r, bx + r, by + r], fill=(170, 0, 0))
        lights.append((x, y - s * 0.8, s * 0.6, (255, 240, 200), 0.25))
    arr = np.asarray(img, np.float32)
    for x, y, r, col, st in lights:
        _glow(arr, x, y, r, col, st if time != "day" or lab["setting"] == "indoor" else st * 0.4)
    arr = _weather(rng, arr, lab)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if first_person:
        _held_item(rng, img)
    if rng.random() < 0.8:
        _hud(rng, img, lab)
    if pixel:
        img = img.resize((W * f, H * f), Image.NEAREST)
    elif rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.2)))
    arr = np.asarray(img, np.float32)
    arr = arr * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15)  # exposure / gamma variety
    if rng.random() < 0.5:
        grey = arr.mean(axis=2, keepdims=True)
        arr = grey + (arr - grey) * rng.uniform(0.6, 1.4)
    if first_person:  # gamma and per-channel colour jitter
        arr = 255.0 * (np.clip(arr, 0, 255) / 255.0) ** rng.uniform(0.7, 1.4)
        arr = arr * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8), lab


def render_sample(seed: int, size: tuple[int, int] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    rng = np.random.default_rng([seed, 7])
    return render_labels(sample_labels(rng), seed, size)


def render_sign(text: str, seed: int, time: str = "day") -> np.ndarray:
    """A calm street with a painted signboard reading `text`, lettered in Pillow's own font (no system
    fonts): a screenshot with words worth reading, for `read_text` tests and the demo."""
    from PIL import ImageFont

    img, _ = render_labels({"place": "town", "setting": "outdoor", "time": time, "weather": "clear",
                            "danger": [], "creatures": [], "player": None}, seed, size=(800, 600))
    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=34)
    w = d.textlength(text, font=font)
    d.rectangle([200, 120, 240 + w, 180], fill=(92, 60, 30), outline=(40, 25, 10), width=4)
    d.text((220, 130), text, fill=(245, 230, 190), font=font)
    return np.asarray(im)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    from pathlib import Path

    ap = argparse.ArgumentParser(description="write procedural screenshots + labels.jsonl")
    ap.add_argument("out", type=Path)
    ap.add_argument("-n", type=int, default=16)
    ap.add_argument("--start", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "labels.jsonl").open("a") as fh:
        for seed in range(args.start, args.start + args.n):
            img, lab = render_sample(seed)
            name = f"proc_{seed:06d}.png"
            Image.fromarray(img).save(args.out / name)
            fh.write(json.dumps({"file": name, "seed": seed, "labels": lab}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
