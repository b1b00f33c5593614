"""A patched mlx-lm model against itself unpatched, on the same weights and tokens (lesson 06): a prefill and
cached decode steps, the logits compared row by row, and for a low-precision model the distance of each to a
float32 run of the same weights."""
from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.cache import make_prompt_cache

from .integrate import ROUNDING, patched

STEPS = 8  # cached decode steps after the prefill


def decode(model: nn.Module, prompt: mx.array, steps: int = STEPS,
           forced: list[int] | None = None) -> tuple[np.ndarray, list[int]]:
    """A prefill of `prompt` into a fresh cache and `steps` cached decode steps: the last position's logits of
    each call (steps + 1 rows, float32) and each row's greedy token. Step i feeds forced[i] if given, else the
    greedy token of the row before, as greedy generation does."""
    cache = make_prompt_cache(model)
    rows = [model(prompt[None], cache=cache)[0, -1].astype(mx.float32)]
    tokens = [int(mx.argmax(rows[0]).item())]
    for i in range(steps):
        fed = tokens[-1] if forced is None else forced[i]
        rows.append(model(mx.array([[fed]]), cache=cache)[0, -1].astype(mx.float32))
        tokens.append(int(mx.argmax(rows[-1]).item()))
    return np.stack([np.array(r) for r in rows]), tokens


def distance(logits: np.ndarray, ref: np.ndarray) -> float:
    """The largest ||logits - ref|| / ||ref|| over the rows (decode steps), in float64."""
    a, b = logits.astype(np.float64), ref.astype(np.float64)
    return float(np.max(np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)))


@dataclass(frozen=True)
class Agreement:
    """Patched against unpatched: how many layers were patched; the logits' distance with the same tokens fed
    (the unpatched run's greedy ones); whether greedy decoding picks the same tokens, and the first row where it
    does not (else None); given a float32 run of the same weights, each version's distance to it with that run's
    tokens fed, and in how many of those rows its top token is the float32 run's (else None)."""

    layers: int
    distance: float
    same_tokens: bool
    unpatched_to_ref: float | None = None
    patched_to_ref: float | None = None
    first_difference: int | None = None
    unpatched_ref_tokens: int | None = None
    patched_ref_tokens: int | None = None


def agreement(model: nn.Module, prompt: mx.array, *, fuse_norm: bool, rounding: str = ROUNDING, backend: str = "auto",
              ref: tuple[np.ndarray, list[int]] | None = None, steps: int = STEPS) -> Agreement:
    """Compare the model patched (patch_mlx_lm with fuse_norm and rounding) with itself unpatched; `ref` is
    decode()'s result for a float32 copy of the model. The model is unpatched again afterwards."""
    logits, tokens = decode(model, prompt, steps)
    unpatched_ref = decode(model, prompt, steps, ref[1]) if ref else None
    with patched(model, fuse_norm=fuse_norm, backend=backend, rounding=rounding) as layers:
        fed_same = decode(model, prompt, steps, tokens)[0]
        own_tokens = decode(model, prompt, steps)[1]
        patched_ref = decode(model, prompt, steps, ref[1]) if ref else None
    first = next((i for i, (a, b) in enumerate(zip(own_tokens, tokens)) if a != b), None)
    if ref is None:
        return Agreement(layers, distance(fed_same, logits), own_tokens == tokens, first_difference=first)
    hits = [sum(a == b for a, b in zip(run[1], ref[1])) for run in (unpatched_ref, patched_ref)]
    return Agreement(layers, distance(fed_same, logits), own_tokens == tokens, distance(unpatched_ref[0], ref[0]),
                     distance(patched_ref[0], ref[0]), first, *hits)
