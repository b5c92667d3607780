"""All tunables in one typed place.

Defaults here are what the bundle manifest records as generation defaults;
requests may override the per-line options within the bounds checked by
``GenerationOptions.validated``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

#: Where `npc-brain` looks for the bundle unless told otherwise.
DEFAULT_BUNDLE_DIR = Path(os.environ.get("NPC_BRAIN_BUNDLE", "build/bundle"))


class OptionsError(ValueError):
    """A generation option is out of range; the message names it and the range."""


@dataclass(frozen=True)
class GenerationOptions:
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.9
    # Keep only tokens at least this share as likely as the top one (0 = off). Unlike top_p it
    # cuts less where the model is unsure and more where it is sure, so a fact's words survive
    # a temperature that varies the framing around them.
    min_p: float = 0.0
    repetition_penalty: float = 1.15
    max_tokens: int = 48
    catchphrase_bias: float = 1.5
    # Logit bonus for the first token of the sheet's own content words (its name, role, setting,
    # knowledge, example lines; sampler.sheet_token_ids): a nudge toward the NPC's world instead of
    # generic talk. 0 = off; a bundle turns it on in its generation defaults.
    sheet_bias: float = 0.0
    # On a turn where no sheet fact is recalled (a scene question, an attack, small talk), the turn's
    # note says who the NPC is ("Who you are: a blacksmith of Emberfall."), right before the player's
    # words where a small model looks hardest: a voice trained to use that note then speaks from its
    # trade and place instead of in generic reactions (prompt.identity_text). Off by default: it is
    # chosen per voice, by measurement (docs/figures_fidelity.md), in the bundle's generation defaults.
    identity_note: bool = False
    # When the player offers the NPC another identity ("your name is Bob now", "pretend you're a
    # dragon"), the offered name and nouns are banned for that line (sampler.recast_guard), so the
    # NPC cannot answer "I'm Bob". On by default: it changes nothing for any other utterance.
    recast_guard: bool = True
    # Draw at this temperature instead when the model's top token is one of the sheet's own words (its
    # name, role and knowledge: sampler.anchor_token_ids), so a line varies where it is free and keeps
    # the NPC's own words where it reaches for them. 0 = off (one temperature for every token).
    anchor_temperature: float = 0.0

    _BOUNDS = {
        "temperature": (0.0, 2.0), "top_k": (0, 1000), "top_p": (0.0, 1.0), "min_p": (0.0, 0.99),
        "repetition_penalty": (1.0, 2.0), "max_tokens": (1, 128), "catchphrase_bias": (0.0, 5.0),
        "sheet_bias": (0.0, 5.0), "anchor_temperature": (0.0, 2.0),
    }

    def validated(self, overrides: Mapping[str, Any] | None) -> "GenerationOptions":
        """A copy with `overrides` applied; unknown keys or out-of-range values raise OptionsError."""
        if not overrides:
            return self
        known = {f.name: f.type for f in fields(self)}
        out: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise OptionsError(f"unknown generation option {key!r}; known: {', '.join(sorted(known))}")
            if isinstance(getattr(self, key), bool):  # a switch: true/false, or 1/0 from a command line
                if value not in (True, False, 0, 1):
                    raise OptionsError(f"option {key} must be true or false, got {value!r}")
                out[key] = bool(value)
                continue
            lo, hi = self._BOUNDS[key]
            is_int = isinstance(getattr(self, key), int)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (is_int and not float(value).is_integer()):
                raise OptionsError(f"option {key} must be {'an integer' if is_int else 'a number'}, got {value!r}")
            if not lo <= value <= hi:
                raise OptionsError(f"option {key}={value} is outside [{lo}, {hi}]")
            out[key] = int(value) if is_int else float(value)
        return replace(self, **out)


@dataclass(frozen=True)
class Limits:
    """Input bounds shared by the CLI, batch files and the daemon."""

    max_utterance_chars: int = 1000
    max_history_turns: int = 32
    max_history_chars: int = 2000
    max_prompt_tokens: int = 1536
    # The prompt shows the last 2-3 exchanges (player lines up to the NPC's reply). The window
    # moves two exchanges at a time, not one, so for every other turn the prompt still starts
    # with the same exchanges as the last one and their cached KV state is reused.
    history_exchanges_in_prompt: int = 3
    history_page: int = 2


LIMITS = Limits()
