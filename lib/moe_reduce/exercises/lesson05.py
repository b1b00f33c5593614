"""Lesson 05's exercises, checked against the committed H100 small-call probes (moe_reduce.probes): a chained
one-token call's wall time from host cost and GPU time, the timer's wall − GPU with longer batches, which calls
the bytes alone would keep below the fixed cost, and where Little's law puts the turn from latency to
bandwidth (then what the committed sweep shows there)."""
from __future__ import annotations

import functools
import math
from typing import Any

from .. import probes, results
from ..dtypes import ITEMSIZE
from ..machine import DATASHEET_PEAKS
from ..traffic import bytes_moved, bytes_read
from .verdict import Verdict, failed, passed, unattempted

API, KERNEL, DTYPE, H, TOP_K = "moe_weighted_reduce", "scalar_k", "float32", 2048, 8
BELOW_TOKENS = (4, 32, 256)
PEAK_GBPS = DATASHEET_PEAKS["H100 SXM"][1] / 1e9
TOLERANCE = 0.05  # relative


def host_us() -> float:
    """Median host µs per chained call of our API (host.json)."""
    return probes.load_json("host.json")["summary"][API]["median"]


def gpu_us(n_tokens: int = 1) -> float:
    """KERNEL's best GPU µs at n_tokens in DTYPE (candidates.csv)."""
    return probes.best(probes.candidates())[(DTYPE, KERNEL, n_tokens)]["gpu_us"]


def bytes_us(n_tokens: int) -> float:
    """µs the call's minimum bytes take at the H100 SXM datasheet bandwidth."""
    return bytes_moved(n_tokens, TOP_K, H, DTYPE) / PEAK_GBPS / 1e3


def number(answer: Any) -> bool:
    """Whether an answer is a finite real number (a bool is none)."""
    return isinstance(answer, (int, float)) and not isinstance(answer, bool) and math.isfinite(answer)


def close(answer: float, right: float) -> bool:
    """Whether an answer is within TOLERANCE of the right value."""
    return abs(answer - right) <= TOLERANCE * abs(right)


def judge(answer: Any, ask: str, right: float, slips: dict[str, float]) -> Verdict:
    """A number checked against the right value; a known slip is named without giving the right value."""
    if answer is None:
        return unattempted(ask)
    if not number(answer) or answer < 0:
        return failed(f"expected a number of µs (0 or more), got {answer!r}")
    if close(answer, right):
        return passed(f"{answer:.2f} µs, within {TOLERANCE:.0%} of {right:.2f} µs.")
    slip = next((what for what, value in slips.items() if close(answer, value)), None)
    return failed(f"{answer!r} µs: {slip}." if slip else f"{answer!r} µs is not within {TOLERANCE:.0%} of the "
                  "prediction; which of the two times does the other hide?")


# ------------------------------------------------------------------ a chained one-token call

def wall_solution() -> float:
    """Host and GPU overlap over chained calls: the slower of the two sets the pace."""
    return max(host_us(), gpu_us(1))


@functools.cache
def h100_sweep(dtype: str) -> results.Run:
    """The H100's committed sweep of part 7 in a dtype (probes.small_run), read once."""
    return probes.small_run(results.load_runs(results.find_results()), "H100", dtype)


def sweep_wall_us() -> float:
    """KERNEL's wall µs per call at one token, top_k 8, in the H100's DTYPE sweep of part 7 (10-ms batches)."""
    return probes.row_of(h100_sweep(DTYPE), f"kernel_{KERNEL}", 1, TOP_K).median_us


def check_wall(answer: Any) -> Verdict:
    """µs per call of 64 chained one-token calls, from host cost and GPU time; a pass also gives what the
    sweep's timer measured for the same kernel."""
    verdict = judge(answer, "set my_wall_us to µs per call.", wall_solution(),
                    {"the host builds call j+1 while the GPU runs call j, so the two do not add": host_us() + gpu_us(1),
                     "the GPU alone is not the pace when it waits for the host": gpu_us(1)})
    if not verdict.passed:
        return verdict
    swept = sweep_wall_us()
    return passed(f"{verdict.message} The H100 sweep of part 7 measured {swept:.2f} µs per call for {KERNEL} at one "
                  f"token ({swept / wall_solution() - 1:+.0%}); it timed another chain (its own inputs, 10-ms "
                  "batches), and what makes its calls slower than these is not explained by these files.")


# ------------------------------------------------------------------ a cost paid once per batch

BATCH_CASE = ("kernel_auto", "float32", 8192)  # a row of the gap run (probes.gap_rows)


def batch_row() -> dict[str, Any]:
    """BATCH_CASE's row of the gap run: calls and wall − GPU µs with 10-ms and 50-ms batches."""
    return probes.gap_rows()[BATCH_CASE]


def batch_solution() -> float:
    """If all of wall − GPU were paid once per batch: the 10-ms batch's total, spread over a 50-ms batch's calls."""
    r = batch_row()
    return r["gap_us"] * r["calls"] / r["calls_long"]


