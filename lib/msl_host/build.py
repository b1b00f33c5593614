"""Compiling translation units into shared libraries, cached on disk and in the process.

The cache lives in ``$XDG_CACHE_HOME/msl-host`` (default ``~/.cache/msl-host``): one ``<sha256>.so``
per distinct (C++ text, compiler, flags, headers). Libraries are compiled under a temporary name and
moved into place with ``os.replace``, so concurrent processes and threads never see half a file.
The fixed part of every unit (``include/``) is compiled once into a precompiled header, kept in the
cache beside the libraries and keyed the same way.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shlex
import subprocess
import tempfile
import threading
from pathlib import Path

from .errors import HostCompileError
from .translate import ENTRY_NAME, PRELUDE

INCLUDE_DIR = Path(__file__).with_name("include")
BASE_FLAGS = ("-O2", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-Wno-attributes")
# Used where the compiler takes them. Metal has no double: its floating-point literals are float, and
# GCC can be told the same. A loop keeps its meaning: C++ lets the compiler assume that a loop without
# side effects ends (and compile something else when it does not), Metal runs it; GCC 10 and Clang 12
# take -fno-finite-loops (and every loop's work tick, rewrite.rewrite_loops, gives it a way out anyway).
# The gold linker links a kernel in about half the time of the default one.
OPTIONAL_FLAGS = ("-fsingle-precision-constant", "-fno-finite-loops", "-fuse-ld=gold")

_libraries: dict[str, ctypes.CDLL] = {}
_lock = threading.Lock()
_path_locks: dict[str, threading.Lock] = {}
_failed_pch: set[str] = set()  # precompiled headers the compiler could not build (not retried)


def compiler() -> tuple[str, ...]:
    """The host C++ compiler command: $CXX or c++ (split once per distinct value)."""
    return split_command(os.environ.get("CXX") or "c++")


@functools.cache
def split_command(command: str) -> tuple[str, ...]:
    """A command line split into words as a shell would."""
    return tuple(shlex.split(command))


@functools.cache
def accepts(command: tuple[str, ...], flag: str) -> bool:
    """Whether the compiler builds a shared library with `flag`, silently (probed once per process)."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = subprocess.run([*command, flag, "-x", "c++", "-shared", "-fPIC", "-o", f"{tmp}/probe.so", "-"],
                               input="int probe() { return 1; }\n", capture_output=True, text=True)
    return probe.returncode == 0 and not probe.stderr


def flags() -> tuple[str, ...]:
    """Flags every unit (and the precompiled header) is compiled with."""
    command = compiler()
    return BASE_FLAGS + tuple(f for f in OPTIONAL_FLAGS if accepts(command, f))


def cache_dir() -> Path:
    """Directory of compiled kernel libraries: $XDG_CACHE_HOME or ~/.cache, /msl-host."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "msl-host"


@functools.cache
def headers_digest() -> str:
    """Hash of the headers every unit includes."""
    digest = hashlib.sha256()
    for path in sorted(INCLUDE_DIR.glob("*.h")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def key(*parts: str) -> str:
    """A cache key for these strings with this compiler, these flags and these headers."""
    return hashlib.sha256("\0".join([*parts, *compiler(), *flags(), headers_digest()]).encode()).hexdigest()


def path_lock(path: Path) -> threading.Lock:
    """One lock per output path, so threads of this process build each file once."""
    with _lock:
        return _path_locks.setdefault(str(path), threading.Lock())


def run_compiler(args: list[str], output: Path, source: str | Path, what: str) -> None:
    """Compile `source` (C++ text, or a file) with `args` into `output`, atomically (temp name, then
    os.replace)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_out = tempfile.mkstemp(dir=output.parent, prefix=output.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if isinstance(source, str):
                (Path(tmp) / "kernel.cpp").write_text(source)
            src = source if isinstance(source, Path) else Path(tmp) / "kernel.cpp"
            result = subprocess.run([*compiler(), *flags(), *args, "-o", tmp_out, str(src)],
                                    capture_output=True, text=True)
        if result.returncode != 0:
            raise HostCompileError(f"host compilation of {what} failed:\n" + error_lines(result.stderr))
        os.replace(tmp_out, output)
    finally:
        if os.path.exists(tmp_out):
            os.remove(tmp_out)


def error_lines(stderr: str, limit: int = 60) -> str:
    """The first `limit` lines of the compiler's diagnostics."""
    return "\n".join(stderr.splitlines()[:limit])


@functools.cache
def is_clang(command: tuple[str, ...]) -> bool:
    """Whether the compiler is Clang (probed once per process)."""
    probe = subprocess.run([*command, "-dM", "-E", "-x", "c++", "-"], input="", capture_output=True, text=True)
    return "__clang__" in probe.stdout


def precompiled_header() -> list[str]:
    """Compiler arguments that use the prelude's precompiled header (built once; none where the
    compiler cannot make one, and the prelude is then parsed with every kernel). GCC looks for
    `msl_prelude.h.gch` in each include directory before the header itself; Clang is told the file."""
    clang = is_clang(compiler())
    pch = cache_dir() / f"pch-{key(PRELUDE)[:24]}" / f"{PRELUDE}.{'pch' if clang else 'gch'}"
    with path_lock(pch):
        if str(pch) in _failed_pch:
            return []
        if not pch.exists():
            try:
                run_compiler(["-x", "c++-header"], pch, INCLUDE_DIR / PRELUDE, "the msl_host headers")
            except HostCompileError:
                _failed_pch.add(str(pch))
                return []
    # (the key already covers the headers' text: Clang need not check their dates)
    return ["-include-pch", str(pch), "-Xclang", "-fno-validate-pch"] if clang else [f"-I{pch.parent}", "-Winvalid-pch"]


def load_library(cpp: str) -> ctypes.CDLL:
    """Compile the C++ text (unless cached on disk) and load it (unless loaded already)."""
    path = cache_dir() / f"{key(cpp)}.so"
    with path_lock(path):
        if str(path) not in _libraries:
            if not path.exists():
                run_compiler(["-shared", *precompiled_header(), f"-I{INCLUDE_DIR}"], path, cpp, "the Metal kernel")
            library = ctypes.CDLL(str(path))
            getattr(library, ENTRY_NAME).restype = ctypes.c_int
            _libraries[str(path)] = library
    return _libraries[str(path)]
