"""Rewrites of a kernel's Metal text into the C++ msl_host's headers compile, each keeping every line break
(so that ``#line`` directives still map the compiler's messages to the kernel's own lines).

- threadgroup declarations in the body become references to storage the threadgroup shares
  (``msl::tg_alloc``), numbered by slot; in checked mode a threadgroup array passed as a pointer
  goes through ``msl::tg_decay``;
- swizzles (``v.zyx``, ``v.xy = ...``) become calls of the vectors' member templates;
- a work tick goes after every ``for`` and ``while`` condition (the work budget);
- in checked mode every `device`/`constant`/`threadgroup` pointer type becomes ``msl::checked<T>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UnsupportedKernelError

_THREADGROUP = re.compile(r"\bthreadgroup\b")
_TYPE = r"(?:(?:unsigned|signed|long|short)\s+)*[A-Za-z_][\w:]*(?:\s*<(?:[^<>;{}]|<[^<>;{}]*>)*>)?"
_POINTER = re.compile(r"(?<![\w:])(const\s+)?(?:volatile\s+)?(?:device|constant|threadgroup)\s+"
                      r"(const\s+)?(?:volatile\s+)?(" + _TYPE + r")\s*\*(?!\*)(\s*const\b)?")
_SWIZZLE_NAME = r"(?:[xyzw]{2,4}|[rgba]{2,4})\b"
_SWIZZLE = re.compile(r"(?<=[\w)\]])(\s*(?:\.|->)\s*)(" + _SWIZZLE_NAME + r")(?!\s*\()")
_ASSIGNMENT = re.compile(r"\s*(?:[-+*/%&|^]|<<|>>)?=(?!=)")
_COMPONENTS = {**{c: i for i, c in enumerate("xyzw")}, **{c: i for i, c in enumerate("rgba")}}
_LOOP = re.compile(r"\b(for|while)\s*\(")
# A condition that declares a variable (`while (uint n = next())`): no tick can be appended to it.
_DECLARATION = re.compile(r"\s*(?:const\s+)?[A-Za-z_][\w:]*(?:<[^;]*>)?[\s*&]+[A-Za-z_]\w*\s*(?:=(?!=)|\{)")
# The init of a counted for loop: one integer declared (`uint k = 0`).
_COUNTER = re.compile(r"\s*(?:(?:unsigned|signed|long|short)\s+)*[A-Za-z_][\w:]*\s+([A-Za-z_]\w*)\s*=[^,;]*")
_CLASS_HEAD = re.compile(r"\b(?:struct|class|union)\b[^=();{}]*$")
_SUBSCRIPT = re.compile(r"\s*\[")
_NOT_DECAYED = re.compile(r"(?:\b(?:sizeof|alignof|decltype)\s*\(?|&)\s*$")


def strip_comments(code: str) -> str:
    """`code` with // and /* */ comments blanked out (same length, same line breaks)."""
    return re.sub(r"//[^\n]*|/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), code, flags=re.S)


def code_only(code: str) -> str:
    """`code` with comments and the contents of string literals blanked out (same length, same lines)."""
    return re.sub(r'"(?:\\.|[^"\\\n])*"', lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', strip_comments(code))


def matching(code: str, open_at: int) -> int | None:
    """Index of the bracket closing the one at `open_at` (any of ( [ {), or None."""
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] in "([{":
            depth += 1
        elif code[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return None


def top_level(code: str, start: int, end: int, char: str) -> list[int]:
    """Positions of `char` in code[start:end] outside brackets."""
    found, depth = [], 0
    for i in range(start, end):
        if code[i] in "([{":
            depth += 1
        elif code[i] in ")]}":
            depth -= 1
        elif code[i] == char and depth == 0:
            found.append(i)
    return found


def edited(code: str, edits: list[tuple[int, int, str]]) -> str:
    """`code` with each (start, end, text) edit made: code[start:end] replaced by text (inserted where
    start == end); positions count in the original, edits do not overlap."""
    out, pos = [], 0
    for start, end, text in sorted(edits, key=lambda e: e[0]):
        out += [code[pos:start], text]
        pos = end
    return "".join(out + [code[pos:]])


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
    body and the number of slots. In checked mode, the arrays declared are decayed where passed on
    (decay_arrays)."""
    out, pos, slot = [], 0, 0
    arrays: dict[str, int] = {}  # name: dimensions, of the arrays declared so far
    for decl in threadgroup_declarations(strip_comments(body)):
        statements = []
        for name, dims in decl.declarators:
            statements.append(f"typedef {decl.type} msl_tg_type_{slot}{dims}; "
                              f"auto& {name} = ::msl::tg_alloc<{str(checked).lower()}, "
                              f"msl_tg_type_{slot}>({slot}, \"{name}\");")
            slot += 1
        text = body[pos:decl.start]
        out += [decay_arrays(text, arrays) if checked else text, " ".join(statements),
                "\n" * body.count("\n", decl.start, decl.end)]
        arrays.update((name, dims.count("[")) for name, dims in decl.declarators if dims)
        pos = decl.end
    return "".join(out + [decay_arrays(body[pos:], arrays) if checked else body[pos:]]), slot


def decay_arrays(code: str, arrays: dict[str, int]) -> str:
    """Wrap each use of a threadgroup array (or of a row of one) as a value, such as `f(buf)` or
    `f(tile[i])`, in ``::msl::tg_decay(...)``, which makes the checked array a checked pointer where
    Metal's array becomes a pointer (so a helper template taking `threadgroup T*` deduces T). Element
    accesses, sizeof, decltype and & are left alone."""
    if not arrays:
        return code
    bare = code_only(code)
    names = re.compile(r"(?<![\w.>:])(" + "|".join(map(re.escape, arrays)) + r")\b")
    edits = []
    for m in names.finditer(bare):
        if _NOT_DECAYED.search(bare[max(0, m.start() - 40):m.start()]):
            continue
        end, subscripts = m.end(), 0
        while (bracket := _SUBSCRIPT.match(bare, end)) and (close := matching(bare, bracket.end() - 1)):
            end, subscripts = close + 1, subscripts + 1
        if subscripts < arrays[m.group(1)]:
            edits += [(m.start(), m.start(), "::msl::tg_decay("), (end, end, ")")]
    return edited(code, edits)


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


def member_names(code: str) -> set[str]:
    """Names like swizzles (`xy`, `bar`) that the struct, class and union bodies of `code` use other than
    after `.` or `->`: most likely members of the kernel's own types."""
    bare = code_only(code)
    names = set()
    for start, end in class_bodies(bare):
        for m in re.finditer(r"\b" + _SWIZZLE_NAME, bare[start:end]):
            if not re.search(r"(?:\.|->)\s*$", bare[max(0, start + m.start() - 8):start + m.start()]):
                names.add(m.group(0))
    return names


def rewrite_swizzles(code: str, members: set[str]) -> str:
    """A swizzle read such as `v.zyx` becomes `v.template msl_swizzle<2, 1, 0>()` (a new vector), a write
    (`v.xy = ...`, `v.xy += ...`) `v.template msl_swizzle_ref<0, 1>() = ...`. `members` (member_names of the
    kernel's header and body) are left alone: `p.xy` with a struct member `xy` stays a member access."""
    bare = code_only(code)
    edits = []
    for m in _SWIZZLE.finditer(bare):
        if m.group(2) in members:
            continue
        member = "msl_swizzle_ref" if _ASSIGNMENT.match(bare, m.end()) else "msl_swizzle"
        indices = ", ".join(str(_COMPONENTS[c]) for c in m.group(2))
        edits.append((m.start(2), m.end(2), f"template {member}<{indices}>()"))
    return edited(code, edits)


def class_bodies(code: str) -> list[tuple[int, int]]:
    """The (start, end) of each struct, class or union body in `code` (comment-free)."""
    bodies, open_braces, segment = [], [], 0
    for i, c in enumerate(code):
        if c == "{":
            open_braces.append((i, _CLASS_HEAD.search(code, segment, i) is not None))
        elif c == "}" and open_braces:
            start, is_class = open_braces.pop()
            if is_class:
                bodies.append((start, i))
        if c in "{};":
            segment = i + 1
    return bodies


def counted_loop(bare: str, init_start: int, cond_start: int, cond_end: int, close: int) -> str | None:
    """For `for (T v = a; v < B; ++v) body` (or <=, and v++, v += 3; or counting down with > >= -- -=) whose
    body does not change v: an MSL_COUNTED(...) test, true when compiled where B is a constant that v reaches
    without overflowing its type (the loop then ends by itself and needs no tick). Else None."""
    init = _COUNTER.fullmatch(bare, init_start, cond_start)
    if init is None:
        return None
    v = re.escape(init.group(1))
    cond = re.fullmatch(rf"\s*{v}\s*(<=?|>=?)\s*([\w\s.+\-*/%():]+?)\s*", bare[cond_start + 1:cond_end])
    step = re.fullmatch(rf"\s*(?:(\+\+|--)\s*{v}|{v}\s*(\+\+|--)|{v}\s*([-+])=\s*(\d+)[uU]?)\s*",
                        bare[cond_end + 1:close])
    if cond is None or step is None:
        return None
    sign = (step.group(1) or step.group(2) or step.group(3))[0]
    if (sign == "+") != cond.group(1).startswith("<"):
        return None
    body = loop_body(bare, close + 1)
    if body is None or re.search(rf"(?:\+\+|--)\s*\b{v}\b|\b{v}\b\s*(?:\+\+|--|(?:[-+*/%&|^]|<<|>>)?=(?!=))"
                                 rf"|&\s*\b{v}\b", body):
        return None
    return (f"MSL_COUNTED({init.group(1)}, ({cond.group(2).strip()}), {sign}{step.group(4) or 1}, "
            f"{str(cond.group(1).endswith('=')).lower()})")


def loop_body(bare: str, after: int) -> str | None:
    """The statement a loop header ending at `after` governs: a braced block, or one simple statement
    (None for an unbraced if, loop or switch, whose end is not looked for)."""
    start = len(bare[:after]) + len(bare[after:]) - len(bare[after:].lstrip())
    if bare.startswith("{", start):
        close = matching(bare, start)
        return None if close is None else bare[start:close + 1]
    if re.match(r"(?:if|for|while|do|switch|else)\b", bare[start:]):
        return None
    ends = top_level(bare, start, len(bare), ";")
    return bare[start:ends[0] + 1] if ends else None


def rewrite_loops(code: str, kernel_body: bool) -> str:
    """Append a work tick to every `for` and `while` condition (`do ... while` included), counted each time
    the condition holds: MSL_LOOP_TICK in the kernel body (it counts down the kernel function's argument msl_work_),
    MSL_HELPER_TICK elsewhere (helper functions, member functions of local classes). A counted loop with a
    bound known when compiled skips it (counted_loop: its ticks would only keep the compiler from unrolling
    it). Range-for loops end by themselves, and a condition that declares a variable is left without a tick."""
    bare = code_only(code)
    classes = class_bodies(bare) if kernel_body else []
    edits = []
    for m in _LOOP.finditer(bare):
        close = matching(bare, m.end() - 1)
        if close is None:
            continue
        start, end = m.end(), close
        if m.group(1) == "for":
            semicolons = top_level(bare, start, end, ";")
            if len(semicolons) != 2:
                continue
            start, end = semicolons[0] + 1, semicolons[1]
        if _DECLARATION.match(bare, start, end):
            continue
        in_class = any(a < m.start() < b for a, b in classes)
        tick = "MSL_LOOP_TICK" if kernel_body and not in_class else "MSL_HELPER_TICK"
        if m.group(1) == "for" and (counted := counted_loop(bare, m.end(), start - 1, end, close)):
            tick = f"({counted} || {tick})"
        if bare[start:end].strip():
            edits += [(start, start, "("), (end, end, f") && {tick}")]
        else:
            edits.append((start, start, f" {tick}"))
    return edited(code, edits)