def check_batch(answer: Any) -> Verdict:
    """wall − GPU µs per call with 50-ms batches, predicted from the 10-ms row; a pass compares it with the
    measurement."""
    r = batch_row()
    right, measured = batch_solution(), r["gap_long_us"]
    if answer is None:
        return unattempted("set my_batch_us to µs per call.")
    if not number(answer) or answer < 0:
        return failed(f"expected a number of µs (0 or more), got {answer!r}")
    if close(answer, right):
        return passed(f"{answer:.2f} µs, within {TOLERANCE:.0%} of {right:.2f} µs. Measured with {r['calls_long']}-call "
                      f"batches: {measured:.2f} µs, {measured - right:+.2f} µs from the prediction. Most of the gap "
                      "is paid once per batch, not all: the rest is paid per call or grows with the batch, and these "
                      "files do not say which.")
    slips = {"that keeps the cost per call the same; a cost paid once per batch is shared by the batch's calls":
             r["gap_us"],
             "that is one whole batch's cost; share it among the calls of a 50-ms batch": r["gap_us"] * r["calls"],
             "more calls per batch share a per-batch cost more thinly, not less": r["gap_us"] * r["calls_long"] / r["calls"],
             "that is the measured value; predict it from the 10-ms row alone": measured}
    slip = next((what for what, value in slips.items() if close(answer, value)), None)
    return failed(f"{answer!r} µs: {slip}." if slip else f"{answer!r} µs is not within {TOLERANCE:.0%} of the "
                  "prediction: what does one 10-ms batch pay in all, and how many calls share it in a 50-ms batch?")


# ------------------------------------------------------------------ below the fixed cost?

def below_solution() -> list[bool]:
    """Per n in BELOW_TOKENS: whether its bytes at the peak take less than the one-token call's GPU time."""
    return [bytes_us(n) < gpu_us(1) for n in BELOW_TOKENS]


def check_below(answer: Any) -> Verdict:
    """A list of bools, one per n in BELOW_TOKENS."""
    if answer is None:
        return unattempted(f"set my_below to a list of {len(BELOW_TOKENS)} bools, one per n_tokens in {BELOW_TOKENS}.")
    if not (isinstance(answer, (list, tuple)) and len(answer) == len(BELOW_TOKENS)
            and all(isinstance(a, bool) for a in answer)):
        return failed(f"expected a list of {len(BELOW_TOKENS)} bools, got {answer!r}")
    wrong = [n for n, a, r in zip(BELOW_TOKENS, answer, below_solution()) if a != r]
    if not wrong:
        return passed(", ".join(f"n {n}: {bytes_us(n):.2f} µs of bytes" for n in BELOW_TOKENS)
                      + f" against {gpu_us(1):.2f} µs at one token. Measured ({KERNEL}, candidates.csv): "
                      + ", ".join(f"{gpu_us(n):.2f} µs at n {n}" for n in BELOW_TOKENS)
                      + f". From 1 to {BELOW_TOKENS[0]} tokens the bytes add {bytes_us(BELOW_TOKENS[0]) - bytes_us(1):.2f} µs "
                      f"and the measured time {gpu_us(BELOW_TOKENS[0]) - gpu_us(1):.2f} µs: where the bytes stay under "
                      "the fixed part the time still grows, which the bytes alone do not predict.")
    return failed(f"not right at n_tokens {wrong}: compute that call's bytes and divide by {PEAK_GBPS:,.0f} GB/s.")


# ------------------------------------------------------------------ Little's law

TURN_DTYPE = "bfloat16"
REREAD_NS = 145  # a re-read (L2 hit) in part 6's chase: 143.4-145.0 ns


def turn_parts() -> tuple[float, float, int]:
    """B (bytes/s, the TURN_DTYPE run's GPU ceiling), L (s, a first read in the chase), reads per token."""
    per_token = bytes_read(1, TOP_K, H, TURN_DTYPE, True, "float32")
    return h100_sweep(TURN_DTYPE).meta["ceiling_gbps"]["gpu"] * 1e9, probes.first_read_ns() * 1e-9, per_token


def turn_solution() -> float:
    """The n_tokens whose reads equal B·L: below it a call cannot keep B·L bytes in flight."""
    b, lat, per_token = turn_parts()
    return b * lat / per_token


def check_turn(answer: Any) -> Verdict:
    """n_tokens where a TURN_DTYPE call's reads reach B·L; a pass also says what the committed sweep shows."""
    if answer is None:
        return unattempted("set my_turn to a number of tokens.")
    if not number(answer) or answer <= 0:
        return failed(f"expected a number of tokens (above 0), got {answer!r}")
    b, lat, per_token = turn_parts()
    right = b * lat / per_token  # turn_solution()
    if close(answer, right):
        gpu = {n: us for n, us, _ in probes.model_rows(h100_sweep(TURN_DTYPE))}
        late = (gpu[256] - gpu[64]) / 192 * 1e3
        return passed(f"{answer:g} tokens, within {TOLERANCE:.0%} of {right:.1f}. The committed sweep (row, H100): "
                      f"from 1 to 16 tokens the GPU time grows {gpu[16] - gpu[1]:.2f} µs; from 64 to 256 each added "
                      f"token costs {late:.0f} ns, its reads {per_token / b * 1e9:.0f} ns at B. The turn falls "
                      "between the two, around the prediction.")
    slips = {"that counts the output's write too; the question is about the bytes a call reads":
             b * lat / (per_token + H * ITEMSIZE[TURN_DTYPE]),
             "that uses the re-read latency (an L2 hit); after the flush the call's loads are first reads":
             b * REREAD_NS * 1e-9 / per_token,
             f"that is float32's bytes per token; this asks for {TURN_DTYPE}":
             b * lat / bytes_read(1, TOP_K, H, "float32", True, "float32")}
    slip = next((what for what, value in slips.items() if close(answer, value)), None)
    return failed(f"{answer!r} tokens: {slip}." if slip else
                  f"{answer!r} tokens is not within {TOLERANCE:.0%} of the prediction: B·L is bytes; divide by the "
                  "bytes one token's call must read.")

