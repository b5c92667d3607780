"""The language model as ONNX Runtime sessions, and a KV cache you can batch.

A bundle may hold two graphs of the same model: one quantized for prompt
prefill (many tokens: int8 GEMMs are fastest) and one for the one-token decode
steps (bandwidth-bound: int4 weights are fastest). Both use the same KV layout,
so a cache filled by one feeds the other. The manifest says which file serves
which phase; with one file, it serves both.

Every decode step, however many rows, runs on the decode (int4) graph, because
there a row's logits do not depend on its neighbours: a line decoded in a batch
is bit for bit the line decoded alone. The int8 graph quantizes activations
per tensor, across rows, so every line would change with the load; on an Intel
machine with AMX it made 8-row steps about 30% faster, on the AMD one measured
since it is slower (`npc-brain bench`, batched section). `wide_decode` switches
that trade on for those who want it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort


def make_session(path: Path, threads: int, providers: list[str] | None = None,
                 spin: bool = True) -> ort.InferenceSession:
    """`spin`: let the session's idle threads spin-wait for the next run. Right for the decode
    session (its runs come back to back), wrong for the prefill session: its threads would go on
    spinning through the decode steps that follow, on the same cores (measured: decode 6-8%
    slower after a prefill with spinning on)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=providers or default_providers())


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu finds a GPU, else CPU."""
    avail = ort.get_available_providers()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if "CUDAExecutionProvider" in avail else ["CPUExecutionProvider"]


#: From how many rows a decode step may use the prefill (int8) graph; None: never (see above).
WIDE_DECODE: int | None = None

#: Cache buffers grow in steps of this many positions (a re-allocation copies the cache).
CHUNK = 64

#: The row pool starts with room for this many positions per row and grows by half when a
#: row needs more. Growing copies every live row into new memory, and on a VM the first
#: touch of new memory costs far more than the copy (measured here: about 10 ms per MB, a
#: second and more for a pool of 8 conversations), so the pool is sized for a long persona
#: and a line at once. Positions that are never written cost no memory.
POOL_CAPACITY = 1024


def _round_up(n: int) -> int:
    return max(CHUNK, -(-n // CHUNK) * CHUNK)


@dataclass
class KV:
    """Per-layer key and value buffers for B rows, each (B, Hkv, capacity, D), and how many
    positions of each row are filled. The graph writes new tokens into these buffers in
    place (they are bound as both its past and its present), so a step never copies the
    cache. Rows are independent conversations and may have any lengths."""

    keys: list[np.ndarray]
    values: list[np.ndarray]
    lengths: np.ndarray  # (B,) int64
    _bound: list[ort.OrtValue] | None = field(default=None, repr=False, compare=False)
    _io: dict[int, ort.IOBinding] = field(default_factory=dict, repr=False, compare=False)  # per session

    @property
    def batch(self) -> int:
        return len(self.lengths)

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    @property
    def length(self) -> int:
        """The longest row's length."""
        return int(self.lengths.max()) if len(self.lengths) else 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.keys) + sum(a.nbytes for a in self.values)

    def rows(self, start: int, stop: int) -> "KV":
        """Rows start..stop-1 as a view on the same buffers and lengths (a slice along the
        first axis of a C-ordered array stays contiguous, so the graph can write into it)."""
        return KV([k[start:stop] for k in self.keys], [v[start:stop] for v in self.values], self.lengths[start:stop])

    def row(self, b: int) -> "KV":
        return self.rows(b, b + 1)

    def extend(self, other: "KV") -> None:
        """Copy the filled positions of the one-row cache `other` in after this one row's own."""
        start, n = int(self.lengths[0]), int(other.lengths[0])
        for dst, src in zip(self.keys + self.values, other.keys + other.values):
            dst[0, :, start:start + n] = src[0, :, :n]
        self.lengths[0] += n

    def span(self, start: int, end: int) -> "KV":
        """A private one-row copy of positions start..end-1 of this one row (a prefix's tail to keep)."""
        return KV([k[:1, :, start:end].copy() for k in self.keys], [v[:1, :, start:end].copy() for v in self.values],
                  np.array([end - start], np.int64))

    def copy(self, capacity: int | None = None) -> "KV":
        """A private copy with room for `capacity` positions (default: just the filled ones)."""
        return KV.stack([self], capacity or max(self.length, 1))

    @staticmethod
    def stack(rows: list["KV"], capacity: int | None = None, batch: int | None = None) -> "KV":
        """Copy the filled part of every row into one new batch (done when the batch changes);
        the batch keeps the largest row's room unless `capacity` says otherwise, and has
        `batch` rows in all when asked for spare ones (empty: length 0)."""
        lengths = np.concatenate([r.lengths for r in rows]).astype(np.int64)
        cap = max(capacity or max(r.capacity for r in rows), int(lengths.max()) if lengths.size else 0)
        n = len(lengths)
        lengths = np.concatenate([lengths, np.zeros(max(0, (batch or n) - n), np.int64)])
        first = rows[0].keys[0]
        shape = (len(lengths), first.shape[1], cap, first.shape[3])

        def gather(arrays_per_row: list[np.ndarray], lens: list[np.ndarray]) -> np.ndarray:
            out = np.empty(shape, np.float32)  # positions past a row's length are never read
            b = 0
            for a, n in zip(arrays_per_row, lens):
                for j, t in enumerate(n):
                    out[b, :, :t] = a[j, :, :t]
                    b += 1
            return out

        lens = [r.lengths for r in rows]
        n_layers = len(rows[0].keys)
        keys = [gather([r.keys[i] for r in rows], lens) for i in range(n_layers)]
        values = [gather([r.values[i] for r in rows], lens) for i in range(n_layers)]
        return KV(keys, values, lengths)

    def bound(self) -> list[ort.OrtValue]:
        """The buffers wrapped for ONNX Runtime (no copy; kept while the buffers live)."""
        if self._bound is None:
            for a in self.keys + self.values:
                if not a.flags.c_contiguous:  # a copy would silently drop the graph's writes
                    raise ValueError("KV buffers must be C-contiguous")
            self._bound = [ort.OrtValue.ortvalue_from_numpy(a) for pair in zip(self.keys, self.values) for a in pair]
        return self._bound


