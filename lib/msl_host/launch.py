"""Running a compiled kernel: buffers as Metal sees them, the ctypes call, faults as exceptions."""

from __future__ import annotations

import ctypes
import signal
import threading
from typing import Sequence

import mlx.core as mx
import numpy as np

from .errors import KernelFault, UnsupportedKernelError
from .source import Definition, Signature
from .translate import ENTRY_NAME

MAX_THREADS_PER_THREADGROUP = 1024
TG_MEMORY_LIMIT = 32768
# Work units one thread may spend: a loop iteration is one, a wait at a barrier or SIMD-group function
# as many as its threadgroup has threads (README, "Work budget": how the value was chosen).
DEFAULT_WORK_BUDGET = 2**28

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

_KINDS = {1: "out of bounds", 2: "misaligned", 3: "divergent barrier", 4: "inactive lane",
          5: "threadgroup memory", 6: "error", 7: "work budget"}
INTERRUPTED = 2  # the launcher's status when SIGINT arrived


class FaultRecord(ctypes.Structure):
    """msl::fault_record (include/msl_check.h)."""

    _fields_ = [
        ("kind", ctypes.c_int32), ("line", ctypes.c_int32), ("index", ctypes.c_int64),
        ("first", ctypes.c_int64), ("last", ctypes.c_int64), ("elem_size", ctypes.c_int64),
        ("pos", ctypes.c_uint32 * 3), ("group", ctypes.c_uint32 * 3), ("local", ctypes.c_uint32 * 3),
        ("buffer", ctypes.c_char * 64), ("file", ctypes.c_char * 256), ("detail", ctypes.c_char * 512),
    ]


def numpy_dtype(dtype: mx.Dtype) -> type:
    """numpy storage dtype for an MLX dtype."""
    if dtype not in _NUMPY_DTYPES:
        raise UnsupportedKernelError(f"dtype {dtype} is not supported on the host")
    return _NUMPY_DTYPES[dtype]


def to_numpy(a: mx.array, contiguous: bool) -> np.ndarray:
    """The array as Metal would get it, in memory aligned as a Metal buffer is: row-contiguous (a copy
    if need be) or, for ensure_row_contiguous=False, with MLX's real strides (strided_copy)."""
    numpy_dtype(a.dtype)
    view = np.asarray(mx.view(a, mx.uint16) if a.dtype == mx.bfloat16 else a)
    return aligned(np.ascontiguousarray(view)) if contiguous else strided_copy(view)


def aligned_bytes(nbytes: int, alignment: int = 64) -> np.ndarray:
    """`nbytes` uninitialised bytes starting on an `alignment`-byte boundary."""
    raw = np.empty(nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes]


def aligned(a: np.ndarray) -> np.ndarray:
    """`a` (row-contiguous), or a copy of it, starting on a 64-byte boundary as a Metal buffer does."""
    if a.ctypes.data % 64 == 0:
        return a
    out = aligned_bytes(a.nbytes).view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def strided_copy(view: np.ndarray) -> np.ndarray:
    """A strided view, over a copy of the bytes it spans whose lowest byte is 64-byte aligned (MLX's CPU
    memory is 8 bytes past a 16-byte boundary; a Metal buffer starts aligned, so a float4 read of a
    float32 input is aligned there). The view's offset into its MLX buffer is not known here: the copy
    puts the lowest byte it spans where Metal puts the buffer's first one."""
    lo, hi = extent(view)
    raw = aligned_bytes(hi - lo)
    ctypes.memmove(raw.ctypes.data, view.ctypes.data + lo, hi - lo)
    return np.ndarray(view.shape, view.dtype, buffer=raw, offset=-lo, strides=view.strides)


def extent(a: np.ndarray) -> tuple[int, int]:
    """Bytes a (possibly strided) array covers, relative to its first element: [lo, hi)."""
    if a.size == 0:
        return 0, 0
    spans = [(n - 1) * s for n, s in zip(a.shape, a.strides)]
    return sum(min(0, s) for s in spans), sum(max(0, s) for s in spans) + a.itemsize


def output_buffer(shape: Sequence[int], dtype: mx.Dtype, init_value: float | None) -> np.ndarray:
    """An output buffer, filled with init_value cast to dtype (as MLX does) when given."""
    storage = numpy_dtype(dtype)
    if init_value is None:
        return aligned(np.empty(tuple(shape), storage))
    fill = mx.array(init_value, mx.float32).astype(dtype)
    return aligned(np.full(tuple(shape), to_numpy(fill, True), storage))


def from_numpy(buffer: np.ndarray, dtype: mx.Dtype) -> mx.array:
    """Turn an output buffer back into an mx array of `dtype`."""
    out = mx.array(buffer)
    return mx.view(out, mx.bfloat16) if dtype == mx.bfloat16 else out


