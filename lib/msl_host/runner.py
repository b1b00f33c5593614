"""Run simple ``mx.fast.metal_kernel`` kernels on a CPU, from the exact Metal source MLX generates.

Pipeline, for one kernel call:
1. Ask MLX for the Metal source it generates: trace the call inside ``mx.export_function``
   with tiny placeholder inputs (same dtype, ndim and "<8 elements" class) and
   ``verbose=True``, capturing what MLX prints on file descriptor 1.
2. Refuse features a sequential CPU run cannot reproduce (threadgroup memory, barriers,
   SIMD-group and quad-group functions, atomics).
3. Build one C++17 translation unit: ``msl_host.h`` + the generated source (its explicit
   instantiation line dropped, ``#line`` directives pointing errors at the .metal file) +
   an ``extern "C"`` launcher that runs every thread position of the grid in turn.
4. Compile it with the host compiler into a cached shared library, load it with ctypes,
   call it on numpy buffers and return the outputs as mx arrays.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import mlx.core as mx
import numpy as np

__all__ = [
    "HostCompileError",
    "HostKernel",
    "UnsupportedKernelError",
    "generated_source",
    "metal_kernel",
]

CXX_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-Wno-attributes")
HEADER_PATH = Path(__file__).with_name("msl_host.h")
ENTRY_NAME = "moe_host_launch"
MAX_THREADS_PER_THREADGROUP = 1024
CONSTANT_ARRAY_LIMIT = 8  # MLX passes inputs with fewer elements in `constant` memory
CLOSING = "\n}\n"  # what MLX writes after the kernel body

# numpy storage type per MLX dtype (bfloat16 travels as its uint16 bits).
_NUMPY_DTYPES = {
    mx.bool_: np.bool_,
    mx.int8: np.int8,
    mx.int16: np.int16,
    mx.int32: np.int32,
    mx.int64: np.int64,
    mx.uint8: np.uint8,
    mx.uint16: np.uint16,
    mx.uint32: np.uint32,
    mx.uint64: np.uint64,
    mx.float16: np.float16,
    mx.bfloat16: np.uint16,
    mx.float32: np.float32,
    mx.float64: np.float64,
}

# Source features with no faithful sequential equivalent, and what to call them.
_UNSUPPORTED = (
    (r"\bthreadgroup\b", "threadgroup memory"),
    (r"\w*barrier\w*", "barriers (threadgroup_barrier/simdgroup_barrier)"),
    (r"\w*simd\w*", "SIMD-group functions and attributes"),
    (r"\bquad_\w+|\w*quadgroup\w*", "quad-group functions and attributes"),
    (r"\w*atomic\w*", "atomics"),
    (r"\bthread_execution_width\b", "thread_execution_width"),
)

_source_cache: dict[tuple, str] = {}
_library_cache: dict[str, ctypes.CDLL] = {}
_capture_lock = threading.Lock()


class UnsupportedKernelError(ValueError):
    """The kernel uses a Metal feature the host path cannot run faithfully."""


class HostCompileError(RuntimeError):
    """The host C++ compiler rejected the kernel."""


@dataclass(frozen=True)
class Param:
    """One parameter of the generated kernel signature."""

    kind: str  # "buffer" or "attribute"
    type: str  # element type for buffers ("float"), "uint"/"uint3" for attributes
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
    prefix: str  # header + signature, up to and including ") {\n"
    body: str  # the kernel body (the user's `source`), followed in the source by CLOSING


# --------------------------------------------------------------------------- kernels


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
    source_name: str | None = None

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
        check_supported(self)
        inputs = [a if isinstance(a, mx.array) else mx.array(a) for a in inputs]
        text = generated_source(
            self,
            inputs=inputs,
            output_shapes=output_shapes,
            output_dtypes=output_dtypes,
            grid=grid,
            threadgroup=threadgroup,
            template=template,
        )
        if verbose:
            print(f"Generated source code for `{self.name}`:\n```\n{text}\n```", flush=True)
        signature = parse_signature(text, self.header, self.source)
        library = load_library(translation_unit(signature, self.source_name))
        return launch(library, signature, self, inputs, output_shapes, output_dtypes,
                      grid, threadgroup, init_value)


def metal_kernel(
    name: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    source: str,
    header: str = "",
    ensure_row_contiguous: bool = True,
    atomic_outputs: bool = False,
    source_name: str | None = None,
) -> HostKernel:
    """Define a kernel like ``mx.fast.metal_kernel``, runnable on the CPU."""
    if not output_names:
        raise ValueError("[metal_kernel] Must specify at least one output.")
    return HostKernel(name, tuple(input_names), tuple(output_names), source, header,
                      ensure_row_contiguous, atomic_outputs, source_name)


def check_supported(kernel: HostKernel) -> None:
    """Raise UnsupportedKernelError if the kernel uses a feature the host cannot run."""
    if kernel.atomic_outputs:
        raise UnsupportedKernelError(
            f"kernel `{kernel.name}`: atomic_outputs=True (atomics) is not supported on the host")
    code = strip_comments(kernel.header + "\n" + kernel.source)
    for pattern, feature in _UNSUPPORTED:
        match = re.search(pattern, code)
        if match:
            raise UnsupportedKernelError(
                f"kernel `{kernel.name}` uses `{match.group(0)}`: {feature} cannot run "
                "faithfully one thread at a time on the host")


def strip_comments(code: str) -> str:
    """Remove // and /* */ comments from C-like code."""
    return re.sub(r"//[^\n]*|/\*.*?\*/", " ", code, flags=re.S)


