"""The work budget and interrupts: a kernel whose loop never ends is stopped with a KernelFault of kind
"work budget" naming the kernel, a thread and the loop's line (with and without bounds checks, in the body,
in a helper function, with barriers); loops that end are counted, never changed; SIGINT stops a launch
within a second and the process goes on working."""

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import msl_host as host

# The loop forgot its increment and has no side effect: C++ may assume such a loop ends (and compile
# something else); Metal runs it forever.
SPIN = """
    uint i = thread_position_in_grid.x;
    float acc = 0.0f;
    for (uint k = 0; k < 4; ) {
        acc += inp[i];
    }
    out[i] = acc;
"""


def launch(k, n=64, threadgroup=32):
    """Run k on n random floats; return input and output."""
    x = mx.random.normal((n,), key=mx.random.key(n))
    (out,) = k(inputs=[x], grid=(n, 1, 1), threadgroup=(threadgroup, 1, 1), output_shapes=[(n,)],
               output_dtypes=[mx.float32])
    return x, out


def budget_fault(k, **kwargs):
    """The KernelFault a runaway launch of k raises."""
    with pytest.raises(host.KernelFault) as error:
        launch(k, **kwargs)
    return error.value


@pytest.mark.parametrize("bounds_check", [True, False])
def test_a_loop_without_end_is_stopped_by_the_default_budget(bounds_check):
    k = host.metal_kernel("spin", ["inp"], ["out"], SPIN, source_name="spin.metal", bounds_check=bounds_check)
    e = budget_fault(k)
    assert (e.kernel, e.kind, e.source, e.thread, e.buffer) == ("spin", "work budget", "spin.metal:4", (0, 0, 0), None)
    assert str(e).startswith(f"kernel `spin`: thread (0, 0, 0) = threadgroup (0, 0, 0), thread (0, 0, 0) in the "
                             f"threadgroup was still running at spin.metal:4 after its work budget of "
                             f"{host.launch.DEFAULT_WORK_BUDGET} (loop iterations;")


def test_the_budget_counts_loop_iterations_exactly():
    """A loop of n iterations spends n units: a budget of n lets it end, n - 1 does not."""
    source = """
        uint i = thread_position_in_grid.x;
        float acc = 0.0f;
        for (uint k = 0; k < uint(steps[0]); ++k) {
            acc += inp[i];
        }
        out[i] = acc;
    """
    steps = 100_000  # more than 65536: the body's grant is renewed on the way
    k = lambda budget: host.metal_kernel("steps", ["inp", "steps"], ["out"], source, work_budget=budget)  # noqa: E731
    x = mx.random.normal((8,), key=mx.random.key(1))
    call = dict(inputs=[x, mx.array([steps])], grid=(8, 1, 1), threadgroup=(8, 1, 1), output_shapes=[(8,)],
                output_dtypes=[mx.float32])
    (out,) = k(steps)(**call)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x) * steps, rtol=1e-3)
    with pytest.raises(host.KernelFault, match="work budget of 99999 "):
        k(steps - 1)(**call)


# Loops counted to a bound known when compiled end by themselves and spend nothing; the same forms that may
# not end (a counter changed in the body, a bound its type never reaches) are counted.
COUNTED = """
    uint i = thread_position_in_grid.x;
    float acc = 0.0f;
    switch (mode[0]) {
        case 0:
            for (int k = 0; k < STEPS; ++k) { acc += inp[i]; }
            for (int k = STEPS; k > 0; k -= 2) { acc -= inp[i]; }
            break;
        case 1:
            for (int k = 0; k < 4; ++k) { acc += inp[i]; k -= 1; }
            break;
        case 2:
            for (uchar k = 0; k < 300; ++k) { acc += inp[i]; }
            break;
    }
    out[i] = acc;
"""