def buffer_arrays(signature: Signature, kernel: Definition, arrays: list[np.ndarray],
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


def check_launch(kernel: Definition, output_shapes: Sequence, output_dtypes: Sequence,
                 threadgroup: Sequence[int]) -> None:
    """Raise ValueError for calls MLX would refuse."""
    for given, what in ((output_shapes, "output_shapes"), (output_dtypes, "output_dtypes")):
        if len(given) != len(kernel.output_names):
            raise ValueError(f"[metal_kernel] Expected `{what}` to have size {len(kernel.output_names)} "
                             f"but got size {len(given)}.")
    if any(t < 1 for t in threadgroup) or np.prod(threadgroup) > MAX_THREADS_PER_THREADGROUP:
        raise ValueError(f"Thread group size {tuple(threadgroup)} must be positive with at most "
                         f"{MAX_THREADS_PER_THREADGROUP} threads in all.")


def run(library: ctypes.CDLL, signature: Signature, kernel: Definition, inputs: Sequence[mx.array],
        output_shapes: Sequence[Sequence[int]], output_dtypes: Sequence[mx.Dtype], grid: Sequence[int],
        threadgroup: Sequence[int], init_value: float | None) -> list[mx.array]:
    """Prepare buffers, run the kernel over the whole grid, return the outputs (or raise KernelFault)."""
    arrays = [to_numpy(a, kernel.ensure_row_contiguous) for a in inputs]
    outputs = [output_buffer(s, d, init_value) for s, d in zip(output_shapes, output_dtypes)]
    buffers = buffer_arrays(signature, kernel, arrays, outputs)
    pointers = (ctypes.c_void_p * max(1, len(buffers)))(*[b.ctypes.data for b in buffers])
    extents = (ctypes.c_int64 * max(1, 2 * len(buffers)))(*[x for b in buffers for x in extent(b)])
    fault = FaultRecord()
    interruptible = threading.current_thread() is threading.main_thread()
    options = (ctypes.c_int64 * 2)(kernel.work_budget, interruptible)
    args = (pointers, extents, (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*threadgroup), ctypes.byref(fault),
            options)
    status = interruptible_launch(library, args) if interruptible else getattr(library, ENTRY_NAME)(*args)
    if status == INTERRUPTED:
        signal.raise_signal(signal.SIGINT)  # Python's own handler: KeyboardInterrupt, unless replaced
        raise KeyboardInterrupt(f"kernel `{kernel.name}` interrupted")
    if status != 0:
        raise kernel_fault(kernel.name, fault)
    return [from_numpy(o, d) for o, d in zip(outputs, output_dtypes)]


def interruptible_launch(library: ctypes.CDLL, args: tuple) -> int:
    """Launch with the library's SIGINT flag in place. A SIGINT that came before it was installed has reached
    Python's handler instead: pthread_sigmask runs the pending handlers, so it raises here, before the launch."""
    try:
        getattr(library, ENTRY_NAME + "_sigint_begin")()
        signal.pthread_sigmask(signal.SIG_BLOCK, ())  # blocks nothing; runs Python's pending signal handlers
        return getattr(library, ENTRY_NAME)(*args)
    finally:
        getattr(library, ENTRY_NAME + "_sigint_end")()


def position(values: ctypes.Array) -> tuple[int, int, int]:
    """A uint3 from the fault record."""
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def kernel_fault(name: str, f: FaultRecord) -> KernelFault:
    """The KernelFault a fault record describes, with its one-line message."""
    kind = _KINDS.get(f.kind, "error")
    buffer, detail = f.buffer.decode(errors="replace"), f.detail.decode(errors="replace")
    source = f"{f.file.decode(errors='replace')}:{f.line}" if f.line else None
    thread, group, local = position(f.pos), position(f.group), position(f.local)
    who = f"thread {thread} = threadgroup {group}, thread {local} in the threadgroup"
    fields = dict(kernel=name, kind=kind, thread=thread, threadgroup=group, thread_in_threadgroup=local,
                  source=source)
    if kind == "misaligned":
        message = (f"kernel `{name}`: misaligned pointer into `{buffer}` at byte offset {f.index}: its type needs "
                   f"{f.elem_size}-byte alignment, by {who}")
        return KernelFault(message=message, buffer=buffer, index=f.index, **fields)
    if kind == "out of bounds":
        size = f.last - f.first + 1
        where = "threadgroup array " if detail == "threadgroup array" else ""
        valid = f"valid {f.first}..{f.last}" if size > 0 else "none valid"
        offset = f" ({detail})" if detail.startswith("byte offset") else ""
        message = (f"kernel `{name}`: out-of-bounds access to {where}`{buffer}` at element {f.index}{offset} "
                   f"(it holds {size} elements, {valid}) by {who}")
        return KernelFault(message=message, buffer=buffer, index=f.index, size=size, valid=(f.first, f.last),
                           **fields)
    if kind == "divergent barrier":
        message = f"kernel `{name}`: divergent threadgroup_barrier at {source} in threadgroup {group}: {detail}"
    elif kind == "inactive lane":
        message = f"kernel `{name}`: {detail}; at {source}, by {who}"
    elif kind == "work budget":
        message = (f"kernel `{name}`: {who} was still running at {source} after its work budget of "
                   f"{f.index} (loop iterations; a wait at a barrier or SIMD-group function counts as many "
                   f"as the threadgroup has threads): a loop that never ends? (metal_kernel's work_budget= "
                   f"raises the budget)")
    elif kind == "threadgroup memory":
        message = (f"kernel `{name}`: threadgroup memory: `{buffer}` would end at byte {f.elem_size}, past the "
                   f"{TG_MEMORY_LIMIT} bytes Metal gives a threadgroup")
    else:
        message = f"kernel `{name}`: {detail or 'the kernel threw a C++ exception'}, in {who}"
    return KernelFault(message=message, buffer=buffer or None, **fields)
