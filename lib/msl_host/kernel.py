"""``metal_kernel``: define a kernel like ``mx.fast.metal_kernel`` and run it on the CPU."""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from typing import Any, Sequence

import mlx.core as mx

from . import build, launch, translate
from .source import Signature, generated_source, parse_signature


@dataclass(frozen=True)
class HostKernel:
    """A metal_kernel definition that runs on the CPU; call it like MLX's kernel."""

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    source: str
    header: str = ""
    ensure_row_contiguous: bool = True
    atomic_outputs: bool = False
    source_name: str | None = None  # file the body comes from, named in compiler errors
    bounds_check: bool = True  # check every device/constant/threadgroup access
    compile_options: tuple[tuple[str, Any], ...] = ()  # math modes: all exact on the host
    work_budget: int = launch.DEFAULT_WORK_BUDGET  # work units one thread may spend (see README)

    def __call__(
        self,
        *,
        inputs: Sequence[Any],
        output_shapes: Sequence[Sequence[int]],
        output_dtypes: Sequence[mx.Dtype],
        grid: tuple[int, int, int],
        threadgroup: tuple[int, int, int],
        template: Sequence[tuple[str, Any]] | None = None,
        init_value: float | None = None,
        verbose: bool = False,
    ) -> list[mx.array]:
        """Run the kernel on every thread position of `grid`; return the outputs."""
        translate.check_supported(self.name, self.header, self.source)
        inputs = [a if isinstance(a, mx.array) else mx.array(a) for a in inputs]
        launch.check_launch(self, output_shapes, output_dtypes, threadgroup)
        text = generated_source(self, inputs=inputs, output_shapes=output_shapes,
                                output_dtypes=output_dtypes, template=template)
        if verbose:
            print(f"Generated source code for `{self.name}`:\n```\n{text}\n```", flush=True)
        fast_math = dict(self.compile_options).get("math_mode") == "fast"
        signature, library = compiled(text, self.header, self.source, self.source_name, self.bounds_check,
                                      fast_math, str(build.cache_dir()), build.compiler())
        return launch.run(library, signature, self, inputs, output_shapes, output_dtypes, grid,
                          threadgroup, init_value)


@functools.lru_cache(maxsize=4096)
def compiled(text: str, header: str, source: str, source_name: str | None, checked: bool, fast_math: bool,
             cache_dir: str, compiler: tuple[str, ...]) -> tuple[Signature, ctypes.CDLL]:
    """The parsed signature and the loaded library of a generated source, once per process (the
    cache directory and compiler are part of the key: they choose the library)."""
    signature = parse_signature(text, header, source)
    return signature, build.load_library(translate.translation_unit(signature, source_name, checked, fast_math))


def metal_kernel(
    name: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    source: str,
    header: str = "",
    ensure_row_contiguous: bool = True,
    atomic_outputs: bool = False,
    compile_options: dict | None = None,
    *,
    source_name: str | None = None,
    bounds_check: bool = True,
    work_budget: int | None = None,
) -> HostKernel:
    """Define a kernel like ``mx.fast.metal_kernel``, runnable on the CPU. Arguments are checked by
    building MLX's own kernel object with them (so invalid ones raise MLX's ValueError); `work_budget`:
    the work units one thread may spend (None: launch.DEFAULT_WORK_BUDGET)."""
    work_budget = launch.DEFAULT_WORK_BUDGET if work_budget is None else work_budget
    if isinstance(work_budget, bool) or not isinstance(work_budget, int) or not 0 < work_budget < 2**62:
        raise ValueError(f"work_budget: expected a positive int below 2**62, got {work_budget!r}")
    mx.fast.metal_kernel(name=name, input_names=list(input_names), output_names=list(output_names),
                         source=source, header=header, ensure_row_contiguous=ensure_row_contiguous,
                         atomic_outputs=atomic_outputs, compile_options=compile_options)
    return HostKernel(name, tuple(input_names), tuple(output_names), source, header,
                      ensure_row_contiguous, atomic_outputs, source_name, bounds_check,
                      tuple(sorted((compile_options or {}).items())), work_budget)
