"""Compiling: the on-disk cache, the precompiled header, compile errors, concurrent callers."""

import threading

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host
from msl_host import build

SOURCE = """
    uint i = thread_position_in_grid.x;
    out[i] = inp[i] * T(3) + T(1);
"""


def run(source=SOURCE, dtype=mx.float32, n=500, seed=0, **options):
    """Run `source` on n random values; return input and output."""
    k = host.metal_kernel("triple", ["inp"], ["out"], source, **options)
    a = mx.random.normal((n,), key=mx.random.key(seed)).astype(dtype)
    (out,) = k(inputs=[a], template=[("T", dtype)], grid=(n, 1, 1), threadgroup=(64, 1, 1),
               output_shapes=[a.shape], output_dtypes=[dtype])
    return a, out


def test_libraries_are_cached_on_disk_and_in_the_process(fresh_cache, compiles):
    run()
    run(seed=1)
    kernels = [c for c in compiles if "-shared" in c]
    assert len(kernels) == 1 and len(compiles) == 2  # the kernel and the precompiled header
    assert len(list(fresh_cache.glob("*.so"))) == 1
    assert len(list(fresh_cache.glob("pch-*/msl_prelude.h.*"))) == 1
    build._libraries.clear()  # a new process: reuses the file on disk
    run()
    assert len(compiles) == 2
    run(source=SOURCE + "\n// another kernel")
    run(bounds_check=False)  # checked and unchecked variants are cached separately
    assert len(compiles) == 4
    assert len(list(fresh_cache.glob("*.so"))) == 3
    assert not list(fresh_cache.rglob("*.tmp"))


def test_loops_keep_their_meaning_in_the_kernel_and_the_precompiled_header(fresh_cache, compiles):
    if not build.accepts(build.compiler(), "-fno-finite-loops"):
        pytest.skip("the compiler has no -fno-finite-loops (GCC before 10, Clang before 12)")
    run()
    assert len(compiles) == 2 and all("-fno-finite-loops" in c for c in compiles)  # the kernel and the header
    assert "-fno-finite-loops" in build.flags()  # so in every cache key (build.key)


def test_xdg_cache_home_is_respected(fresh_cache, monkeypatch):
    assert build.cache_dir() == fresh_cache
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert str(build.cache_dir()).endswith(".cache/msl-host")


def test_the_precompiled_header_is_used(fresh_cache, compiles):
    run()
    kernel = next(c for c in compiles if "-shared" in c)
    pch = next(fresh_cache.glob("pch-*/msl_prelude.h.*"))
    assert any(str(pch.parent) in arg for arg in kernel)  # GCC: -I<its directory>; Clang: -include-pch <it>


def test_compile_error_points_at_the_metal_file_line():
    source = "uint i = thread_position_in_grid.x;\nT v = inp[i];\nout[i] = metal::exp(vv);\n"
    with pytest.raises(host.HostCompileError) as error:
        run(source=source, source_name="shaders/typo.metal")
    assert "shaders/typo.metal:3:" in str(error.value)
    assert "vv" in str(error.value)


def test_compile_error_after_threadgroup_rewrite_keeps_lines():
    source = ("threadgroup float buf[32];\nthreadgroup float a[4],\n  b[4];\nuint i = thread_position_in_grid.x;\n"
              "out[i] = inp[i] + undefined_name;\n")
    for checked in (True, False):
        with pytest.raises(host.HostCompileError) as error:
            run(source=source, source_name="shaders/tg.metal", bounds_check=checked)
        assert "shaders/tg.metal:5:" in str(error.value)


def test_atomic_half_is_a_compile_error_as_on_metal():
    source = "atomic_fetch_add_explicit(&out[0], inp[thread_position_in_grid.x], memory_order_relaxed);"
    k = host.metal_kernel("atomic_half", ["inp"], ["out"], source, atomic_outputs=True)
    with pytest.raises(host.HostCompileError, match="atomic<float> and atomic<ulong> only"):
        k(inputs=[mx.ones((16,), mx.float16)], output_shapes=[(1,)], output_dtypes=[mx.float16],
          grid=(16, 1, 1), threadgroup=(16, 1, 1), init_value=0)


def test_concurrent_calls_from_threads(fresh_cache):
    """Several Python threads compile and run kernels at once (ctypes releases the GIL)."""
    results, errors = {}, []

    def work(i):
        try:
            source = SOURCE if i % 2 else SOURCE.replace("T(1)", "T(2)")
            for _ in range(3):
                a, out = run(source=source, seed=i, n=20_000 + i)
                results.setdefault(i, []).append(np.asarray(out) - (np.asarray(a) * 3 + (1 if i % 2 else 2)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 6 and all(np.abs(d).max() < 1e-5 for r in results.values() for d in r)
    assert len(list(fresh_cache.glob("*.so"))) == 2


def test_ucontext_fibers(fresh_cache, monkeypatch):
    """The portable fiber switch (swapcontext, used off x86-64 Linux) gives the same results."""
    from msl_host import examples

    monkeypatch.setenv("CXX", "c++ -DMSL_UCONTEXT")
    x = mx.random.normal((4, 300), key=mx.random.key(9))
    w = mx.random.normal((300,), key=mx.random.key(10))
    got = examples.rms_norm(x, w, 1e-5)
    assert mx.allclose(got, mx.fast.rms_norm(x, w, 1e-5), atol=1e-5)
    assert any("-DMSL_UCONTEXT" in c for c in build.compiler())
