"""A training forward pass over whole sequences for ``export.llama.Llama``.

The serving graph returns last-position logits only; training needs the loss at
every target position. We run the same blocks (so the same weights and maths)
and apply ``lm_head`` only where there is a target: the 49k-wide head is the
single largest matmul, and most positions (the persona) have no target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) right-padded ids + mask -> final-norm hidden states (B, S, dim)."""
    B, S = input_ids.shape
    position_ids = torch.arange(S, device=input_ids.device).unsqueeze(0).expand(B, S)
    x = model.embed_tokens(input_ids)
    freqs = position_ids.to(torch.float32).unsqueeze(-1) * model.inv_freq
    emb = torch.cat([freqs, freqs], dim=-1).unsqueeze(1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    pos = torch.arange(S, device=x.device)
    allowed = (pos.unsqueeze(0) <= pos.unsqueeze(1)).unsqueeze(0) & (attention_mask.unsqueeze(1) > 0)
    bias = torch.where(allowed, 0.0, -1e9).to(x.dtype).unsqueeze(1)
    c = model.cfg
    empty = torch.zeros(B, c.n_kv_heads, 0, c.head_dim, dtype=x.dtype, device=x.device)
    for layer in model.layers:
        x, _, _ = layer(x, cos, sin, bias, empty, empty)
    return model.norm(x)


def target_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over positions whose label is not -100; returns (loss, n_targets).
    ``labels[b, t]`` is the token expected *at* t (it is predicted from position t - 1)."""
    h = hidden_states(model, input_ids, attention_mask)
    tgt = labels[:, 1:]
    sel = tgt != -100
    n = int(sel.sum())
    if n == 0:
        return h.sum() * 0.0, 0
    logits = model.lm_head(h[:, :-1][sel])
    return F.cross_entropy(logits.float(), tgt[sel]), n
