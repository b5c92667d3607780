"""SmolLM2 (a Llama-architecture model) in one readable PyTorch file.

Why our own module instead of exporting transformers' class: the ONNX graph is
the serving contract, so we want to choose its inputs exactly. Every call takes

* ``input_ids``       (B, S)        int64  the new tokens
* ``position_ids``    (B, S)        int64  their positions (rows may differ: batching)
* ``attention_mask``  (B, P + S)    int64  1 for real keys, 0 for left padding
* ``past_key_i``/``past_value_i``   (B, Hkv, P, D) float32, one pair per layer

and returns the logits of the *last* position only (B, V) plus the grown
caches. That is the eager (PyTorch) form, used by training and as the parity
reference.

The serving graph (``forward_shared``: ``input_ids``, ``seqlens_k``,
``total_sequence_length`` and the caches) is the same maths with a cache that is
never copied: each layer's keys and values live in one preallocated buffer
(B, Hkv, capacity, D) per row, which the runtime binds as both ``past`` and
``present``. ONNX Runtime's GroupQueryAttention rotates the new queries and keys
to each row's own positions and writes them in place at that row's length
(``seqlens_k``), so a step never copies the cache, and rows of different lengths
batch without padding. One graph serves a cold prefill, a prefill on top of a cached persona
prefix, and a batched one-token decode step across NPCs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = 49152
    dim: int = 576
    n_layers: int = 30
    n_heads: int = 9
    n_kv_heads: int = 3
    hidden_dim: int = 1536
    rope_theta: float = 100000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_hf(cls, c) -> "LlamaConfig":
        rope = getattr(c, "rope_parameters", None) or {}
        return cls(
            vocab_size=c.vocab_size,
            dim=c.hidden_size,
            n_layers=c.num_hidden_layers,
            n_heads=c.num_attention_heads,
            n_kv_heads=c.num_key_value_heads,
            hidden_dim=c.intermediate_size,
            rope_theta=float(rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))),
            norm_eps=float(c.rms_norm_eps),
        )


#: Longest conversation the serving graph's rotary table covers (prompt + line, in tokens).
MAX_POSITIONS = 4096


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class GroupQueryAttention(torch.autograd.Function):
    """ONNX Runtime's com.microsoft GroupQueryAttention with a shared past/present buffer and
    rotary embedding inside the op (positions follow from each row's length).

    The forward here is a plain reference of the op's semantics (rotate the S new queries
    and keys of row b to positions seqlens_k[b] - S + 1 ..., write the keys and values
    there, attend causally up to them), used while tracing and by the tests; the ONNX graph
    gets the fused op, which replaces a dozen small reshape, slice and rotary nodes per layer.
    """

    @staticmethod
    def forward(ctx, q, k, v, past_k, past_v, seqlens_k, total_length, cos_cache, sin_cache,
                n_heads: int, n_kv_heads: int):
        B, S, _ = q.shape
        D = past_k.shape[-1]
        g = n_heads // n_kv_heads
        present_k, present_v = past_k.clone(), past_v.clone()
        out = torch.zeros_like(q)
        for b in range(B):
            end = int(seqlens_k[b]) + 1
            start = end - S
            cos = torch.cat([cos_cache[start:end]] * 2, -1)  # (S, D)
            sin = torch.cat([sin_cache[start:end]] * 2, -1)
            qb = q[b].view(S, n_heads, D).transpose(0, 1)  # (H, S, D)
            kb = k[b].view(S, n_kv_heads, D).transpose(0, 1)
            qb = qb * cos + rotate_half(qb) * sin
            kb = kb * cos + rotate_half(kb) * sin
            present_k[b, :, start:end] = kb
            present_v[b, :, start:end] = v[b].view(S, n_kv_heads, D).transpose(0, 1)
            keys = present_k[b, :, :end].repeat_interleave(g, 0)  # (H, end, D)
            vals = present_v[b, :, :end].repeat_interleave(g, 0)
            att = qb @ keys.transpose(1, 2) / math.sqrt(D)
            future = torch.arange(end).unsqueeze(0) > (torch.arange(S) + start).unsqueeze(1)
            att = att.masked_fill(future, float("-inf")).softmax(-1)
            out[b] = (att @ vals).transpose(0, 1).reshape(S, n_heads * D)
        return out, present_k, present_v

    @staticmethod
    def symbolic(g, q, k, v, past_k, past_v, seqlens_k, total_length, cos_cache, sin_cache, n_heads, n_kv_heads):
        out, present_k, present_v = g.op("com.microsoft::GroupQueryAttention", q, k, v, past_k, past_v, seqlens_k,
                                         total_length, cos_cache, sin_cache, num_heads_i=n_heads,
                                         kv_num_heads_i=n_kv_heads, do_rotary_i=1, rotary_interleaved_i=0, outputs=3)
        for value, like in ((out, q), (present_k, past_k), (present_v, past_v)):
            value.setType(like.type())  # the exporter cannot infer a contrib op's output types
        return out, present_k, present_v


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        d, h, kv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        self.q_proj = nn.Linear(cfg.dim, h * d, bias=False)
        self.k_proj = nn.Linear(cfg.dim, kv * d, bias=False)
        self.v_proj = nn.Linear(cfg.dim, kv * d, bias=False)
        self.o_proj = nn.Linear(h * d, cfg.dim, bias=False)

    def forward(self, x, cos, sin, bias, past_k, past_v, shared=None):
        """`shared` = (seqlens_k, total_length, cos_cache, sin_cache) selects the in-place cache,
        where the op itself rotates and places the new keys (see the module doc)."""
        B, S, _ = x.shape
        c = self.cfg
        if shared is not None:
            y, k, v = GroupQueryAttention.apply(self.q_proj(x), self.k_proj(x), self.v_proj(x), past_k, past_v,
                                                *shared, c.n_heads, c.n_kv_heads)
            return self.o_proj(y), k, v
        q = self.q_proj(x).view(B, S, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, S, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, S, c.n_kv_heads, c.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        # Grouped-query attention: each KV head serves n_heads / n_kv_heads query heads.
        # Folding the group into the query axis avoids materialising repeated K/V.
        g = c.n_heads // c.n_kv_heads
        qg = q.reshape(B, c.n_kv_heads, g * S, c.head_dim)
        att = torch.matmul(qg, k.transpose(-1, -2)) * (1.0 / math.sqrt(c.head_dim))
        att = att.view(B, c.n_kv_heads, g, S, -1) + bias.unsqueeze(1)
        att = F.softmax(att, dim=-1).view(B, c.n_kv_heads, g * S, -1)
        y = torch.matmul(att, v).view(B, c.n_heads, S, c.head_dim)
        y = y.transpose(1, 2).reshape(B, S, c.n_heads * c.head_dim)
        return self.o_proj(y), k, v


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.down_proj = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, bias, past_k, past_v, shared=None):
        a, k, v = self.self_attn(self.input_layernorm(x), cos, sin, bias, past_k, past_v, shared)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), k, v


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def rope(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids.to(torch.float32).unsqueeze(-1) * self.inv_freq  # (B, S, D/2)
        emb = torch.cat([freqs, freqs], dim=-1).unsqueeze(1)  # (B, 1, S, D)
        return emb.cos(), emb.sin()

    def forward(self, input_ids, position_ids, attention_mask, *past: torch.Tensor):
        """Returns (last-position logits (B, V), k_0, v_0, k_1, v_1, ...)."""
        B, S = input_ids.shape
        x = self.embed_tokens(input_ids)
        cos, sin = self.rope(position_ids)
        T = attention_mask.shape[1]
        P = T - S
        # Key j is visible to query i when it is a real token and not in the future.
        q_pos = torch.arange(S, device=x.device).unsqueeze(1) + P
        k_pos = torch.arange(T, device=x.device).unsqueeze(0)
        allowed = (k_pos <= q_pos).unsqueeze(0) & (attention_mask.unsqueeze(1) > 0)  # (B, S, T)
        bias = torch.where(allowed, 0.0, -1e9).to(x.dtype).unsqueeze(1)  # (B, 1, S, T)
        present = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, bias, past[2 * i], past[2 * i + 1])
            present += [k, v]
        logits = self.lm_head(self.norm(x[:, -1, :]))
        return (logits, *present)

    def forward_shared(self, input_ids, seqlens_k, total_length, *buffers: torch.Tensor):
        """The serving form: `buffers` are per-layer (B, Hkv, capacity, D) caches that come back
        with the new tokens written in; seqlens_k[b] = row b's length after this call - 1, and
        row b's new tokens sit at the positions just before that."""
        x = self.embed_tokens(input_ids)
        freqs = torch.arange(MAX_POSITIONS, dtype=torch.float32).unsqueeze(1) * self.inv_freq  # (P, D/2)
        rotary = (freqs.cos(), freqs.sin())
        present = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, None, None, None, buffers[2 * i], buffers[2 * i + 1], (seqlens_k, total_length, *rotary))
            present += [k, v]
        logits = self.lm_head(self.norm(x[:, -1, :]))
        return (logits, *present)

    def empty_past(self, batch: int = 1) -> list[torch.Tensor]:
        c = self.cfg
        z = torch.zeros(batch, c.n_kv_heads, 0, c.head_dim)
        return [z] * (2 * c.n_layers)


def load_from_hf(hf_model) -> Llama:
    """Copy weights from a transformers LlamaForCausalLM (tied embeddings are untied here)."""
    cfg = LlamaConfig.from_hf(hf_model.config)
    model = Llama(cfg)
    sd = {k.removeprefix("model."): v for k, v in hf_model.state_dict().items()}
    if "lm_head.weight" not in sd:
        sd["lm_head.weight"] = sd["embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weight mismatch: missing={missing} unexpected={unexpected}")
    return model.eval()
