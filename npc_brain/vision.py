"""Screenshot -> scene facts, at run time (onnxruntime, numpy and Pillow only; never torch).

``decode_screenshot`` turns untrusted bytes from a game into an HxWx3 uint8 array, checking the byte
size and the header's dimensions before anything is decompressed. ``SceneReader`` runs the bundled
``scene.onnx`` (EfficientNet-Lite0 backbone + scene head; the graph takes uint8 NHWC 224x224 RGB and
does ``(x - 127.5) / 128`` itself) and thresholds the per-tag probabilities.

``prepare`` is the one resize used both here and when training the head (export/vision.py imports
it), so preprocessing cannot drift between training and serving.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MAX_IMAGE_BYTES = 6 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_SIDE = 16384
INPUT_SIZE = 224

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_FORMATS = ("auto", "png", "jpeg", "jpg", "rgb", "rgba")


class ImageError(ValueError):
    """A screenshot that cannot be used. ``code`` is "BAD_IMAGE" or "TOO_LARGE"."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _bad(message: str) -> ImageError:
    return ImageError("BAD_IMAGE", message)


def _too_large(message: str) -> ImageError:
    return ImageError("TOO_LARGE", message)


def _check_dims(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise _bad(f"image has zero size ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise _too_large(
            f"image is {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels "
            f"(e.g. 4096x4096) — send a smaller screenshot")


def _sniff(data: bytes) -> str | None:
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    return None


def _png_header_dims(data: bytes) -> tuple[int, int]:
    # IHDR must be the first chunk: length(4) type(4) width(4) height(4)
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise _bad("PNG is truncated or has no IHDR header")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _decode_raw(data: bytes, fmt: str, width: int | None, height: int | None) -> np.ndarray:
    if width is None or height is None:
        raise _bad(f"raw {fmt} pixels need width and height")
    try:
        width, height = int(width), int(height)
    except (TypeError, ValueError, OverflowError):
        raise _bad("width and height must be integers") from None
    _check_dims(width, height)
    channels = 3 if fmt == "rgb" else 4
    expected = width * height * channels
    if len(data) != expected:
        raise _bad(f"raw {fmt} data is {len(data)} bytes but {width}x{height}x{channels} "
                   f"needs {expected}")
    arr = np.frombuffer(data, dtype=np.uint8).reshape(height, width, channels)
    return np.ascontiguousarray(arr[:, :, :3])


def _decode_compressed(data: bytes, fmt: str) -> np.ndarray:
    if fmt == "png":
        _check_dims(*_png_header_dims(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=["PNG" if fmt == "png" else "JPEG"])
            _check_dims(*im.size)  # header only so far: nothing is decompressed yet
            im.load()
            if im.mode != "RGB":
                if "A" in im.mode or im.mode == "P" and "transparency" in im.info:
                    im = im.convert("RGBA")
                    background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                    im = Image.alpha_composite(background, im)
                im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large("image dimensions exceed the decompression limit") from None
    except MemoryError:
        raise _too_large("image is too large to decode") from None
    except Exception as exc:  # Pillow raises many types for corrupt data; all mean the same here
        raise _bad(f"{fmt.upper()} image is corrupt or truncated ({type(exc).__name__})") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise _bad("image did not decode to RGB pixels")
    return arr


def decode_screenshot(data: bytes, fmt: str = "auto", width: int | None = None,
                      height: int | None = None) -> np.ndarray:
    """Decode a screenshot sent by a game into an HxWx3 uint8 RGB array.

    ``fmt``: "png", "jpeg", "rgb", "rgba" (raw pixels, row-major, top row first; need width and
    height) or "auto" (PNG or JPEG by magic bytes). Raises ImageError (code BAD_IMAGE or TOO_LARGE).
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise _bad(f"screenshot must be bytes, not {type(data).__name__}")
    if not isinstance(fmt, str) or fmt.lower() not in _FORMATS:
        raise _bad(f"unsupported screenshot format {fmt!r}; use png, jpeg, rgb, rgba or auto")
    fmt = fmt.lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if len(data) == 0:
        raise _bad("screenshot is empty (0 bytes)")
    if len(data) > MAX_IMAGE_BYTES:
        raise _too_large(f"screenshot is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES} bytes")
    if fmt in ("rgb", "rgba"):
        return _decode_raw(data, fmt, width, height)
    sniffed = _sniff(data)
    if sniffed is None:
        raise _bad("screenshot is not a PNG or JPEG image (send PNG, JPEG, or raw rgb/rgba with "
                   "width and height)")
    if fmt != "auto" and sniffed != fmt:
        raise _bad(f"screenshot was declared {fmt} but looks like {sniffed}")
    return _decode_compressed(data, sniffed)


def prepare(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 224x224x3 uint8 (bilinear, aspect not kept). The graph normalises."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise _bad("image must be an HxWx3 (or HxWx4) uint8 array")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise _bad("image has zero size")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[0] == INPUT_SIZE and image.shape[1] == INPUT_SIZE:
        return np.ascontiguousarray(image)
    im = Image.fromarray(np.ascontiguousarray(image), "RGB")
    im = im.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(im, dtype=np.uint8)


# Read by the head but not reported: on 200 fresh procedural renders (seeds 7,700,000+) the head
# called the player hurt 116 times and was right 61 times (53%), 22 of them on screens with no health
# bar at all; a false "you look hurt" steers the NPC away from the rest of the scene. The game knows
# its player's health exactly: send it as the `player` tag. `read_with_scores` still shows the reading.
UNTRUSTED_TAGS = ("player",)

# Pixel spread (std over the 224x224 input, 0-255) under which a frame shows no scene. Procedural
# renders never come near it (lowest of 150: 9.3, median 30); a solid colour or a fade is 0-2.
BLANK_FRAME_STD = 4.0


class SceneReader:
    """Runs vision_dir/scene.onnx and reads scene tags using vision_dir/vocab.json."""

    def __init__(self, vision_dir: Path, providers: list[str] | None = None, threads: int = 1):
        import onnxruntime as ort

        vision_dir = Path(vision_dir)
        self.vocab: dict[str, Any] = json.loads((vision_dir / "vocab.json").read_text("utf-8"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(vision_dir / "scene.onnx"), sess_options=options,
            providers=providers or ["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.tags: list[dict[str, Any]] = self.vocab["tags"]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """N x 224 x 224 x 3 uint8 -> N x K probabilities (softmax per single tag, sigmoid multi)."""
        return self.session.run(None, {self.input_name: batch})[0]

    def read_with_scores(self, image: np.ndarray) -> dict[str, Any]:
        """{tag: {"value": v or [..], "scores": {value: prob}}} for every tag in the vocabulary."""
        probs = self.probabilities(prepare(image)[None])[0]
        out: dict[str, Any] = {}
        for tag in self.tags:
            start, values = tag["offset"], tag["values"]
            scores = {v: float(probs[start + i]) for i, v in enumerate(values)}
            threshold = float(tag.get("threshold", 0.5))
            if tag["multi"]:
                value: Any = [v for v in values if scores[v] >= threshold]
            else:
                best = max(values, key=scores.__getitem__)
                value = best if scores[best] >= threshold else None
            out[tag["name"]] = {"value": value, "scores": scores}
        return out

    def read(self, image: np.ndarray) -> dict[str, Any]:
        """{tag: value} for confident single-label tags, {tag: [values]} for multi-label tags; nothing
        for a frame too flat to show a scene (a fade to black, a loading or solid screen), which the head
        would otherwise read as a confident night."""
        if prepare(image).std() < BLANK_FRAME_STD:
            return {}
        scored = self.read_with_scores(image)
        out: dict[str, Any] = {}
        for name, item in scored.items():
            if item["value"] is not None:
                out[name] = item["value"]
        # a place that contradicts the indoor/outdoor call is dropped rather than rendered
        from npc_brain.scene import INDOOR_PLACES
        place, setting = out.get("place"), out.get("setting")
        if place is not None and setting is not None:
            if (place in INDOOR_PLACES) != (setting == "indoor"):
                del out["place"]
        if out.get("setting") == "indoor":
            out.pop("weather", None)
        for tag in UNTRUSTED_TAGS:
            out.pop(tag, None)
        return out
