"""The two ops the benchmark sweeps: the combine, and the combine fused with the next RMSNorm (lesson 04).
For each: how one size's inputs are drawn, its float64 oracle, and the minimum bytes a call must move."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .dtypes import GATE_DTYPE
from .inputs import make_fused_inputs, make_inputs
from .reference import reference_combine_rmsnorm_f64, reference_f64
from .traffic import bytes_fused, bytes_moved

EPS = 1e-6  # the fused op's RMSNorm epsilon in the benchmark


@dataclass(frozen=True)
class Op:
    """What the sweep needs to know of an op besides its implementations."""

    name: str
    inputs: Callable[[int, int, int, bool, bool], Any]  # (n_tokens, h, top_k, residual, shared) -> args
    reference: Callable[..., tuple[np.ndarray, ...]]  # args -> every output in float64
    bytes: Callable[[int, int, int, str, bool, bool], int]  # (n_tokens, h, top_k, dtype, residual, shared)


OPS = {
    "combine": Op("combine",
                  lambda t, h, k, residual, shared: make_inputs(t, h, k, residual=residual, shared=shared),
                  lambda *args: (reference_f64(*args),),
                  lambda t, h, k, dtype, residual, shared: bytes_moved(t, k, h, dtype, residual, GATE_DTYPE, shared)),
    "fused": Op("fused",
                lambda t, h, k, residual, shared: make_fused_inputs(t, h, k, shared=shared),
                lambda *args: reference_combine_rmsnorm_f64(*args, EPS),
                lambda t, h, k, dtype, residual, shared: bytes_fused(t, k, h, dtype, GATE_DTYPE, shared)),
}