class LanguageModel:
    def __init__(self, prefill_path: Path, decode_path: Path | None = None, threads: int = 2,
                 providers: list[str] | None = None, wide_decode: int | None = WIDE_DECODE):
        self.wide_decode = wide_decode
        same = decode_path is None or Path(decode_path) == Path(prefill_path)
        self.prefill_session = make_session(prefill_path, threads, providers, spin=same)
        self.decode_session = self.prefill_session if same else make_session(decode_path, threads, providers)
        inputs = {i.name: i for i in self.prefill_session.get_inputs()}
        if "seqlens_k" not in inputs:
            raise ValueError(f"{prefill_path} is an older graph without an in-place KV cache; "
                             "rebuild the bundle with `npc-brain build --force`")
        self.n_layers = sum(n.startswith("past_key_") for n in inputs)
        shape = inputs["past_key_0"].shape  # (B, Hkv, capacity, D)
        self.n_kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.vocab_size = int(self.prefill_session.get_outputs()[0].shape[-1])

    def empty(self, batch: int = 1, capacity: int = CHUNK) -> KV:
        def z() -> np.ndarray:
            return np.zeros((batch, self.n_kv_heads, capacity, self.head_dim), np.float32)

        return KV([z() for _ in range(self.n_layers)], [z() for _ in range(self.n_layers)], np.zeros(batch, np.int64))

    def forward(self, ids: np.ndarray, kv: KV, decode: bool = False) -> tuple[np.ndarray, KV]:
        """Run new tokens `ids` (B, S) on top of `kv`, writing their keys and values into it;
        returns last-position logits (B, V) and `kv` (grown: a new object if it ran out of room).
        With S > 1 all rows must have the same length (prefill runs one row at a time)."""
        B, S = ids.shape
        if B != kv.batch:
            raise ValueError(f"{B} rows of tokens for a cache of {kv.batch} rows")
        if S > 1 and B > 1 and len(set(kv.lengths.tolist())) > 1:
            raise ValueError("multi-token steps need rows of equal length")
        total = kv.length + S
        if total > kv.capacity:
            kv = kv.copy(_round_up(total + CHUNK))
        wide = self.wide_decode is not None and B >= self.wide_decode
        session = self.decode_session if decode and not wide else self.prefill_session
        io = kv._io.get(id(session))
        if io is None:  # the cache's buffers are bound once per cache and session, not every step
            io = kv._io[id(session)] = session.io_binding()
            io.bind_output("logits", "cpu")  # first, so it is get_outputs()[0]
            buffers = kv.bound()
            for i in range(self.n_layers):
                for j, name in enumerate(("key", "value")):
                    io.bind_ortvalue_input(f"past_{name}_{i}", buffers[2 * i + j])
                    io.bind_ortvalue_output(f"present_{name}_{i}", buffers[2 * i + j])
        io.bind_cpu_input("input_ids", np.ascontiguousarray(ids, np.int64))
        io.bind_cpu_input("seqlens_k", (kv.lengths + S - 1).astype(np.int32))
        io.bind_cpu_input("total_sequence_length", np.array(total, np.int32))
        io.bind_output("logits", "cpu")  # a fresh array each run (rebinding keeps its place)
        session.run_with_iobinding(io)
        kv.lengths += S
        return io.get_outputs()[0].numpy(), kv


