"""What one contender of the sweep is (the Impl record) and the size limits of the slow paths: shared by the
registry (impls) and the PyTorch and Triton contenders (impls_torch, impls_triton), which import this module and
never each other's registry, so that the imports run one way."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # for the annotations only: this module imports no MLX, so that plots may read its limits
    from .inputs import CombineArgs

HOST_MAX_OUTPUTS = 8192  # the host kernel path runs thread by thread: only n_tokens·h up to this, quick mode only
GRAPH_MAX_OUTPUTS = 2**19  # CUDA-graph peers are timed up to n_tokens·h = 256·2048


@dataclass(frozen=True)
class Impl:
    """One way to run the op: where it runs, which dtypes it takes, how inputs are made and outputs read."""

    name: str
    processor: str  # 'gpu' or 'cpu': which ceiling and rotation budget apply
    backend: str
    dtypes: tuple[str, ...]
    kind: str  # input family: impls of one kind share input sets
    prepare: Callable[[CombineArgs, str], CombineArgs]  # a fresh copy of one input set in a dtype
    build: Callable[[str], Callable[..., Any]]  # dtype -> the callable (compiled ones are built once per dtype)
    sync: Callable[[list], None]
    flush: Callable[[list], None] | None = None  # hands lazy outputs to the device (MLX: mx.async_eval)
    to_host: Callable[[Any], Any] = lambda out: out
    max_outputs: int | None = None  # largest n_tokens·h it is timed at
    graphed: bool = False  # timed as CUDA-graph replays of chained calls (impls_torch.graph_call)
    op: str = "combine"  # which op of ops.OPS it computes

    def fits(self, n_tokens: int, h: int) -> bool:
        """Whether this impl is timed at a size."""
        return self.max_outputs is None or n_tokens * h <= self.max_outputs
