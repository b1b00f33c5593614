"""The C++ translation unit for one generated Metal kernel.

1. Refuse what cannot run faithfully on a CPU (simdgroup matrices, textures, ...).
2. Rewrite the kernel's text (rewrite.py): threadgroup declarations, swizzles, a work tick in every
   loop and, in checked mode, checked pointers.
3. Append a launcher: an ``extern "C"`` function running the kernel for every thread of the grid,
   as a plain loop or, when the kernel has barriers or SIMD-group functions, as fibers.
Line breaks are kept and ``#line`` directives map compiler errors to the kernel's own lines.
"""

from __future__ import annotations

import functools
import re

from .errors import UnsupportedKernelError
from .rewrite import (member_names, rewrite_loops, rewrite_pointers, rewrite_swizzles, rewrite_threadgroup,
                      strip_comments, threadgroup_declarations)
from .source import CLOSING, Param, Signature

ENTRY_NAME = "msl_host_launch"
PRELUDE = "msl_prelude.h"

# Metal features with no faithful CPU equivalent here, and what to call them.
_REFUSED = (
    (r"\bsimdgroup_(?:matrix|float\d|half\d|bfloat\d|load|store|multiply\w*)", "simdgroup matrices"),
    (r"\b(?:texture|depth)(?:1d|2d|3d|cube|_buffer)\w*", "textures"),
    (r"\bsampler\b", "samplers"),
    (r"\w*imageblock\w*", "imageblocks"),
    (r"\braster_order_group\b", "raster order groups"),
    (r"\b(?:visible|intersection)_function_table\b", "function tables"),
    (r"\braytracing\b|\bacceleration_structure\b|\bintersector\b", "ray tracing"),
    (r"\bcommand_buffer\b", "indirect command buffers"),
    (r"\bos_log\b", "os_log logging"),
    (r"\bcomplex64_t\b", "complex64_t (MLX's complex type)"),
)
_SYNC_CALL = re.compile(r"\b(?:simd_\w+|quad_\w+|threadgroup_barrier|simdgroup_barrier)\s*\(")

# Value of each thread attribute MLX accepts (mlx/backend/common/metal_kernel.cpp), in terms of
# the launcher's `t` (msl::thread_ids) and `G` (msl::grid_info). 32 lanes per SIMD group.
ATTRIBUTES = {
    "thread_position_in_grid": "t.pos",
    "threads_per_grid": "G.grid",
    "grid_size": "G.grid",
    "grid_origin": "uint3(0u, 0u, 0u)",
    "thread_position_in_threadgroup": "t.local",
    "threads_per_threadgroup": "t.size",
    "dispatch_threads_per_threadgroup": "G.dispatch",
    "threadgroup_position_in_grid": "t.group",
    "threadgroups_per_grid": "G.groups",
    "thread_index_in_threadgroup": "t.index",
    "thread_index_in_simdgroup": "t.index % 32u",
    "simdgroup_index_in_threadgroup": "t.index / 32u",
    "threads_per_simdgroup": "32u",
    "thread_execution_width": "32u",
    "simdgroups_per_threadgroup": "(t.count + 31u) / 32u",
    "dispatch_simdgroups_per_threadgroup": "(G.dispatch_count + 31u) / 32u",
    "thread_index_in_quadgroup": "t.index % 4u",
    "quadgroup_index_in_threadgroup": "t.index / 4u",
    "quadgroups_per_threadgroup": "(t.count + 3u) / 4u",
    "dispatch_quadgroups_per_threadgroup": "(G.dispatch_count + 3u) / 4u",
}

_LAUNCHER = """
namespace msl {{
int file_rank(const char* file) {{
  static const char* const files[] = {{{files}}};
  for (int i = 0; i < {nfiles}; ++i) if (std::strcmp(file, files[i]) == 0) return i;
  return {nfiles};
}}
}}  // namespace msl

// SIGINT sets a flag the threads look at, from begin to end (msl_sync.h).
extern "C" __attribute__((visibility("default"))) void {entry}_sigint_begin() {{ ::msl::sigint_begin(); }}
extern "C" __attribute__((visibility("default"))) void {entry}_sigint_end() {{ ::msl::sigint_end(); }}

// options: the work budget per thread, and whether SIGINT may stop the launch
// (then called between {entry}_sigint_begin and _end).
// Returns 0, 1 after a fault, 2 when SIGINT arrived.
extern "C" __attribute__((visibility("default"))) int {entry}(
    void* const* buffers, const int64_t* extents, const unsigned* grid, const unsigned* group_size,
    ::msl::fault_record* fault, const int64_t* options) {{
  static const char* const names[] = {{{names}}};
  ::msl::region regions[{nbuffers}];
  ::msl::make_regions(regions, buffers, extents, names, {nbuffers});
  const ::msl::grid_info G(grid, group_size);
  const int64_t budget = options[0];
  const int64_t grant = ::msl::fresh_work(budget, false).grant;
  const bool interruptible = options[1] != 0;
{locals}
  auto body = [=](const ::msl::thread_ids& t) {{
    {function}(
        {arguments},
        grant, t.work);
  }};
  const int status = ::msl::run_grid<{fibers}, {slots}>(G, regions, {nbuffers}, fault, budget, interruptible, body);
  const bool stopped = ::msl::interrupted || fault->kind == ::msl::fault_interrupted;
  return interruptible && stopped ? 2 : status;
}}
"""


