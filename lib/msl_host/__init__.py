"""msl_host: run kernels written for ``mx.fast.metal_kernel`` on any CPU, from the Metal source MLX generates."""
from .runner import HostCompileError, HostKernel, UnsupportedKernelError, generated_source, metal_kernel

__all__ = ["HostCompileError", "HostKernel", "UnsupportedKernelError", "generated_source", "metal_kernel"]