# --------------------------------------------------------------------------- generated source


def generated_source(
    kernel: HostKernel,
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


def trace_source(kernel: HostKernel, inputs: Sequence[mx.array],
                 output_shapes: Sequence[Sequence[int]], output_dtypes: Sequence[mx.Dtype],
                 template: list[tuple[str, Any]]) -> str:
    """Have MLX print the generated source while exporting the call, and extract it."""
    mlx_kernel = mx.fast.metal_kernel(
        name=kernel.name, input_names=list(kernel.input_names),
        output_names=list(kernel.output_names), source=kernel.source, header=kernel.header,
        ensure_row_contiguous=kernel.ensure_row_contiguous, atomic_outputs=kernel.atomic_outputs)

    def call(*args: mx.array) -> list[mx.array]:
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


# --------------------------------------------------------------------------- parsing

_BUFFER_RE = re.compile(
    r"\s*(const\s+)?(?:device|constant)\s+(\w+)\s*([*&])\s*(\w+)\s*\[\[buffer\((\d+)\)\]\]")
_ATTRIBUTE_RE = re.compile(r"\s*(uint3|uint)\s+(\w+)\s*\[\[(\w+)\]\]")
_KERNEL_RE = re.compile(r"(?:template <([^>\n]*)>\n)?\[\[kernel\]\] void (\w+)\(\n")
_INSTANTIATION_RE = re.compile(r"decltype\((\w+)<([^<>()]*)>\)")


def parse_signature(text: str, header: str, source: str) -> Signature:
    """Split generated source into header+signature, body and template instantiation."""
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
                     params=params, prefix=text[:body_start], body=source)


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


# --------------------------------------------------------------------------- C++ generation

# Value of each supported thread attribute, in terms of the launcher's locals.
_ATTRIBUTE_VALUES = {
    "thread_position_in_grid": "pos",
    "thread_position_in_threadgroup": "local",
    "threadgroup_position_in_grid": "group",
    "threads_per_threadgroup": "group_size",
    "dispatch_threads_per_threadgroup": "dispatch",
    "threadgroups_per_grid": "groups",
    "threads_per_grid": "grid",
    "grid_size": "grid",
    "grid_origin": "uint3(0u, 0u, 0u)",
    "thread_index_in_threadgroup": "index",
}

# Metal `dispatchThreads`, as MLX calls it with threadgroup = min(threadgroup, grid): the
# grid is cut into ceil(grid / dispatch) threadgroups; edge threadgroups are smaller and
# only positions < grid run. Following the MSL specification, threads_per_threadgroup is
# the size of the current (possibly smaller, edge) threadgroup, dispatch_threads_per_threadgroup
# the dispatched size, and thread_index_in_threadgroup linearises the position within the
# current threadgroup's size.
_LAUNCHER = """
extern "C" void {entry}(void* const* buffers, const unsigned* grid_in, const unsigned* group_in) {{
  const uint3 grid(grid_in[0], grid_in[1], grid_in[2]);
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  const uint3 dispatch(min(group_in[0], grid.x), min(group_in[1], grid.y), min(group_in[2], grid.z));
  const uint3 groups((grid.x + dispatch.x - 1) / dispatch.x, (grid.y + dispatch.y - 1) / dispatch.y,
                     (grid.z + dispatch.z - 1) / dispatch.z);
  for (uint gz = 0; gz < groups.z; ++gz)
  for (uint gy = 0; gy < groups.y; ++gy)
  for (uint gx = 0; gx < groups.x; ++gx) {{
    const uint3 group(gx, gy, gz);
    const uint3 first = group * dispatch;
    const uint3 group_size(min(dispatch.x, grid.x - first.x), min(dispatch.y, grid.y - first.y),
                           min(dispatch.z, grid.z - first.z));
    for (uint lz = 0; lz < group_size.z; ++lz)
    for (uint ly = 0; ly < group_size.y; ++ly)
    for (uint lx = 0; lx < group_size.x; ++lx) {{
      const uint3 local(lx, ly, lz);
      const uint3 pos = first + local;
      const uint index = (lz * group_size.y + ly) * group_size.x + lx;
      {function}(
        {arguments});
    }}
  }}
}}
"""


