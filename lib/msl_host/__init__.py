"""msl_host: run kernels written for ``mx.fast.metal_kernel`` on any CPU, from the Metal source MLX generates.

See README.md in this directory. ``metal_kernel`` takes ``mx.fast.metal_kernel``'s arguments (plus
``source_name`` and ``bounds_check``) and returns a kernel called exactly like MLX's.
"""
from .errors import HostCompileError, KernelFault, UnsupportedKernelError
from .kernel import HostKernel, metal_kernel
from .source import generated_source

__all__ = ["HostCompileError", "HostKernel", "KernelFault", "UnsupportedKernelError", "generated_source",
           "metal_kernel"]
