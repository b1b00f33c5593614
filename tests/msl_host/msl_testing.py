"""Helpers shared by the msl_host tests."""

import mlx.core as mx
import numpy as np

import msl_host as host


def run1(source, inputs, out_shape, out_dtype=mx.float32, grid=None, threadgroup=(32, 1, 1), name="k",
         input_names=None, **kernel_options):
    """Define a one-output kernel over `inputs` (named a, b, c, ...) and run it."""
    names = input_names or [chr(ord("a") + i) for i in range(len(inputs))]
    call = {k: kernel_options.pop(k) for k in ("template", "init_value") if k in kernel_options}
    kernel = host.metal_kernel(name, names, ["out"], source, **kernel_options)
    (out,) = kernel(inputs=inputs, output_shapes=[out_shape], output_dtypes=[out_dtype],
                    grid=grid or (int(np.prod(out_shape)), 1, 1), threadgroup=threadgroup, **call)
    return out


def as_f64(a) -> np.ndarray:
    """Any mx/numpy array as float64 numpy."""
    return np.asarray(a.astype(mx.float32) if isinstance(a, mx.array) else a, np.float64)


def rel_err(got, want) -> float:
    """max |got - want| / max(|want|, tiny)."""
    got, want = as_f64(got), as_f64(want)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


TOL = {mx.float32: 1e-5, mx.float16: 3e-3, mx.bfloat16: 2e-2}
