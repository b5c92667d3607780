"""SmolLM2 (a Llama-architecture model) in one readable PyTorch file.

Why our own module instead of exporting transformers' class: the ONNX graph is
the serving contract, so we want to choose its inputs exactly. Every call takes

* ``input_ids``       (B, S)        int64  the new tokens
* ``position_ids``    (B, S)        int64  their positions (rows may differ: batching)
* ``attention_mask``  (B, P + S)    int64  1 for real keys, 0 for left padding
* ``past_key_i``/``past_value_i``   (B, Hkv, P, D) float32, one pair per layer

and returns the logits of the *last* position only (B, V) plus the grown
caches. The same graph therefore serves a cold prefill (P = 0), a prefill on
top of a cached persona prefix (P > 0, S > 1) and a batched one-token decode
step across NPCs whose histories have different lengths (left padding).
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


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        d, h, kv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        self.q_proj = nn.Linear(cfg.dim, h * d, bias=False)
        self.k_proj = nn.Linear(cfg.dim, kv * d, bias=False)
        self.v_proj = nn.Linear(cfg.dim, kv * d, bias=False)
        self.o_proj = nn.Linear(h * d, cfg.dim, bias=False)

    def forward(self, x, cos, sin, bias, past_k, past_v):
        B, S, _ = x.shape
        c = self.cfg
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

    def forward(self, x, cos, sin, bias, past_k, past_v):
        a, k, v = self.self_attn(self.input_layernorm(x), cos, sin, bias, past_k, past_v)
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

    def forward(self, input_ids, position_ids, attention_mask, *past: torch.Tensor):
        """Returns (last-position logits (B, V), k_0, v_0, k_1, v_1, ...)."""
        B, S = input_ids.shape
        x = self.embed_tokens(input_ids)
        freqs = position_ids.to(torch.float32).unsqueeze(-1) * self.inv_freq  # (B, S, D/2)
        emb = torch.cat([freqs, freqs], dim=-1).unsqueeze(1)  # (B, 1, S, D)
        cos, sin = emb.cos(), emb.sin()
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
