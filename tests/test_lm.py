"""The in-place KV cache on a tiny random model: the exported graph (ONNX Runtime's
GroupQueryAttention writing into shared buffers) must match PyTorch eager for a cold
prefill, a prefill on top of a cached prefix, and a batched decode of rows of
different lengths, including when a cache grows or a row is a view on a batch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from export.llama import Llama, LlamaConfig
    from export.onnx_lm import export_fp32
    from npc_brain.lm import LanguageModel

    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=300, dim=96, n_layers=2, n_heads=6, n_kv_heads=2, hidden_dim=128)).eval()
    path = export_fp32(model, tmp_path_factory.mktemp("tiny") / "tiny.onnx")
    return model, LanguageModel(path, threads=1)


def eager(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        t = torch.tensor([ids])
        return model(t, torch.arange(len(ids))[None], torch.ones_like(t), *model.empty_past())[0][0].numpy()


def test_prefill_on_a_cached_prefix_matches_eager(tiny):
    model, lm = tiny
    prefix, turn = list(range(10, 40)), list(range(50, 60))
    _, cached = lm.forward(np.array([prefix]), lm.empty(capacity=len(prefix)))
    kv = cached.copy(capacity=len(prefix) + len(turn))
    logits, kv = lm.forward(np.array([turn]), kv)
    assert np.abs(logits[0] - eager(model, prefix + turn)).max() < 1e-4
    assert list(cached.lengths) == [len(prefix)] and list(kv.lengths) == [len(prefix) + len(turn)]


def test_batched_decode_of_rows_of_different_lengths_matches_eager(tiny):
    from npc_brain.lm import KV

    model, lm = tiny
    a, b = list(range(5, 75)), list(range(100, 112))  # a outgrows the first buffer
    _, ka = lm.forward(np.array([a]), lm.empty())
    _, kb = lm.forward(np.array([b]), lm.empty())
    batch = KV.stack([ka, kb])
    for step in range(3):
        logits, batch = lm.forward(np.array([[7 + step], [9 + step]]), batch, decode=True)
        a.append(7 + step)
        b.append(9 + step)
        assert np.abs(logits[0] - eager(model, a)).max() < 1e-4
        assert np.abs(logits[1] - eager(model, b)).max() < 1e-4
    row = batch.row(1)  # a view: its writes land in the batch's buffers
    logits, row = lm.forward(np.array([[3]]), row, decode=True)
    b.append(3)
    assert np.abs(logits[0] - eager(model, b)).max() < 1e-4
    assert np.array_equal(batch.keys[0][1, :, len(b) - 1], row.keys[0][0, :, len(b) - 1])


def test_bad_shapes_are_refused(tiny):
    _, lm = tiny
    with pytest.raises(ValueError):
        lm.forward(np.array([[1], [2]]), lm.empty(batch=1))


def test_pool_keeps_every_row_intact_while_rows_join_and_leave(tiny):
    """Rows join, leave and are moved inside the pool; every row still decodes exactly as alone."""
    from npc_brain.lm import KVPool

    model, lm = tiny
    prompts = {i: list(range(10 + i, 30 + 3 * i)) for i in range(6)}
    caches = {i: lm.forward(np.array([p]), lm.empty(capacity=len(p) + 8))[1] for i, p in prompts.items()}
    pool = KVPool()
    for live in ([0, 1, 2], [0, 1, 2, 3, 4], [1, 3, 4], [1, 4, 5], [5]):
        kv, order = pool.place({i: caches[i] for i in live})
        assert sorted(order) == live
        logits, _ = lm.forward(np.array([[7]] * len(order)), kv, decode=True)
        for b, i in enumerate(order):
            prompts[i].append(7)
            caches[i] = kv.row(b)
            assert np.abs(logits[b] - eager(model, prompts[i])).max() < 1e-4
