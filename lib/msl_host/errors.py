"""The exceptions msl_host raises."""

from __future__ import annotations

from dataclasses import dataclass


class UnsupportedKernelError(ValueError):
    """The kernel uses a Metal feature the host cannot run faithfully."""


class HostCompileError(RuntimeError):
    """The host C++ compiler rejected the kernel."""


Position = tuple[int, int, int]


@dataclass(eq=False)
class KernelFault(RuntimeError):
    """A thread of the kernel did something Metal leaves undefined: an out-of-bounds or misaligned
    access, a barrier not reached by its whole threadgroup, a SIMD-group function reading an
    inactive lane, more threadgroup memory than Metal allows. Raised instead of running on."""

    kernel: str
    kind: str  # "out of bounds", "misaligned", "divergent barrier", "inactive lane", ...
    message: str
    buffer: str | None = None  # the buffer or threadgroup array accessed
    index: int | None = None  # element index, in the accessed type, from the buffer's first element
    size: int | None = None  # elements of that type the buffer holds
    valid: tuple[int, int] | None = None  # first and last valid element index
    thread: Position | None = None  # thread_position_in_grid
    threadgroup: Position | None = None  # threadgroup_position_in_grid
    thread_in_threadgroup: Position | None = None  # thread_position_in_threadgroup
    source: str | None = None  # "file:line" of the barrier or SIMD-group call

    def __post_init__(self) -> None:
        """Make the message the exception's argument, as RuntimeError(message) would."""
        RuntimeError.__init__(self, self.message)

    def __str__(self) -> str:
        """The one-line message."""
        return self.message
