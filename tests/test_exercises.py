"""Each exercise's checker accepts its reference solution, rejects typical wrong answers with the message that
names the mistake, and reports an untouched placeholder as not attempted (without raising)."""
from __future__ import annotations

import re

import msl_host
import numpy as np
import pytest

from moe_reduce import exercises, explorer, probes
from moe_reduce.exercises import harness, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06
from moe_reduce.kernels import kernel_source

SCALAR, TAIL = kernel_source("scalar"), lesson02.vec_tail_solution()
REDUCE, BARRIER = lesson04.reduce_solution(), "threadgroup_barrier(mem_flags::mem_threadgroup);\n"


def edit(text: str, old: str, new: str) -> str:
    """text with old replaced once (the test fails if old is not there)."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


# name -> [(wrong answer, regex its verdict must match)], at least two per exercise.
WRONG = {
    "log_sigmoid": [
        (lambda x: np.log(1 / (1 + np.exp(-x))), r"in float32, log_sigmoid\(-1000\): expected -1000, got -inf "
                                                r"\(not a finite number"),
        (lambda x: np.log(0.5 * (1 + np.tanh(x / 2))), r"log_sigmoid\(-1000\): expected -1000, got -inf"),
        (lambda x: np.minimum(x, 0) - np.log(1 + np.exp(-np.abs(x))),  # log, not log1p: the tiny values are lost
         r"in float32, log_sigmoid\(20\): expected -2\.06115e-09, got 0 \(relative error 1, [\d.e+]+ units in the last"),
        (lambda x: (np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))).astype(np.float64),
         r"should keep both; got dtype float64"),
        (lambda x: x[:1], r"should keep both; got dtype float32, shape \(1,\)"),
    ],
    "bytes_per_call": [
        (lesson01.bytes_mistakes()["the residual left out"],
         r"787,136 is the count with the residual left out; or with the write of out left out\."),
        (lesson01.bytes_mistakes()["top_k taken as 8 (this model routes each token to 10 experts)"], r"top_k taken as 8"),
        (lesson01.bytes_solution() - 4, r"852,668 is 4 bytes less than the count \(-0\.00047%\)\. Count, per token"),
        (lesson01.bytes_solution() + 1000, r"1,000 bytes more than the count \(\+0\.12%\)"),
        (2.5, r"expected a whole number of bytes, got 2\.5"),
        (True, r"expected a whole number of bytes, got True"),
    ],
    "error_bound": [
        # (K-1)·u and √K·u are refuted by the built worst case, or earlier by fresh random inputs that exceed them
        (lambda k: (k - 1) * lesson01.U, r"at top_k = 8 your bound (is 7·u, below an error that happens: "
                                         r"lesson01\.worst_inputs\(8\) makes every rounding of the sum go down"
                                         r"|\S+ is below an error that happened)"),
        (lambda k: np.sqrt(k) * lesson01.U, r"at top_k = 8 your bound (is 2\.83·u, below an error that happens"
                                            r"|\S+ is below an error that happened)"),
        (lambda k: 1e-6, r"at top_k = 8 your bound 16\.8·u holds but is more than twice"),
        (lambda k: 1e-12, r"at top_k = 8 your bound 1e-12 is below an error that happened: out\[\d+, \d+\] of make_inputs"),
    ],
    "roofline": [
        (100 * lesson01.roofline_solution(), r"is what you get with a percent, not a fraction"),
        (lesson01.attainable_fraction("float32", "H200"), r"float32 activations"),
        (lesson01.attainable_fraction("bfloat16", "H100 SXM"), r"the H100 SXM's bandwidth"),
        (1.0, r"1 is \+1\.5e\+03% off\. Below the balance point"),
        ("6%", r"expected a positive fraction, got '6%'"),
    ],
    "scalar_body": [
        (lesson02.guard_starter(),  # no guard: right at the exact launch, out of bounds in whole threadgroups
         r"your kernel accessed `\w+` at element \d+, past its end .*The checker also launches whole threadgroups"),
        (edit(SCALAR, "acc += gate * float(y_shared[out_idx]);", ""),
         r"at n_tokens=1, h=1, top_k=1, residual on, shared expert on.*out\[0, 0\]: expected .*, got .*Thread 0 should"),
        (edit(SCALAR, "int64_t(t) * K * H + h;", "int64_t(t) * H + h;"),
         r"n_tokens=3, h=255, top_k=8.*out\[1, 0\]: expected .* Thread 255 should write it \(scalar: thread i makes "
         r"out\[i // H, i % H\], H = 255\)"),
        (edit(SCALAR, "acc += float(residual[out_idx]);", "acc += float(residual[out_idx])"),
         r"does not compile:\n.*\nyour answer:\d+:\d+: error"),
        (edit(SCALAR, "for (uint k = 0; k < K; ++k)", "for (uint k = 0; k < K; )"),  # never ends: the work budget
         r"at n_tokens=1, h=1, top_k=1.*: kernel `your_kernel`: thread \(0, 0, 0\) .* was still running at "
         rf"your answer:{SCALAR[:SCALAR.index('for (uint k')].count(chr(10)) + 1} after its work budget"),
    ],
    "residual_flag": [
        (edit(lesson02.residual_starter(), "// TODO: add residual[t, h] to acc when the template flag HAS_RESIDUAL is true.",
              "acc += float(residual[out_idx]);"),
         r"residual off.*out\[0, 0\] = 1e\+30: your kernel read residual, absent from this call"),
        (edit(lesson02.residual_starter(), "// TODO: add residual[t, h] to acc when the template flag HAS_RESIDUAL is true.",
              "if (HAS_RESIDUAL) { acc += float(residual[t]); }"),
         r"residual on.*out\[\d+, \d+\]: expected .*, got .* Thread \d+ should write it"),
    ],
    "fix_two_lines": [
        (edit(SCALAR, "t >= uint(expert_w_shape[0])", "t >= uint(expert_w_shape[1])"),
         r"n_tokens=3, h=255, top_k=8.*your kernel accessed `expert_w` at element 24, past its end \(24 elements\), in "
         r"thread \(765, 0, 0\) \(threadgroup \(2, 0, 0\)\)\. Count the threads this launch starts"),
        (edit(SCALAR, "t >= uint(expert_w_shape[0])", "i >= uint(expert_w_shape[0])"),
         r"out\[0, 3\] was never written: it still holds the NaN .* Thread 3 should write it"),
        # the row fixed, the guard still missing: the fault, with the guard's nudge
        (edit(lesson02.two_bugs_starter(), lesson02.WRONG_ROW_INDEX, lesson02.ROW_INDEX),
         r"your kernel accessed `\w+` at element \d+, past its end \(\d+ elements?\).*what must a thread with no "
         r"output to make do"),
        # the guard back, the row still wrong, or wrong another way
        (edit(lesson02.two_bugs_starter(), "const uint h = i - t * H;\n", "const uint h = i - t * H;\n" + lesson02.GUARD),
         r"n_tokens=3.*out\[1, 0\]: expected .* Thread 255 should write it"),
        (edit(edit(lesson02.two_bugs_starter(), "const uint h = i - t * H;\n", "const uint h = i - t * H;\n" + lesson02.GUARD),
              "int64_t(t) * H + h;\n\nfloat", "int64_t(t) * K + h;\n\nfloat"),
         r"n_tokens=3.*out\[1, 0\]: expected .* Thread 255 should write it"),
    ],
    "fix_launch": [
        (lambda t, h: ((t * h * 256, 1, 1), (256, 1, 1)), r"every output is right, but your grid \(768000, 1, 1\) starts "
                                                          r"768000 threads for 3000"),
        (lambda t, h: ((h, t, 1), (256, 1, 1)), r"out\[1, 0\] was never written.* Thread 1000 should write it.*"
                                                r"Your grid \(1000, 3, 1\) starts 3000 threads"),
        (lambda t, h: (t * h, 256), r"expected \(grid, threadgroup\), two tuples of three positive ints"),
        (lambda t, h: ((t * h, 1, 1), (2048, 1, 1)), r"at most 1024 threads, yours has 2048"),
        (lambda t, h: ((-(-t * h // 256) * 256, 1, 1), (256, 1, 1)),  # rounded up to whole threadgroups
         r"every output is right, but your grid \(3072, 1, 1\) starts 3072 threads for 3000 .* the other 72 start only "
         r"to return at the guard\. MLX's grid need not be a multiple"),
        (lambda t, h: ((t * h, 1, 1), (256.0, 1, 1)), r"256\.0 is a float, not an int"),
    ],
    "vec_tail": [
        (edit(TAIL, "float(y_expert[y_idx + int64_t(k) * H + i])", "float(y_expert[y_idx + int64_t(k) * H])"),
         r"h=255.*out\[0, 1\]: expected .* Thread 0 should write it \(vec: thread i makes out\[t, h0 \.\. h0\+3\]"),
        (edit(TAIL, "a += gate * float(y_shared[out_idx + i]);", "a += float(y_shared[out_idx + i]);"),
         r"h=255.*out\[0, 0\]: expected"),
        (edit(TAIL, "const uint n = (H - h0 < uint(W)) ? H - h0 : uint(W);", "const uint n = W;"),
         r"past its end .*fewer than W"),
    ],
    "choose_grid": [
        (((3000, 1, 1), (256, 1, 1)), r"every output is right, but your grid \(3000, 1, 1\) starts 3000 threads for 375"),
        (((2, 1, 1), (256, 1, 1)), r"out\[0, 16\] was never written.* Thread 2 should write it \(vec: .*h0\+7\]"),
        ((375, 256), r"two tuples of three positive ints"),
        (((512, 1, 1), (256, 1, 1)), r"starts 512 threads for 375 .* the other 137 start only to return"),
        (((np.int64(375), 1, 1), (np.int64(0), 1, 1)), r"every count must be at least 1"),
    ],
    "predict_time": [
        (lambda: explorer.call_bytes(lesson03.choice(4096)) / 4800e9 * 1e6,
         r"with the datasheet bandwidth \(4,800 GB/s\)"),
        (lambda: lesson03.predict_solution() / 1e6, r"seconds, not µs"),
        (lambda: 2 * lesson03.predict_solution(), r"\+100% off"),
    ],
    "fixed_cost": [
        (lambda: lesson03.crossover_solution() // 2, r"the bytes take only .* the fixed part still dominates"),
        (lambda: lesson03.crossover_solution() * 2, r"the swept size before .* already take"),
        (lambda: 1000, r"not a swept n_tokens"),
    ],
    "top_k_time": [
        (lambda: lesson03.auto_row(lesson03.committed_run(), 8).gpu_us * 10 / 8, r"the ratio of top_k \(10/8\)"),
        (lambda: lesson03.auto_row(lesson03.committed_run(), 8).gpu_us, r"at top_k = 8 unchanged"),
        (lambda: 1.2 * lesson03.top_k_solution(), r"\+20% off"),
    ],
    "no_shared": [
        (1 - lesson02.shared_solution(), r"the fraction of time kept, not saved"),
        (100 * lesson02.shared_solution(), r"a percentage, not a fraction"),
        (0.125, r"one row of K \(only the expert rows\)"),
        ("9%", r"expected a fraction between 0 and 1"),
    ],
    "fused_bytes": [
        (lesson04.saved_fraction(10, True, hidden_written_too=True), r"the write of hidden counted as saved too"),
        (1 / 14, r"0\.0714286 is what you get with the shared expert left out"),
        (1 - lesson04.saved_solution(), r"what the fused call still moves, not what it saves"),
        (100 * lesson04.saved_solution(), r"a percent, not a fraction"),
        (0.01, r"0\.01 is -85% off\. Count the rows"),
    ],
    "fused_launch": [
        (((3, 1, 1), (512, 1, 1)), r"hidden\[0, 24\] is NaN \(thread 3 of threadgroup 0.*never written.*Your grid "
                                   r"\(3, 1, 1\) starts 3 threads in threadgroups of 512; MLX counts the grid in threads"),
        (((4 * 512, 1, 1), (512, 1, 1)), r"accessed `sh_logit` at element 3, past its end \(3 elements\), in thread "
                                         r"\(1536, 0, 0\) \(threadgroup \(3, 0, 0\)\)\. Threadgroup t of the grid makes token t"),
        (((3 * 1024, 1, 1), (1024, 1, 1)), r"512 of its 1024 threads have no piece of the row: in bfloat16 a 16-byte "
                                           r"access holds 8 elements"),
        (((3 * 256, 1, 1), (256, 1, 1)), r"each thread makes 2 accesses, not one"),
        (((1536, 1, 1), (500, 1, 1)), r"threads: expected a multiple of 32 from 32 to 1024, got 500"),
    ],
    "row_reduce": [
        (edit(REDUCE, BARRIER, ""), r"256 threads = 8 SIMD groups.*normed\[0, 0\] is NaN.*hidden is right, so the row's "
                                    r"total is NaN.*before SIMD group g wrote it \(a threadgroup_barrier"),
        (edit(edit(REDUCE, BARRIER, ""), "= group_sum;\n", "= group_sum;\n    " + BARRIER),
         r"divergent threadgroup_barrier at your answer:\d+ in threadgroup \(0, 0, 0\): 8 of 256 threads wait at this "
         r"threadgroup_barrier; thread \(1, 0, 0\) in the threadgroup returned\. Every thread of a threadgroup must"),
        (edit(REDUCE, "partial[simdgroup_index_in_threadgroup] =", "partial[thread_position_in_threadgroup.x] ="),
         r"accessed `partial` at element 32, past its end \(32 elements\), in thread \(32, 0, 0\).*one slot per SIMD "
         r"group"),
        (edit(REDUCE, "g < simdgroups_per_threadgroup", "g < 32u"), r"normed\[0, 0\] is NaN.*or a slot no SIMD group "
                                                                    r"writes"),
        (edit(REDUCE, "total += partial[g];", "total = partial[0];"),
         r"normed\[0, 0\]: expected .*, got .*hidden is right, so the row's scale is off: got/expected = .*the same "
         r"along the whole row"),
        (edit(REDUCE, "total += partial[g];", "total = group_sum;"), r"varying along the row"),
        (edit(REDUCE, "total += partial[g];", "total += partial[g]"), r"does not compile:\n.*your answer:\d+:\d+: error"),
    ],
}
# Lesson 06: answers of the wrong shape, refused before any run is read (tests/test_model_results.py checks the
# rest against a GPU run written there).
WRONG.update({
    "amdahl_bound": [("0.05", r"expected a fraction .*got '0.05'"), (True, r"expected a fraction"),
                     (-0.1, r"expected a fraction")],
    "decode_saving": [(300.0, r"expected a pair \(low, high\) of µs, got 300.0"), ((1, "2"), r"expected a pair")],
})
# Lesson 05: wrong answers computed from the committed H100 probes.
HOST, GPU1 = lesson05.host_us(), lesson05.gpu_us(1)
BATCH = lesson05.batch_row()
WRONG.update({
    "chained_wall": [(HOST + GPU1, r"so the two do not add"), (GPU1, r"the GPU alone is not the pace"),
                     ("9", r"expected a number of µs"), (3 * HOST, r"is not within 5% of the prediction")],
    "batch_cost": [(BATCH["gap_us"], r"keeps the cost per call the same"),
                   (BATCH["gap_us"] * BATCH["calls"], r"one whole batch's cost"),
                   (BATCH["gap_us"] * BATCH["calls_long"] / BATCH["calls"], r"more thinly, not less"),
                   (BATCH["gap_long_us"], r"that is the measured value"), (-1.0, r"expected a number of µs"),
                   (lesson05.batch_solution() * 1.5, r"not within 5% of the prediction")],
    "little_turn": [(lesson05.turn_solution() * 40996 / (40996 + 4096), r"counts the output's write"),
                    (lesson05.turn_solution() * 145 / probes.first_read_ns(), r"re-read latency"),
                    (lesson05.turn_solution() / 2, r"float32's bytes"), ("27", r"expected a number of tokens"),
                    (lesson05.turn_solution() * 3, r"not within 5%")],
    "below_fixed": [([True, True, True], r"not right at n_tokens \[256\]"),
                    ([True, False, False], r"not right at n_tokens \[32\]"), ([1, 1, 0], r"expected a list of 3 bools")],
})
VALUE_ANSWERS = {"predict_time", "fixed_cost", "top_k_time"}  # wrong answers computed from the committed run


def test_every_exercise_has_wrong_answers_and_twenty_three_in_all():
    assert set(WRONG) == set(exercises.EXERCISES) and len(exercises.EXERCISES) >= 23
    assert {e.lesson for e in exercises.EXERCISES.values()} == {"01", "02", "03", "04", "05", "06"}
    assert all(len(w) >= 2 for w in WRONG.values())


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_solution_passes(name, capsys):
    if exercises.get(name).lesson == "06" and lesson06.committed_run() is None:
        pytest.skip("lesson 06's solutions read a GPU run of model_bench, and none is committed under results/")
    answer = exercises.solution(name)
    assert capsys.readouterr().out.strip()  # the solution is printed when asked for
    verdict = exercises.verdict(name, answer)
    assert verdict.passed, verdict.message


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_placeholder_is_unattempted_and_quiet(name, capsys):
    assert exercises.check(name, exercises.starter(name)) is False
    out = capsys.readouterr().out
    assert out.startswith(f"· {name}: not attempted yet: ") and out.count("\n") == 1


@pytest.mark.parametrize("name,answer,message", [
    pytest.param(name, *case, id=f"{name}-{i}")
    for name, cases in WRONG.items() for i, case in enumerate(cases)])
def test_wrong_answer_names_the_mistake(name, answer, message):
    if name in VALUE_ANSWERS:
        answer = answer()
    verdict = exercises.verdict(name, answer)
    assert verdict.status == "failed"
    assert re.search(message, verdict.message, flags=re.S), verdict.message


def test_numpy_ints_and_whole_floats_are_accepted():
    as_np = lambda launch: tuple(tuple(np.int64(v) for v in g) for g in launch)  # noqa: E731
    assert exercises.verdict("choose_grid", as_np(lesson02.grid_solution())).passed
    assert exercises.verdict("fused_launch", as_np(lesson04.grid_solution())).passed
    assert exercises.verdict("fix_launch", lambda t, h: as_np(lesson02.launch_solution(t, h))).passed
    assert exercises.verdict("bytes_per_call", float(lesson01.bytes_solution())).passed
    assert exercises.verdict("bytes_per_call", np.int32(lesson01.bytes_solution())).passed


def test_error_bound_accepts_k_u_which_is_a_bound():
    # K·u is a bound (Jeannerod and Rump, 2013); the inputs whose every rounding goes down come within K²u² of it.
    assert exercises.verdict("error_bound", lambda k: k * lesson01.U).passed
    worst = lesson01.error_ratio(lesson01.worst_inputs(8))[0, 0]
    assert 7.99 * lesson01.U < worst <= 8 * lesson01.U


def test_every_exercise_has_a_hint_short_of_its_solution(capsys):
    for name in exercises.EXERCISES:
        text = exercises.hint(name)
        assert capsys.readouterr().out.strip() == text and len(text) > 40
        answer = exercises.get(name).solution()
        if isinstance(answer, (int, float)):
            assert f"{answer:,}" not in text and f"{answer:.2%}" not in text and str(answer) not in text
        elif isinstance(answer, str):
            assert not any(line.strip() in text for line in answer.splitlines() if len(line.strip()) > 12)
        assert "solution" not in text


def test_solutions_are_not_printed_by_checking(capsys):
    exercises.check("scalar_body", exercises.starter("scalar_body"))
    assert "acc +=" not in capsys.readouterr().out


def test_starters_come_from_the_shaders():
    assert lesson02.RESIDUAL in SCALAR and "expert_w_shape" not in lesson02.residual_starter()
    assert lesson02.guard_starter() != SCALAR and "expert_w_shape[0]" not in lesson02.guard_starter()
    two = lesson02.two_bugs_starter()
    assert lesson02.GUARD not in two and lesson02.ROW_INDEX not in two and lesson02.WRONG_ROW_INDEX in two
    head, tail = lesson02.vec_parts()
    assert head + tail + "}\n" == kernel_source("vec") and head.endswith(lesson02.TAIL_START)
    assert "// TODO" in lesson02.scalar_body_starter() and "acc" not in lesson02.scalar_body_starter()


def test_the_reduction_is_cut_from_the_shader():
    before, reduction, after = lesson04.reduce_parts()
    assert before + reduction + after == lesson04.fused_source()
    assert "simd_sum" in reduction and BARRIER in reduction and "float total" in reduction
    assert "simd_sum(" not in before + after and "// TODO" in lesson04.reduce_starter()


def test_thread_rule_agrees_with_the_diagram_map():
    case = harness.Case(3, 10, 2, True, True)
    assert harness.writer_thread(case, 1, 2, 7) == 27
    assert harness.writer_thread(case, 4, 2, 9) == 2 * 3 + 2


def test_unknown_exercise_lists_the_names():
    with pytest.raises(KeyError, match="sigmoid"):
        exercises.check("nope", None)


def runner_fault(kind: int, buffer: str, index: int, last: int = 0) -> msl_host.KernelFault:
    """The msl_host.KernelFault the host runner raises for a fault record of thread (765, 0, 0) of threadgroup
    (2, 0, 0): its fields and its message, as kernel_fault words them."""
    from msl_host.launch import FaultRecord, kernel_fault

    record = FaultRecord(kind=kind, index=index, first=0, last=last, elem_size=4, buffer=buffer.encode())
    record.pos[:], record.group[:], record.local[:] = (765, 0, 0), (2, 0, 0), (253, 0, 0)
    return kernel_fault("your_kernel", record)


def test_a_bounds_report_becomes_a_verdict():
    fault = runner_fault(1, "y_expert", 6120, last=6119)  # kind 1: out of bounds
    assert (fault.kind, fault.buffer, fault.index, fault.size) == ("out of bounds", "y_expert", 6120, 6120)
    v = harness.fault_message(fault, harness.Case(3, 255, 8, True, True), lesson02.GUARD_HINT)
    assert v.status == "failed" and re.search(
        r"n_tokens=3, h=255.*your kernel accessed `y_expert` at element 6120, past its end \(6120 elements\), in thread "
        r"\(765, 0, 0\) \(threadgroup \(2, 0, 0\)\)\. Count the threads this launch starts",
        v.message), v.message
    other = runner_fault(2, "out", 6)  # kind 2: misaligned, in the runner's own sentence, which names the thread
    case = harness.Case(1, 1, 1, True, True)
    v = harness.fault_message(other, case, "a hint")
    assert other.kind == "misaligned" and "misaligned pointer into `out`" in other.message
    assert v.message == f"at {case.describe()}: {other.message}. a hint" and "by thread (765, 0, 0)" in v.message
