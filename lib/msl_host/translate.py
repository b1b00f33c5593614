"""The C++ translation unit for one generated Metal kernel.

1. Refuse what cannot run faithfully on a CPU (simdgroup matrices, textures, ...).
2. Rewrite `threadgroup` declarations in the body into references to storage the threadgroup
   shares (``msl::tg_alloc``), numbered by slot.
3. In checked mode, rewrite every `device`/`constant`/`threadgroup` pointer type (the signature's
   buffers included) into ``msl::checked<T>``, which checks each access.
4. Append a launcher: an ``extern "C"`` function running the kernel for every thread of the grid,
   as a plain loop or, when the kernel has barriers or SIMD-group functions, as fibers.
Line breaks are kept and ``#line`` directives map compiler errors to the kernel's own lines.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .errors import UnsupportedKernelError
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
_THREADGROUP = re.compile(r"\bthreadgroup\b")
_TYPE = r"(?:(?:unsigned|signed|long|short)\s+)*[A-Za-z_][\w:]*(?:\s*<(?:[^<>;{}]|<[^<>;{}]*>)*>)?"
_POINTER = re.compile(r"(?<![\w:])(const\s+)?(?:volatile\s+)?(?:device|constant|threadgroup)\s+"
                      r"(const\s+)?(?:volatile\s+)?(" + _TYPE + r")\s*\*(?!\*)(\s*const\b)?")

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

extern "C" __attribute__((visibility("default"))) int {entry}(
    void* const* buffers, const int64_t* extents, const unsigned* grid, const unsigned* group_size,
    ::msl::fault_record* fault) {{
  static const char* const names[] = {{{names}}};
  ::msl::region regions[{nbuffers}];
  ::msl::make_regions(regions, buffers, extents, names, {nbuffers});
  const ::msl::grid_info G(grid, group_size);
{locals}
  auto body = [=](const ::msl::thread_ids& t) {{
    {function}(
        {arguments});
  }};
  return ::msl::run_grid<{fibers}, {slots}>(G, regions, {nbuffers}, fault, body);
}}
"""


def strip_comments(code: str) -> str:
    """`code` with // and /* */ comments blanked out (same length, same line breaks)."""
    return re.sub(r"//[^\n]*|/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), code, flags=re.S)


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


@dataclass(frozen=True)
class Declaration:
    """One `threadgroup T a[..], b;` statement: where it is and what it declares."""

    start: int
    end: int  # just past the `;`
    type: str
    declarators: tuple[tuple[str, str], ...]  # (name, array dimensions such as "[32][33]")


def threadgroup_declarations(code: str) -> list[Declaration]:
    """The threadgroup variable declarations in comment-free `code` (pointers and casts excluded)."""
    found = []
    for match in _THREADGROUP.finditer(code):
        end = code.find(";", match.end())
        if end < 0:
            continue
        statement = code[match.end():end]
        outside_brackets = re.sub(r"\[[^\[\]]*\]", "", statement)
        if re.search(r"[*&(){}]", outside_brackets):
            continue  # a pointer or reference type, a cast, a parameter
        if "=" in outside_brackets:
            raise UnsupportedKernelError(
                f"threadgroup variables cannot have an initializer in Metal: `threadgroup{statement};`")
        parts = split_top_level(statement)
        first = re.fullmatch(r"\s*(.*?)\s*\b([A-Za-z_]\w*)\s*((?:\[[^\]]*\]\s*)*)", parts[0], re.S)
        if first is None or not first.group(1):
            continue
        declarators = [(first.group(2), first.group(3).strip())]
        for part in parts[1:]:
            other = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*((?:\[[^\]]*\]\s*)*)", part, re.S)
            if other is None:
                raise UnsupportedKernelError(f"cannot read the declaration `threadgroup{statement};`")
            declarators.append((other.group(1), other.group(2).strip()))
        found.append(Declaration(match.start(), end + 1, first.group(1), tuple(declarators)))
    return found


def split_top_level(text: str) -> list[str]:
    """Split at the commas not inside <>, [] or ()."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "<[(":
            depth += 1
        elif c in ">])":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def rewrite_threadgroup(body: str, checked: bool) -> tuple[str, int]:
    """Turn each threadgroup declaration of the body into slots of shared storage; return the new
    body and the number of slots. Line breaks stay where they were."""
    out, pos, slot = [], 0, 0
    for decl in threadgroup_declarations(strip_comments(body)):
        statements = []
        for name, dims in decl.declarators:
            statements.append(f"typedef {decl.type} msl_tg_type_{slot}{dims}; "
                              f"auto& {name} = ::msl::tg_alloc<{str(checked).lower()}, "
                              f"msl_tg_type_{slot}>({slot}, \"{name}\");")
            slot += 1
        out += [body[pos:decl.start], " ".join(statements), "\n" * body.count("\n", decl.start, decl.end)]
        pos = decl.end
    return "".join(out + [body[pos:]]), slot


def rewrite_pointers(code: str) -> str:
    """`const device T*` and the like become `::msl::checked<const T>` (bounds-checked)."""

    def checked(m: re.Match) -> str:
        """The checked type for one match, keeping its line breaks."""
        const = "const " if m.group(1) or m.group(2) else ""
        type_ = " ".join(m.group(3).split())
        breaks = "\n" * m.group(0).count("\n")
        return f"{'const ' if m.group(4) else ''}::msl::checked<{const}{type_}>{breaks}"

    code = _POINTER.sub(checked, code)
    return re.sub(r"\breinterpret_cast\s*<\s*(?=(?:const\s+)?::msl::checked<)", "static_cast<", code)


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


def translation_unit(signature: Signature, source_name: str | None, checked: bool) -> str:
    """The complete C++ text: prelude, generated kernel with #line markers, launcher."""
    generated = f"<generated source of {signature.function}>"
    body_file = source_name if source_name is not None else generated
    prefix = signature.header + signature.signature
    prefix_lines = prefix.count("\n")
    body_line = 1 if source_name is not None else prefix_lines + 1
    closing_line = prefix_lines + signature.body.count("\n") + 2
    body, slots = rewrite_threadgroup(signature.body, checked)
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
        f"#line 1 {c_string(generated)}\n", prefix,
        f"#line {body_line} {c_string(body_file)}\n", body,
        f"\n#line {closing_line} {c_string(generated)}\n", CLOSING.lstrip("\n"),
        '#line 1 "<host launcher>"\n', launcher,
    ])