class KVPool:
    """The running batch's caches in one set of buffers, kept the way llama.cpp keeps its
    slots: live rows are 0..n-1, so the batch is a prefix view (contiguous, free). A row
    joining costs one copy of its own cache, a row leaving costs moving the last row into
    its place; nothing else is copied, however often conversations join and leave."""

    def __init__(self) -> None:
        self.kv: KV | None = None
        self.ids: list[int] = []  # row i holds the cache of ids[i]
        self._views: dict[int, KV] = {}  # batch views by row count: the same object step after step,
        # so ONNX Runtime's binding of its buffers is made once (LanguageModel.forward keeps it there)

    def place(self, caches: dict[int, KV], room: int = 1) -> tuple[KV, list[int]]:
        """Make the pool hold exactly these rows (id -> its single-row cache, read only when
        the id is new) with `room` free positions in each; returns the batch view and the id
        of each row, in row order."""
        for gone in [i for i in self.ids if i not in caches]:
            self._drop(self.ids.index(gone))
        for new in [i for i in caches if i not in self.ids]:
            self._add(new, caches[new])
        if not self.ids:  # idle: the buffers stay for the next burst (no re-allocation per line)
            return KV([], [], np.zeros(0, np.int64)), []
        n = len(self.ids)
        if self.kv.rows(0, n).length + room > self.kv.capacity:
            self._resize(self.kv.batch, _round_up(self.kv.capacity + room))
        if n not in self._views:
            self._views[n] = self.kv.rows(0, n)
        return self._views[n], list(self.ids)

    def reserve(self, key: int, cache: KV, capacity: int) -> KV:
        """Copy a new row's cache (a cached persona prefix) straight into the pool, with room
        for `capacity` positions, and return the row as a view: the turn's prefill then writes
        in place, and the row is already where `place` wants it (one copy per line, not two)."""
        if key in self.ids:
            raise ValueError(f"row {key} is already in the pool")
        self._add(key, cache, capacity)  # grows the pool when the row needs more room
        return self.kv.row(len(self.ids) - 1)

    def _drop(self, i: int) -> None:
        last = len(self.ids) - 1
        if i != last:
            n = int(self.kv.lengths[last])
            for a in self.kv.keys + self.kv.values:
                a[i, :, :n] = a[last, :, :n]
            self.kv.lengths[i] = n
            self.ids[i] = self.ids[last]
        self.ids.pop()

    def _add(self, key: int, cache: KV, capacity: int = 0) -> None:
        n = len(self.ids)
        need = max(cache.capacity, capacity)
        if self.kv is None:  # untouched pages cost nothing: room for 16 rows of a long line
            self.kv = KV.stack([cache.rows(0, 0)], _round_up(max(need, POOL_CAPACITY)), batch=16)
            self._views.clear()
        elif n == self.kv.batch or need > self.kv.capacity:  # grow (rare: see POOL_CAPACITY)
            cap = self.kv.capacity if need <= self.kv.capacity else _round_up(max(need, self.kv.capacity * 3 // 2))
            self._resize(self.kv.batch if n < self.kv.batch else 2 * n, cap)
        self.kv.lengths[n] = 0
        self.kv.row(n).extend(cache)
        self.ids.append(key)

    def _resize(self, rows: int, capacity: int) -> None:
        """New buffers of (rows, capacity) holding the live rows."""
        self.kv = KV.stack([self.kv.rows(0, len(self.ids))], capacity, batch=rows)
        self._views.clear()
