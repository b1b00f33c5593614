"""The Metal source MLX generates for a kernel call, and its parsed signature.

MLX writes the kernel's signature from the call (dtypes, which inputs are small enough for the
`constant` address space, template arguments) and prints the whole source when called with
``verbose=True``. We trace the call inside ``mx.export_function`` with tiny placeholder inputs of the
same dtype, ndim and size class (tracing needs no Metal device) and capture file descriptor 1.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import mlx.core as mx

from .errors import UnsupportedKernelError

CONSTANT_ARRAY_LIMIT = 8  # MLX passes inputs with fewer elements in `constant` memory
CLOSING = "\n}\n"  # what MLX writes after the kernel body

_source_cache: dict[tuple, str] = {}
_capture_lock = threading.Lock()


class Definition(Protocol):
    """What ``metal_kernel`` was given (HostKernel has these attributes)."""

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    source: str
    header: str
    ensure_row_contiguous: bool
    atomic_outputs: bool


@dataclass(frozen=True)
class Param:
    """One parameter of the generated kernel signature."""

    kind: str  # "buffer" or "attribute"
    type: str  # element type for buffers ("float", "atomic<float>"), "uint"/"uint3" for attributes
    name: str
    index: int = -1  # buffer index
    const: bool = False
    by_reference: bool = False  # `T&` (0-d inputs, *_ndim) rather than `T*`


@dataclass(frozen=True)
class Signature:
    """The parsed pieces of a generated Metal kernel."""

    function: str
    template_args: tuple[str, ...]  # C++ spelling, e.g. ("float", "true", "4")
    params: tuple[Param, ...]
    header: str  # the kernel's header, as given
    signature: str  # from the template line (if any) to ") {\n"
    body: str  # the kernel body (the user's `source`), followed in the source by CLOSING


def generated_source(
    kernel: Definition,
    *,
    inputs: Sequence[Any],
    output_shapes: Sequence[Sequence[int]],
    output_dtypes: Sequence[mx.Dtype],
    grid: tuple[int, int, int] = (1, 1, 1),
    threadgroup: tuple[int, int, int] = (1, 1, 1),
    template: Sequence[tuple[str, Any]] | None = None,
    init_value: float | None = None,
    verbose: bool = False,
) -> str:
    """Return the exact Metal source MLX generates for this call (grid, init_value, verbose unused)."""
    if len(inputs) != len(kernel.input_names):
        raise ValueError(f"[metal_kernel] Expected {len(kernel.input_names)} inputs, got {len(inputs)}.")
    inputs = [a if isinstance(a, mx.array) else mx.array(a) for a in inputs]
    template = list(template or [])
    key = (kernel.name, kernel.input_names, kernel.output_names, kernel.source, kernel.header,
           kernel.atomic_outputs, tuple(input_class(a) for a in inputs),
           tuple(str(d) for d in output_dtypes),
           tuple((n, type(v).__name__, str(v)) for n, v in template))
    if key not in _source_cache:
        _source_cache[key] = trace_source(kernel, inputs, output_shapes, output_dtypes, template)
    return _source_cache[key]


def input_class(a: mx.array) -> tuple[str, int, str]:
    """What of an input shapes the generated source: dtype, ndim, scalar/constant/device."""
    kind = "scalar" if a.ndim == 0 else "constant" if a.size < CONSTANT_ARRAY_LIMIT else "device"
    return str(a.dtype), a.ndim, kind


def placeholder(a: mx.array) -> mx.array:
    """A tiny array with the same dtype, ndim and size class as `a`."""
    if a.ndim == 0:
        return mx.zeros((), a.dtype)
    first = 1 if a.size < CONSTANT_ARRAY_LIMIT else CONSTANT_ARRAY_LIMIT
    return mx.zeros((first,) + (1,) * (a.ndim - 1), a.dtype)


def trace_source(kernel: Definition, inputs: Sequence[mx.array],
                 output_shapes: Sequence[Sequence[int]], output_dtypes: Sequence[mx.Dtype],
                 template: list[tuple[str, Any]]) -> str:
    """Have MLX print the generated source while exporting the call, and extract it."""
    mlx_kernel = mx.fast.metal_kernel(
        name=kernel.name, input_names=list(kernel.input_names),
        output_names=list(kernel.output_names), source=kernel.source, header=kernel.header,
        ensure_row_contiguous=kernel.ensure_row_contiguous, atomic_outputs=kernel.atomic_outputs)

    def call(*args: mx.array) -> list[mx.array]:
        """The kernel call on placeholder inputs, as traced."""
        return mlx_kernel(inputs=list(args), output_shapes=[tuple(s) for s in output_shapes],
                          output_dtypes=list(output_dtypes), grid=(1, 1, 1),
                          threadgroup=(1, 1, 1), template=template, verbose=True)

    placeholders = [placeholder(a) for a in inputs]
    with tempfile.TemporaryDirectory() as tmp:
        printed = capture_fd1(lambda: mx.export_function(str(Path(tmp) / "k.mlxfn"), call,
                                                         *placeholders))
    marker = f"Generated source code for `{kernel.name}`:\n```\n"
    start = printed.rfind(marker)
    end = printed.rfind("\n```\n")
    if start < 0 or end < start:
        raise RuntimeError(f"MLX did not print the generated source of `{kernel.name}`:\n{printed}")
    return printed[start + len(marker):end]


def capture_fd1(fn: Callable[[], object]) -> str:
    """Run fn() with file descriptor 1 redirected to a temp file; return what was written."""
    libc = ctypes.CDLL(None)
    with _capture_lock, tempfile.TemporaryFile() as tmp:
        sys.stdout.flush()
        libc.fflush(None)
        saved = os.dup(1)
        os.dup2(tmp.fileno(), 1)
        try:
            fn()
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode("utf-8", errors="replace")


_BUFFER_RE = re.compile(
    r"\s*(const\s+)?(?:device|constant)\s+([\w<>]+)\s*([*&])\s*(\w+)\s*\[\[buffer\((\d+)\)\]\]")
_ATTRIBUTE_RE = re.compile(r"\s*(uint3|uint)\s+(\w+)\s*\[\[(\w+)\]\]")
_KERNEL_RE = re.compile(r"(?:template <([^>\n]*)>\n)?\[\[kernel\]\] void (\w+)\(\n")
_INSTANTIATION_RE = re.compile(r"decltype\((\w+)<([^<>()]*)>\)")


def parse_signature(text: str, header: str, source: str) -> Signature:
    """Split generated source into header, signature, body and template instantiation."""
    if not text.startswith(header):
        raise RuntimeError("generated source does not start with the kernel header")
    match = _KERNEL_RE.match(text, len(header))
    if match is None:
        raise RuntimeError("could not find the kernel signature in the generated source")
    params_end = text.index(") {\n", match.end())
    body_start = params_end + len(") {\n")
    if text[body_start:body_start + len(source) + len(CLOSING)] != source + CLOSING:
        raise RuntimeError("kernel body not found where expected in the generated source")
    params = tuple(parse_param(p) for p in text[match.end():params_end].split(",\n"))
    return Signature(function=match.group(2),
                     template_args=template_args(match.group(1), text[body_start + len(source):]),
                     params=params, header=header, signature=text[len(header):body_start],
                     body=source)


def parse_param(line: str) -> Param:
    """Parse one parameter line of the generated signature."""
    match = _BUFFER_RE.fullmatch(line)
    if match:
        const, type_, ref, name, index = match.groups()
        return Param("buffer", type_, name, int(index), bool(const), ref == "&")
    match = _ATTRIBUTE_RE.fullmatch(line)
    if match and match.group(2) == match.group(3):
        return Param("attribute", match.group(1), match.group(2))
    raise UnsupportedKernelError(f"cannot run a kernel with the parameter `{line.strip()}` on the host")


def template_args(declaration: str | None, tail: str) -> tuple[str, ...]:
    """C++ template arguments of the kernel, from its declaration and MLX's instantiation line."""
    if declaration is None:
        return ()
    match = _INSTANTIATION_RE.search(tail)
    if match is None:
        raise RuntimeError("template instantiation not found in the generated source")
    kinds = [p.split()[0] for p in declaration.split(", ")]
    values = match.group(2).split(", ")
    # MLX prints bools as 1/0, which C++17 will not narrow to a bool template argument.
    return tuple(("true" if v == "1" else "false") if k == "bool" else v
                 for k, v in zip(kinds, values))