@functools.lru_cache(maxsize=1024)
def check_supported(name: str, header: str, source: str) -> None:
    """Raise UnsupportedKernelError if the kernel uses a feature the host cannot run."""
    code = strip_comments(header + "\n" + source)
    for pattern, feature in _REFUSED:
        match = re.search(pattern, code)
        if match:
            raise UnsupportedKernelError(
                f"kernel `{name}` uses `{match.group(0)}`: {feature} cannot run faithfully on the "
                "host (msl_host runs Metal compute: buffers, threadgroup memory, barriers, SIMD-group "
                "functions and atomics)")
    if threadgroup_declarations(strip_comments(header)):
        raise UnsupportedKernelError(
            f"kernel `{name}`: threadgroup variables must be declared in the kernel body, not the header")


def needs_fibers(header: str, source: str) -> bool:
    """Whether the kernel calls barriers or SIMD/quad-group functions (its threads then run as fibers)."""
    return _SYNC_CALL.search(strip_comments(header + "\n" + source)) is not None


def buffer_local(param: Param, checked: bool) -> str:
    """The launcher's local variable holding one buffer argument (a pointer, checked or plain)."""
    element = f"{'const ' if param.const else ''}{param.type}"
    if param.by_reference:
        return f"  {element}* const b{param.index} = static_cast<{element}*>(buffers[{param.index}]);"
    return (f"  const auto b{param.index} = ::msl::buffer_arg<{str(checked).lower()}, {element}>"
            f"(buffers, regions, {param.index});")


def argument(param: Param) -> str:
    """C++ expression passing one kernel parameter from the launcher."""
    if param.kind == "attribute":
        if param.name not in ATTRIBUTES:
            raise UnsupportedKernelError(f"the attribute `{param.name}` is not supported on the host")
        return ATTRIBUTES[param.name]
    return f"*b{param.index}" if param.by_reference else f"b{param.index}"


def c_string(text: str) -> str:
    """A C string literal for text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def with_work_arguments(signature: Signature) -> str:
    """The kernel's signature with two more parameters: `msl_work_`, the work units granted to the loops of the
    body, which they count down, and `msl_account_`, the thread's account the grants come from (MSL_LOOP_TICK,
    include/msl_sync.h)."""
    head, tail = signature.signature.rsplit(") {\n", 1)
    if tail:
        raise RuntimeError("the generated signature does not end with `) {`")
    return head + ", int64_t msl_work_, ::msl::work_state* msl_account_) {\n"


def translation_unit(signature: Signature, source_name: str | None, checked: bool, fast_math: bool) -> str:
    """The complete C++ text: prelude, generated kernel with #line markers, launcher. fast_math
    (math_mode="fast") defines __FAST_MATH__, as the Metal compiler does; the math stays exact. (Whether
    Metal defines it for "relaxed" too is not known here: it is not defined.)"""
    generated = f"<generated source of {signature.function}>"
    body_file = source_name if source_name is not None else generated
    prefix = signature.header + signature.signature
    prefix_lines = prefix.count("\n")
    body_line = 1 if source_name is not None else prefix_lines + 1
    closing_line = prefix_lines + signature.body.count("\n") + 2
    body, slots = rewrite_threadgroup(signature.body, checked)
    members = member_names(signature.header + "\n" + signature.body)
    body = rewrite_loops(rewrite_swizzles(body, members), kernel_body=True)
    header = rewrite_loops(rewrite_swizzles(signature.header, members), kernel_body=False)
    prefix = header + with_work_arguments(signature)
    if checked:
        prefix, body = rewrite_pointers(prefix), rewrite_pointers(body)
    function = signature.function
    if signature.template_args:
        function += "<" + ", ".join(signature.template_args) + ">"
    buffers = sorted((p for p in signature.params if p.kind == "buffer"), key=lambda p: p.index)
    fibers = needs_fibers(signature.header, signature.body)
    files = list(dict.fromkeys([generated, body_file]))  # in the order they appear
    launcher = _LAUNCHER.format(
        entry=ENTRY_NAME, files=", ".join(c_string(f) for f in files), nfiles=len(files),
        names=", ".join(c_string(p.name) for p in buffers),
        nbuffers=len(buffers), function=function, fibers=str(fibers).lower(), slots=slots,
        locals="\n".join(buffer_local(p, checked) for p in buffers),
        arguments=",\n        ".join(argument(p) for p in signature.params))
    return "".join([
        f'#include "{PRELUDE}"\n',
        "#define __FAST_MATH__ 1\n" if fast_math else "",
        f"#line 1 {c_string(generated)}\n", prefix,
        f"#line {body_line} {c_string(body_file)}\n", body,
        f"\n#line {closing_line} {c_string(generated)}\n", CLOSING.lstrip("\n"),
        '#line 1 "<host launcher>"\n', launcher,
    ])
