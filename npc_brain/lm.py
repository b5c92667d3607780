"""The language model as ONNX Runtime sessions, and a KV cache you can batch.

A bundle may hold two graphs of the same model: one quantized for prompt
prefill (many tokens: int8 GEMMs are fastest) and one for the one-token decode
steps (bandwidth-bound: int4 weights are fastest). Both take and return the
same KV layout, so a cache made by one feeds the other. The manifest says which
file serves which phase; with one file, it serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort


def make_session(path: Path, threads: int, providers: list[str] | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=providers or default_providers())


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu finds a GPU, else CPU."""
    avail = ort.get_available_providers()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if "CUDAExecutionProvider" in avail else ["CPUExecutionProvider"]


@dataclass
class KV:
    """Per-layer keys and values for B rows: lists of (B, Hkv, T, D) arrays, plus the
    (B, T) mask that marks left padding. Rows are independent conversations."""

    keys: list[np.ndarray]
    values: list[np.ndarray]
    mask: np.ndarray

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    @property
    def batch(self) -> int:
        return self.mask.shape[0]

    def row(self, b: int) -> "KV":
        """One row, with its left padding trimmed (views where possible)."""
        pad = int(np.argmax(self.mask[b] > 0)) if self.mask[b].any() else self.length
        return KV([k[b:b + 1, :, pad:] for k in self.keys], [v[b:b + 1, :, pad:] for v in self.values],
                  self.mask[b:b + 1, pad:])

    @staticmethod
    def stack(rows: list["KV"]) -> "KV":
        """Left-pad single rows to a common length and stack them into one batch."""
        if len(rows) == 1:
            return rows[0]
        T = max(r.length for r in rows)
        n = len(rows[0].keys)

        def pad(a: np.ndarray) -> np.ndarray:
            extra = T - a.shape[2]
            return a if extra == 0 else np.concatenate(
                [np.zeros((a.shape[0], a.shape[1], extra, a.shape[3]), a.dtype), a], axis=2)

        keys = [np.concatenate([pad(r.keys[i]) for r in rows]) for i in range(n)]
        values = [np.concatenate([pad(r.values[i]) for r in rows]) for i in range(n)]
        mask = np.concatenate([np.pad(r.mask, ((0, 0), (T - r.length, 0))) for r in rows])
        return KV(keys, values, mask)


class LanguageModel:
    def __init__(self, prefill_path: Path, decode_path: Path | None = None, threads: int = 2,
                 providers: list[str] | None = None):
        self.prefill_session = make_session(prefill_path, threads, providers)
        same = decode_path is None or Path(decode_path) == Path(prefill_path)
        self.decode_session = self.prefill_session if same else make_session(decode_path, threads, providers)
        names = [i.name for i in self.prefill_session.get_inputs()]
        self.n_layers = sum(n.startswith("past_key_") for n in names)
        shape = self.prefill_session.get_inputs()[3].shape  # (B, Hkv, P, D)
        self.n_kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.vocab_size = int(self.prefill_session.get_outputs()[0].shape[-1])

    def empty(self, batch: int = 1) -> KV:
        z = np.zeros((batch, self.n_kv_heads, 0, self.head_dim), np.float32)
        return KV([z] * self.n_layers, [z] * self.n_layers, np.zeros((batch, 0), np.int64))

    def forward(self, ids: np.ndarray, kv: KV, new_mask: np.ndarray | None = None, decode: bool = False
                ) -> tuple[np.ndarray, KV]:
        """Run new tokens `ids` (B, S) on top of `kv`; returns last-position logits (B, V)
        and the grown cache. `new_mask` (B, S) marks left padding among the new tokens."""
        B, S = ids.shape
        new_mask = np.ones((B, S), np.int64) if new_mask is None else new_mask.astype(np.int64)
        mask = np.concatenate([kv.mask, new_mask], axis=1)
        # Positions count only real tokens, so a padded row sees the same positions as alone.
        pos = (np.cumsum(mask, axis=1) - 1)[:, kv.length:].clip(min=0)
        feed: dict[str, np.ndarray] = {"input_ids": ids.astype(np.int64), "position_ids": pos.astype(np.int64),
                                       "attention_mask": mask}
        for i in range(self.n_layers):
            feed[f"past_key_{i}"] = kv.keys[i]
            feed[f"past_value_{i}"] = kv.values[i]
        session = self.decode_session if decode else self.prefill_session
        out = session.run(None, feed)
        return out[0], KV(out[1::2], out[2::2], mask)