def argument(param: Param) -> str:
    """C++ expression passing one kernel parameter from the launcher."""
    if param.kind == "attribute":
        if param.name not in _ATTRIBUTE_VALUES:
            raise UnsupportedKernelError(f"the attribute `{param.name}` is not supported on the host")
        return _ATTRIBUTE_VALUES[param.name]
    pointer = f"({'const ' if param.const else ''}{param.type}*)buffers[{param.index}]"
    return f"*{pointer}" if param.by_reference else pointer


def translation_unit(signature: Signature, source_name: str | None) -> str:
    """The complete C++ text: header, generated kernel with #line markers, launcher."""
    generated_name = f"<generated source of {signature.function}>"
    closing_line = signature.prefix.count("\n") + signature.body.count("\n") + 2
    body_file = source_name if source_name is not None else generated_name
    body_line = 1 if source_name is not None else signature.prefix.count("\n") + 1
    function = signature.function
    if signature.template_args:
        function += "<" + ", ".join(signature.template_args) + ">"
    launcher = _LAUNCHER.format(entry=ENTRY_NAME, function=function,
                                arguments=",\n        ".join(argument(p) for p in signature.params))
    return "".join([
        '#line 1 "msl_host.h"\n', HEADER_PATH.read_text(),
        f"#line 1 {c_string(generated_name)}\n", signature.prefix,
        f"#line {body_line} {c_string(body_file)}\n", signature.body,
        f"\n#line {closing_line} {c_string(generated_name)}\n", CLOSING.lstrip("\n"),
        '#line 1 "<host launcher>"\n', launcher,
    ])


def c_string(text: str) -> str:
    """A C string literal for text (used in #line directives)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- compiling


def compiler() -> list[str]:
    """The host C++ compiler command: $CXX or c++."""
    return shlex.split(os.environ.get("CXX") or "c++")


def cache_dir() -> Path:
    """Directory of compiled kernel libraries: $XDG_CACHE_HOME or ~/.cache, /msl-host."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "msl-host"


def library_path(cpp: str) -> Path:
    """Cache path of the library built from this C++ text with this compiler and flags."""
    digest = hashlib.sha256("\0".join([cpp, *compiler(), *CXX_FLAGS]).encode()).hexdigest()
    return cache_dir() / f"{digest}.so"


def load_library(cpp: str) -> ctypes.CDLL:
    """Compile the C++ text (unless cached on disk) and load it (unless loaded already)."""
    path = library_path(cpp)
    if str(path) not in _library_cache:
        if not path.exists():
            compile_library(cpp, path)
        library = ctypes.CDLL(str(path))
        getattr(library, ENTRY_NAME).restype = None
        _library_cache[str(path)] = library
    return _library_cache[str(path)]


def compile_library(cpp: str, path: Path) -> None:
    """Compile cpp into the shared library `path`, atomically (temp name, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_so = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cpp_path = Path(tmp) / "kernel.cpp"
            cpp_path.write_text(cpp)
            result = subprocess.run([*compiler(), *CXX_FLAGS, "-o", tmp_so, str(cpp_path)],
                                    capture_output=True, text=True)
        if result.returncode != 0:
            raise HostCompileError("host compilation of the Metal kernel failed:\n"
                                   + error_lines(result.stderr))
        os.replace(tmp_so, path)
    finally:
        if os.path.exists(tmp_so):
            os.remove(tmp_so)


def error_lines(stderr: str, limit: int = 60) -> str:
    """The first `limit` lines of the compiler's diagnostics."""
    return "\n".join(stderr.splitlines()[:limit])