@pytest.mark.parametrize("mode, stopped", [(0, False), (1, True), (2, True)])
def test_counted_loops_with_known_bounds_spend_nothing(mode, stopped):
    k = host.metal_kernel("counted", ["inp", "mode"], ["out"], COUNTED, work_budget=1000)
    x = mx.random.normal((4,), key=mx.random.key(2))
    call = dict(inputs=[x, mx.array([mode])], template=[("STEPS", 100_000)], grid=(4, 1, 1), threadgroup=(4, 1, 1),
                output_shapes=[(4,)], output_dtypes=[mx.float32])
    if stopped:
        with pytest.raises(host.KernelFault, match="work budget of 1000 "):
            k(**call)
    else:
        (out,) = k(**call)
        np.testing.assert_allclose(np.asarray(out), np.asarray(x) * 50_000, rtol=1e-3)


def test_work_budget_is_checked():
    for bad in (0, -5, 2.5, True, 2**62, "1000"):
        with pytest.raises(ValueError, match=f"work_budget: expected a positive int below 2\\*\\*62, got {bad!r}"):
            host.metal_kernel("spin", ["inp"], ["out"], SPIN, work_budget=bad)


def test_helper_function_loops_and_while_loops_are_counted():
    header = """
    float spin(float x) {
        float s = 0.0f;
        int k = 0;
        while (k < 4) {
            s += x;
        }
        return s;
    }
    """
    k = host.metal_kernel("helper_spin", ["inp"], ["out"], "out[thread_position_in_grid.x] = spin(inp[0]);",
                          header=header, work_budget=1000)
    e = budget_fault(k)
    assert e.kind == "work budget" and e.source.endswith(":5") and e.thread == (0, 0, 0)


def test_do_while_in_a_barrier_kernel():
    source = """
        threadgroup float buf[64];
        uint lid = thread_index_in_threadgroup;
        float acc = inp[thread_position_in_grid.x];
        uint s = 32;
        do {
            buf[lid] = acc;
            threadgroup_barrier(mem_flags::mem_threadgroup);
            acc += buf[(lid + s) % 64];
            threadgroup_barrier(mem_flags::mem_threadgroup);
        } while (s > 0);
        out[thread_position_in_grid.x] = acc;
    """
    k = host.metal_kernel("barrier_spin", ["inp"], ["out"], source, source_name="b.metal", work_budget=100_000)
    e = budget_fault(k, n=64, threadgroup=64)
    # each wait costs as many units as the group has threads: 64 per barrier, two per round
    assert e.kind == "work budget" and e.source in ("b.metal:8", "b.metal:10") and e.threadgroup == (0, 0, 0)


def test_loops_that_end_keep_their_meaning():
    """constexpr helpers (counted nothing at compile time), loops in member functions of local classes,
    range-for, a while with a declared condition, nested loops with break and continue."""
    header = """
    constexpr int triangle(int n) {
        int s = 0;
        for (int k = 1; k <= n; ++k) s += k;
        return s;
    }
    """
    source = """
        uint i = thread_position_in_grid.x;
        struct Poly {
            float c[3];
            float operator()(float x) const {
                float y = 0.0f;
                for (int k = 2; k >= 0; --k) y = y * x + c[k];
                return y;
            }
        };
        const Poly p{{1.0f, 2.0f, 3.0f}};
        float acc = 0.0f;
        const float weights[3] = {1.0f, 10.0f, 100.0f};
        for (float w : weights) acc += w;
        uint n = 3;
        while (uint left = n--) acc += float(left);
        for (uint a = 0; a < 10; ++a) {
            if (a % 2) continue;
            for (uint b = 0;; ++b) {
                if (b == a) break;
                acc += 1.0f;
            }
        }
        out[i] = p(inp[i]) + acc + float(triangle(4)) * (sizeof(float[triangle(3)]) == 24 ? 1.0f : 0.0f);
    """
    k = host.metal_kernel("loops", ["inp"], ["out"], source, header=header)
    x, out = launch(k)
    xs = np.asarray(x).astype(np.float64)
    want = (1 + 2 * xs + 3 * xs**2) + 111 + 6 + (0 + 2 + 4 + 6 + 8) + 10
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-6)


