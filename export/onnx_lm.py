"""PyTorch Llama -> ONNX (fp32) -> quantized variants.

Input/output names are the runtime's contract (see ``npc_brain/lm.py``):
``input_ids`` (B, S) int64, ``seqlens_k`` (B,) int32 (each row's length after
the call, minus one: the new tokens' positions follow), ``total_sequence_length``
() int32 (the longest row's), ``past_key_{i}``/``past_value_{i}`` (B, Hkv,
capacity, D) in; ``logits`` (B, V) and ``present_key_{i}``/``present_value_{i}``
out. The runtime binds each present to its past's buffer, so the cache is
written in place (see ``export/llama.py``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from export.llama import Llama

OPSET = 17


class _Serving(torch.nn.Module):
    """Exposes `Llama.forward_shared` as `forward`, which is what the tracer exports."""

    def __init__(self, model: Llama):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model.forward_shared(*args)


def io_names(n_layers: int) -> tuple[list[str], list[str]]:
    ins = ["input_ids", "seqlens_k", "total_sequence_length"]
    outs = ["logits"]
    for i in range(n_layers):
        ins += [f"past_key_{i}", f"past_value_{i}"]
        outs += [f"present_key_{i}", f"present_value_{i}"]
    return ins, outs


def export_fp32(model: Llama, path: Path) -> Path:
    """Trace with rows of different lengths so every axis is seen as dynamic, not constant-folded."""
    c = model.cfg
    B, S, C = 2, 3, 8
    lengths = torch.tensor([1, 2])  # tokens already cached per row
    ids = torch.randint(0, c.vocab_size, (B, S))
    seqlens_k = (lengths + S - 1).to(torch.int32)
    total = (lengths.max() + S).to(torch.int32)
    past = [torch.zeros(B, c.n_kv_heads, C, c.head_dim) for _ in range(2 * c.n_layers)]
    ins, outs = io_names(c.n_layers)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "seqlens_k": {0: "batch"}, "logits": {0: "batch"}}
    for n in ins[3:] + outs[1:]:
        axes[n] = {0: "batch", 2: "capacity"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Serving(model), (ids, seqlens_k, total, *past), str(path), input_names=ins, output_names=outs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return path


def quantize_int8(src: Path, dst: Path, per_channel: bool = True) -> Path:
    """Dynamic int8 on every MatMul (weights int8, activations quantized per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                     op_types_to_quantize=["MatMul"])
    return dst


def quantize_int4(src: Path, dst: Path, block_size: int = 32, accuracy_level: int = 4) -> Path:
    """Blockwise int4 weights (MatMulNBits). accuracy_level 4 computes with int8 activations,
    which is what makes prefill fast on CPUs with VNNI/AMX."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    q = MatMulNBitsQuantizer(model, block_size=block_size, is_symmetric=True, accuracy_level=accuracy_level)
    q.process()
    q.model.save_model_to_file(str(dst), use_external_data_format=False)
    return dst
