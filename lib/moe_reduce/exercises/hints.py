"""One nudge per exercise, printed by exercises.hint(name): where to look or what to count, never the answer."""
from __future__ import annotations

HINTS = {
    "log_sigmoid": "log σ(x) = −log(1 + e^−x). Where e^−x overflows (x very negative), take out a factor that "
                   "leaves an exponential no bigger than 1; where e^−x is tiny (x very positive), which NumPy "
                   "function adds a tiny number to 1 without losing it?",
    "bytes_per_call": "Go through the argument table of section 2 row by row: how many elements each array has at "
                      "this shape, and how many bytes each element takes in its dtype. Do not forget the output.",
    "error_bound": "Follow the first term, w[t,0]·y: how many times is it rounded on its way to the final sum? Each "
                   "rounding multiplies by (1 + δ) with |δ| ≤ u; bound the product of those factors.",
    "roofline": "Below the balance point the roof is a sloped line: what throughput does a given number of "
                "flop per byte allow at a given bandwidth? Then compare it with the peak.",
    "scalar_body": "Thread i makes one output: which token and column is that? Keep in mind that a launch may "
                   "start more threads than there are outputs. Then read the formula term by term.",
    "residual_flag": "HAS_RESIDUAL is known when the kernel is compiled; residual is absent when it is false, so it "
                     "may only be read inside a branch on the flag.",
    "fix_two_lines": "Launch in whole threadgroups, as CUDA does, and count the threads started against the outputs: "
                     "what must a thread past the last output do? Then: y_expert holds top_k rows per token; which "
                     "row holds token t's k-th expert?",
    "fix_launch": "MLX's grid is counted in threads, not threadgroups. How many threads does the scalar kernel "
                  "need, and can a threadgroup hold more threads than that?",
    "vec_tail": "The aligned branch handles W outputs per thread. Near the end of a row there are fewer left: how "
                "many exist from h0 on, and how do you make them one element at a time?",
    "choose_grid": "Count the outputs each vec thread makes in bfloat16 (16 bytes per access), then the threads the "
                   "call needs. The grid is counted in threads and need not be a multiple of the threadgroup.",
    "predict_time": "A memory-bound call takes its bytes divided by the bandwidth it reaches. Which bandwidth did "
                    "the run measure, and how many bytes does this call move?",
    "fixed_cost": "Compare two times per call: the bytes at the ceiling, which grow with n_tokens, and the "
                  "one-token call, which does not. Where does the first pass the second?",
    "top_k_time": "At a fixed n_tokens and h, which rows of the byte count grow with top_k, and which do not? The "
                  "time of a memory-bound call scales with its bytes.",
    "no_shared": "Without the shared expert, which per-token rows are neither read nor multiplied? Compare the bytes "
                 "of the two calls; a memory-bound call's time follows its bytes.",
    "amdahl_bound": "If the combine took no time at all, the step would lose exactly the combine's time in every "
                    "layer. Which time is the step's, and how many layers does the model have?",
    "decode_saving": "At one token the GPU waits for the host: count the ops a step loses when patched, in all its "
                     "layers, and give each op the low and the high host cost.",
    "fused_bytes": "List what each version reads and writes per token, in rows of h activations, and the few bytes "
                   "per token and per call besides. Which row does the fused kernel not touch?",
    "fused_launch": "How many bytes does one element of bfloat16 take, and so how many 16-byte pieces does a row "
                    "of h have? One thread per piece, one threadgroup per token, the grid counted in threads.",
    "row_reduce": "Three phases: add within each SIMD group, hand each group's sum to the others through "
                  "threadgroup memory, then add the groups' sums. Who writes which slot, and when may a thread "
                  "read a slot another group wrote?",
    "chained_wall": "64 calls go to the GPU in one async_eval: while the GPU runs one kernel, the host is already "
                    "building the next call. Two pipelined stages: which one sets the pace?",
    "batch_cost": "If every 10-ms batch pays the same cost once, the row gives that cost as µs per call times its "
                  "calls. A 50-ms batch pays it once too, shared by more calls.",
    "little_turn": "Multiply the run's ceiling (bytes per second) by a first read's latency (seconds): that many "
                   "bytes must be in flight. How many bytes must one token's call read?",
    "below_fixed": "For each n_tokens, count the bytes the call must move, turn them into µs at the datasheet "
                   "bandwidth, and compare with what a one-token call takes on the GPU.",
}