# A child process's kernel: with SPIN, its loop never ends and a budget of 2**61 units would take years to spend.
# Both instances are compiled before the test begins (the spinning one stops at once with a budget of 1,000).
CHILD_SETUP = """
import os, signal
# Python's own SIGINT handler, as an interactive Python has it: a child of a background job starts with SIGINT
# ignored (the shell's rule for '&'), and a SIGINT would then reach nothing.
signal.signal(signal.SIGINT, signal.default_int_handler)
import mlx.core as mx
import msl_host as host
from msl_host import build, translate

source = '''
    uint i = thread_position_in_grid.x;
    float acc = 0.0f;
    for (uint k = 0; k < 4; k += SPIN ? 0u : 1u) {
        acc += inp[i];
    }
    out[i] = acc;
'''
x = mx.ones((64,))

def run(spin, budget=2**61):
    k = host.metal_kernel("spin_interrupt", ["inp"], ["out"], source, work_budget=budget)
    (out,) = k(inputs=[x], template=[("SPIN", spin)], grid=(64, 1, 1), threadgroup=(32, 1, 1),
               output_shapes=[(64,)], output_dtypes=[mx.float32])
    return out

try:
    run(True, budget=1000)
except host.KernelFault:
    pass
run(False)

def spin_and_report():
    try:
        run(True)
        print("not interrupted", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""

INTERRUPT_CHILD = CHILD_SETUP + """
print("spinning", flush=True)
spin_and_report()
print("after", float(run(False).sum()), flush=True)
"""

# SIGINT sent just after the launch's handler is in place, before the kernel starts: the launch must not forget it;
# then Python's own handler is back.
SIGINT_AT_BEGIN_CHILD = CHILD_SETUP + """
begin_name = translate.ENTRY_NAME + "_sigint_begin"
for library in build._libraries.values():
    begin = getattr(library, begin_name)
    setattr(library, begin_name, lambda begin=begin: (begin(), os.kill(os.getpid(), signal.SIGINT)))
spin_and_report()
try:
    os.kill(os.getpid(), signal.SIGINT)
    signal.pthread_sigmask(signal.SIG_BLOCK, ())
    print("SIGINT ignored after the launch", flush=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt after the launch", flush=True)
"""


def child_env() -> dict[str, str]:
    """This environment, with msl_host and this process's path importable in a child Python."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(host.__file__).parents[1]), *sys.path]))


def line_within(stream, seconds: float) -> str:
    """The child's next line, or "" if none comes within `seconds`: a child that ignores SIGINT fails the test
    instead of hanging it. `stream` is an unbuffered pipe, read a byte at a time, so no later line waits in a
    buffer where select() and communicate() cannot see it."""
    ready, _, _ = select.select([stream], [], [], seconds)
    return stream.readline().decode() if ready else ""


def test_sigint_stops_a_launch_within_a_second_and_the_process_goes_on():
    """A child process spins in a kernel (a budget it would take years to spend) and gets SIGINT."""
    child = subprocess.Popen([sys.executable, "-c", INTERRUPT_CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             bufsize=0, env=child_env())
    try:
        assert line_within(child.stdout, 120) == "spinning\n"
        time.sleep(0.5)  # well into the launch
        child.send_signal(signal.SIGINT)
        sent = time.perf_counter()
        first = line_within(child.stdout, 10)
        stopped_after = time.perf_counter() - sent
        rest, err = (out.decode() for out in child.communicate(timeout=60))
    finally:
        child.kill()
    assert first == "interrupted\n", (first, rest, err)
    assert stopped_after < 1.0, f"stopped {stopped_after:.2f} s after SIGINT"
    assert rest == "after 256.0\n" and child.returncode == 0, (rest, err, child.returncode)  # 64 threads × 4 × 1.0


def test_sigint_just_before_the_kernel_starts_stops_it_and_python_gets_sigint_back():
    """The SIGINT comes between the handler's installation and the kernel's first thread."""
    done = subprocess.run([sys.executable, "-c", SIGINT_AT_BEGIN_CHILD], capture_output=True, text=True,
                          env=child_env(), timeout=120)
    assert done.stdout == "interrupted\nKeyboardInterrupt after the launch\n", (done.stdout, done.stderr)
