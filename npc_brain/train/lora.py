"""Low-rank adapters (LoRA) for ``export.llama.Llama``.

A targeted ``nn.Linear`` with frozen weight W becomes ``W x + s * B (A x)`` with
A (r x in), B (out x r) and s = alpha / r. B starts at zero, so a freshly wrapped
model computes exactly what the base model did.

The adapter file is a plain ``torch.save`` dict (weights_only-loadable):

    {"format": "npc-brain-lora/1", "rank": r, "alpha": a, "targets": [...],
     "modules": {"layers.0.self_attn.q_proj": {"A": tensor, "B": tensor}, ...},
     "recipe": {...}}

``merge_adapter_file`` folds it into the plain weights in place, which is how the
bundle builder exports a fine-tuned model without any LoRA code in the graph.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

FORMAT = "npc-brain-lora/1"
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
ALL_TARGETS = ATTENTION + MLP


class AdapterError(ValueError):
    """The adapter file does not fit the model (or is not an adapter file)."""


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank, self.alpha = rank, float(alpha)
        self.scale = self.alpha / rank
        self.A = nn.Parameter(torch.empty(rank, base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self) -> torch.Tensor:  # lets code that reads .weight keep working
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.A.t() @ self.B.t()) * self.scale

    def delta(self) -> torch.Tensor:
        return (self.B @ self.A) * self.scale


def _targets(names: Iterable[str]) -> tuple[str, ...]:
    names = tuple(names)
    unknown = sorted(set(names) - set(ALL_TARGETS))
    if unknown or not names:
        raise ValueError(f"LoRA targets must be a non-empty subset of {ALL_TARGETS}, got {names}")
    return names


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, targets: Iterable[str] = ALL_TARGETS,
               dropout: float = 0.0) -> list[str]:
    """Freeze every base parameter and wrap the targeted projections in place.
    Returns the wrapped module paths (e.g. ``layers.0.self_attn.q_proj``)."""
    targets = _targets(targets)
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for path, module in list(model.named_modules()):
        for name in targets:
            child = getattr(module, name, None)
            if isinstance(child, nn.Linear):
                setattr(module, name, LoRALinear(child, rank, alpha, dropout))
                wrapped.append(f"{path}.{name}" if path else name)
    if not wrapped:
        raise ValueError("no module matched the LoRA targets")
    return sorted(wrapped)


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {path: m for path, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in lora_modules(model).values() for p in (m.A, m.B)]


def adapter_state(model: nn.Module, dtype: torch.dtype = torch.float16) -> dict[str, dict[str, torch.Tensor]]:
    return {path: {"A": m.A.detach().to(dtype).cpu().clone(), "B": m.B.detach().to(dtype).cpu().clone()}
            for path, m in sorted(lora_modules(model).items())}


def save_adapter(model: nn.Module, path: Path | str, recipe: Mapping[str, Any] | None = None,
                 dtype: torch.dtype = torch.float16) -> dict[str, Any]:
    """Write the adapter (A/B only, fp16 by default: a few MB). Returns what was saved."""
    mods = lora_modules(model)
    if not mods:
        raise ValueError("model has no LoRA modules to save")
    first = next(iter(mods.values()))
    targets = sorted({p.rsplit(".", 1)[-1] for p in mods})
    blob = {"format": FORMAT, "rank": first.rank, "alpha": first.alpha, "targets": targets,
            "modules": adapter_state(model, dtype), "recipe": dict(recipe or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return blob


def load_adapter(path: Path | str) -> dict[str, Any]:
    try:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same error to the caller
        raise AdapterError(f"{path}: not a readable adapter file ({e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or not isinstance(blob.get("modules"), dict):
        raise AdapterError(f"{path}: not an {FORMAT} adapter")
    return blob


def _module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise AdapterError(f"adapter module {path!r} does not exist in this model") from None


def load_adapter_into(model: nn.Module, blob: Mapping[str, Any]) -> None:
    """Copy saved A/B into a model that already has matching LoRA modules (resume, tests)."""
    mods = lora_modules(model)
    for path, ab in blob["modules"].items():
        m = mods.get(path)
        if m is None or m.A.shape != ab["A"].shape or m.B.shape != ab["B"].shape:
            raise AdapterError(f"adapter module {path!r} does not match the model's LoRA layout")
        with torch.no_grad():
            m.A.copy_(ab["A"].float())
            m.B.copy_(ab["B"].float())


def merge_adapter(model: nn.Module, blob: Mapping[str, Any]) -> int:
    """Fold ``W += alpha/r * B @ A`` into the plain Linear weights in place; returns modules merged."""
    rank, alpha = int(blob["rank"]), float(blob["alpha"])
    scale = alpha / rank
    n = 0
    with torch.no_grad():
        for path, ab in blob["modules"].items():
            lin = _module(model, path)
            if isinstance(lin, LoRALinear):
                lin = lin.base
            if not isinstance(lin, nn.Linear):
                raise AdapterError(f"adapter module {path!r} is not a Linear layer")
            A, B = ab["A"].float(), ab["B"].float()
            if A.shape != (rank, lin.in_features) or B.shape != (lin.out_features, rank):
                raise AdapterError(f"adapter module {path!r}: A{tuple(A.shape)} B{tuple(B.shape)} do not fit "
                                   f"Linear({lin.in_features}, {lin.out_features}) at rank {rank}")
            lin.weight += (B @ A * scale).to(lin.weight.dtype)
            n += 1
    return n


def merge_adapter_file(model: nn.Module, path: Path | str) -> int:
    """What ``export.bundle`` calls: merge the adapter at ``path`` into ``model`` in place."""
    return merge_adapter(model, load_adapter(path))


def unwrap_merged(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear by its base Linear with the update merged in (for export after training)."""
    for path, m in list(lora_modules(model).items()):
        with torch.no_grad():
            m.base.weight += m.delta().to(m.base.weight.dtype)
        parent_path, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent_path) if parent_path else model, name, m.base)
    return model