# --------------------------------------------------------------------------- running


def numpy_dtype(dtype: mx.Dtype) -> type:
    """numpy storage dtype for an MLX dtype."""
    if dtype not in _NUMPY_DTYPES:
        raise UnsupportedKernelError(f"dtype {dtype} is not supported on the host")
    return _NUMPY_DTYPES[dtype]


def to_numpy(a: mx.array, contiguous: bool) -> np.ndarray:
    """View (or copy) an mx array as numpy; bfloat16 becomes its uint16 bits."""
    numpy_dtype(a.dtype)
    view = np.asarray(mx.view(a, mx.uint16) if a.dtype == mx.bfloat16 else a)
    return np.ascontiguousarray(view) if contiguous else view


def aligned(a: np.ndarray, alignment: int = 64) -> np.ndarray:
    """`a`, or a copy of it, starting on an `alignment`-byte boundary as a Metal buffer does
    (vector loads such as float4 may assume 16-byte alignment)."""
    if a.ctypes.data % alignment == 0:
        return a
    raw = np.empty(a.nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    out = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def from_numpy(buffer: np.ndarray, dtype: mx.Dtype) -> mx.array:
    """Turn an output buffer back into an mx array of `dtype`."""
    out = mx.array(buffer)
    return mx.view(out, mx.bfloat16) if dtype == mx.bfloat16 else out


def output_buffer(shape: Sequence[int], dtype: mx.Dtype, init_value: float | None) -> np.ndarray:
    """An output buffer, filled with init_value cast to dtype (as MLX does) when given."""
    storage = numpy_dtype(dtype)
    if init_value is None:
        return np.empty(tuple(shape), storage)
    fill = mx.array(init_value, mx.float32).astype(dtype)
    return np.full(tuple(shape), to_numpy(fill, True), storage)


def buffer_arrays(signature: Signature, kernel: HostKernel, arrays: list[np.ndarray],
                  outputs: list[np.ndarray]) -> list[np.ndarray]:
    """numpy arrays for every buffer index: data, *_shape, *_strides, *_ndim, outputs."""
    by_name = dict(zip(kernel.input_names, arrays))
    by_name.update(zip(kernel.output_names, outputs))
    buffers: dict[int, np.ndarray] = {}
    for param in signature.params:
        if param.kind != "buffer":
            continue
        if param.name in by_name:
            buffers[param.index] = by_name[param.name]
            continue
        base, _, what = param.name.rpartition("_")
        a = by_name[base]
        if what == "shape":
            buffers[param.index] = np.array(a.shape, np.int32)
        elif what == "strides":
            buffers[param.index] = np.array([s // a.itemsize for s in a.strides], np.int64)
        else:
            buffers[param.index] = np.array(a.ndim, np.int32)
    return [buffers[i] for i in range(len(buffers))]


def launch(library: ctypes.CDLL, signature: Signature, kernel: HostKernel,
           inputs: Sequence[mx.array], output_shapes: Sequence[Sequence[int]],
           output_dtypes: Sequence[mx.Dtype], grid: Sequence[int],
           threadgroup: Sequence[int], init_value: float | None) -> list[mx.array]:
    """Prepare buffers, run the kernel over the whole grid, return the outputs."""
    if len(output_shapes) != len(kernel.output_names) or len(output_dtypes) != len(kernel.output_names):
        raise ValueError(f"[metal_kernel] Expected {len(kernel.output_names)} output shapes and dtypes.")
    if any(t < 1 for t in threadgroup) or np.prod(threadgroup) > MAX_THREADS_PER_THREADGROUP:
        raise ValueError(f"Thread group size {tuple(threadgroup)} must be positive with at most "
                         f"{MAX_THREADS_PER_THREADGROUP} threads in all.")
    arrays = [aligned(to_numpy(a, kernel.ensure_row_contiguous)) for a in inputs]
    outputs = [aligned(output_buffer(s, d, init_value)) for s, d in zip(output_shapes, output_dtypes)]
    buffers = buffer_arrays(signature, kernel, arrays, outputs)
    pointers = (ctypes.c_void_p * len(buffers))(*[b.ctypes.data for b in buffers])
    getattr(library, ENTRY_NAME)(pointers, (ctypes.c_uint * 3)(*grid),
                                 (ctypes.c_uint * 3)(*threadgroup))
    return [from_numpy(o, d) for o, d in zip(outputs, output_dtypes)]
