"""`python -m moe_reduce.model_bench --out DIR [--quick]`: our kernels inside mlx-lm models, checked and timed
(lesson 06).

1. Checks: each supported model type at its published widths (model_configs, 2 layers), patched against
   unpatched (model_check): float32 and, against a float32 run of the same weights, bfloat16; with and
   without fuse_norm; the combine rounding per op (as patched by default) and once; in a child process with
   MLX's TF32 matmuls off (CHECKS_ENV). The timing below runs the default rounding (integrate.ROUNDING).
2. Timing, every variant (unpatched, patched, patched with fuse_norm) in the same process: 4-layer models at
   Qwen3-30B-A3B's widths (no shared expert) and Qwen1.5-MoE-A2.7B's (a gated shared expert), bfloat16 and
   float32. Qwen3-Next is checked but not timed: on CUDA and the CPU mlx-lm runs its linear attention as a
   Python loop of ops over the tokens (gated_delta_ops), which would dominate every figure.
   - decode: one token after 512 cached (the cache grows by the steps timed), steps chained as mlx-lm's
     generate chains them (the next step queued with mx.async_eval before the token before it is read),
     with the LM head: wall time per step (median, min and max of 5 timings of 32 steps), the host's time
     per step in building it and in handing it over (each a median), the traces our compiled calls ran while
     timed (none expected),
     GPU time per step, every kernel's GPU time and calls per step, and the MLX ops of one step's graph;
   - prefill of 512 and 4096 tokens into a fresh cache, up to the final norm (no LM head);
   - components of layer 0 at 1, 512 and 4096 tokens: the MoE block, the combine, the combine with the
     residual add and the next RMSNorm, the MoE block with them: GPU time, kernels and MLX ops per call,
     from which the combine's (and the norm's) share of the MoE block's GPU time follows.
GPU times are CUPTI's (gputime.device_activities, torch needed); without them those columns are empty.
Every case that fails is recorded with its error and the run goes on. Writes checks.csv, steps.csv,
kernels.csv, components.csv and meta.json under --out, each rewritten after every case, and prints its
progress with the time since the start. `--quick`: tiny widths and few steps, for a test on a CPU."""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.cache import make_prompt_cache

from . import kernels, machine
from .backends import pick_backend
from .gputime import device_activities
from .integrate import NORM_ROUNDING, ROUNDING, expert_terms, patched
from .model_check import agreement, decode
from .model_configs import CONFIGS, build_model

TIMED = ("Qwen3-30B-A3B", "Qwen1.5-MoE-A2.7B")
VARIANTS = {"unpatched": None, "patched": False, "fused": True}  # variant: fuse_norm (None: not patched)
# The checks' environment, set in a child process (MLX reads it once): float32 matmuls in float32 on CUDA. With MLX's
# default TF32 they move float32 logits by 1.5e-4 to 2.6e-4 patched or not (results/nvidia-h100-2026-12-05-tf32).
CHECKS_ENV = {"MLX_ENABLE_TF32": "0"}
LOW_PRECISION_SLACK = 1.25  # a low-precision patched model may be this much farther from float32 than unpatched
# Kernel categories by name: the first pattern found in the lower-cased name decides; raw names are kept too.
CATEGORIES = (("moe_weighted_reduce", "ours: combine"), ("moe_combine_rmsnorm", "ours: combine+norm"),
              ("rms_norm", "rms_norm"), ("gather", "gather_mm"), ("gemm", "matmul"), ("gemv", "matmul"),
              ("matmul", "matmul"), ("attention", "attention"), ("sdpa", "attention"), ("reduce", "reduce"),
              ("softmax", "softmax"), ("sort", "sort/argpartition"), ("partition", "sort/argpartition"),
              ("memcpy", "copy"), ("memset", "copy"), ("copy", "copy"), ("compiled", "fused elementwise"),
              ("binary", "elementwise"), ("unary", "elementwise"), ("ternary", "elementwise"))


@dataclass(frozen=True)
class Plan:
    """What a run measures; the defaults are the GPU run, QUICK the CPU test."""

    tiny: bool = False
    dtypes: tuple[str, ...] = ("bfloat16", "float32")
    check_layers: int = 2
    check_prompt: int = 16
    timed_layers: int = 4
    cached: int = 512
    prefills: tuple[int, ...] = (512, 4096)
    warmup: int = 3
    wall_steps: int = 32
    decode_rounds: int = 5  # timings of wall_steps chained steps per decode case: median, min and max
    gpu_steps: int = 8
    prefill_calls: int = 3
    component_calls: int = 8


QUICK = Plan(tiny=True, dtypes=("float32",), check_prompt=8, timed_layers=2, cached=16, prefills=(16, 32), warmup=1,
             wall_steps=3, decode_rounds=2, gpu_steps=2, prefill_calls=1, component_calls=2)


class Tables:
    """The run's tables as lists of rows, each rewritten as <name>.csv under `out` when a row is added; its clock
    (cases that would start past `budget_s` seconds are recorded as not run) and progress lines."""

    def __init__(self, out: Path, budget_s: float):
        self.out, self.rows, self.budget_s, self.start = out, {}, budget_s, time.perf_counter()

    def seconds(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.start

    def log(self, message: str) -> None:
        """A progress line with the seconds since the start."""
        print(f"[{self.seconds():7.1f} s] {message}", flush=True)

    def add(self, table: str, *new: dict) -> None:
        """Append rows and rewrite the table's file."""
        rows = self.rows.setdefault(table, [])
        rows.extend(new)
        with open(self.out / f"{table}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


def failed(tables: Tables, table: str, row: dict, error: Exception) -> None:
    """Record a case that raised: its row with the error."""
    text = f"{type(error).__name__}: {error}"[:500]
    tables.log(f"  failed: {text}")
    tables.add(table, {**row, "error": text})


def out_of_time(tables: Tables) -> bool:
    """Whether the run is past its time budget."""
    return tables.seconds() > tables.budget_s


def guarded(tables: Tables, table: str, row: dict, measure: Callable[[], dict]) -> None:
    """Add `row` with what measure() returns, or with its error if it raises: one failed case never ends the run.
    Past the time budget the case is not run and its row says so."""
    tables.log(f"{table}: {' '.join(f'{k}={v}' for k, v in row.items())}")
    t0 = time.perf_counter()
    try:
        if out_of_time(tables):
            raise TimeoutError(f"not run: past the time budget of {tables.budget_s:.0f} s")
        result = measure()
    except Exception as e:  # recorded, and the run goes on
        failed(tables, table, {**row, "seconds": round(time.perf_counter() - t0, 2)}, e)
        return
    tables.add(table, {**row, **result, "error": "", "seconds": round(time.perf_counter() - t0, 2)})


def built(tables: Tables, table: str, row: dict, name: str, n_layers: int, dtype: str, plan: Plan) -> nn.Module | None:
    """model_configs.build_model's model, or None after recording the failure in `table`."""
    tables.log(f"building {name}, {n_layers} layers, {dtype}")
    try:
        if out_of_time(tables):
            raise TimeoutError(f"not built: past the time budget of {tables.budget_s:.0f} s")
        return build_model(name, n_layers=n_layers, dtype=dtype, tiny=plan.tiny)
    except Exception as e:  # recorded, and the run goes on
        failed(tables, table, row, e)
        return None


def tokens(n: int, vocab: int, seed: int = 0) -> mx.array:
    """n token ids drawn uniformly from the vocabulary."""
    return mx.array(np.random.default_rng(seed).integers(0, vocab, n))


def variant(model: nn.Module, name: str, backend: str) -> contextlib.AbstractContextManager:
    """The model as a variant runs it: unpatched, or patched for the with block."""
    fuse = VARIANTS[name]
    return contextlib.nullcontext() if fuse is None else patched(model, fuse_norm=fuse, backend=backend)


def graph_ops(*outputs: mx.array) -> int:
    """MLX primitives in the graph that computes `outputs` from evaluated arrays: the ops the host issues."""
    dot = io.StringIO()
    mx.export_to_dot(dot, *outputs)
    return dot.getvalue().count("shape=rectangle")


def category(kernel: str) -> str:
    """The kind of a GPU kernel, from its name (CATEGORIES)."""
    name = kernel.lower()
    return next((c for pattern, c in CATEGORIES if pattern in name), "other")


def profile(run: Callable[[], Any], per: int) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """GPU time per unit of run() (which does `per` units and synchronises), kernels per unit, and per kernel
    name (calls, µs) per unit; NaN and {} without CUPTI."""
    acts = device_activities(run)
    if acts is None:
        return float("nan"), float("nan"), {}
    names: dict[str, tuple[float, float]] = {}
    for name, us in acts:
        calls, total = names.get(name, (0.0, 0.0))
        names[name] = (calls + 1 / per, total + us / per)
    return sum(us for _, us in acts) / per, len(acts) / per, names


def add_kernels(tables: Tables, row: dict, names: dict[str, tuple[float, float]]) -> None:
    """One kernels row per kernel name (profile's per-unit calls and µs), the slowest first."""
    tables.add("kernels", *({**row, "kernel": name, "category": category(name), "calls": calls, "gpu_us": us}
                            for name, (calls, us) in sorted(names.items(), key=lambda kv: -kv[1][1])))


# ---------------------------------------------------------------- 1. checks


def check_row(model: nn.Module, prompt: mx.array, fuse_norm: bool, rounding: str, backend: str, ref) -> dict:
    """model_check.agreement as a row, with whether it passes the issue's bounds and the process's TF32 setting."""
    a = agreement(model, prompt, fuse_norm=fuse_norm, rounding=rounding, backend=backend, ref=ref)
    if ref is None:
        passed = a.distance <= 1e-4 and a.same_tokens
    else:
        passed = a.same_tokens and a.patched_to_ref <= LOW_PRECISION_SLACK * a.unpatched_to_ref
    return {**asdict(a), "passed": passed, "mlx_enable_tf32": os.environ.get("MLX_ENABLE_TF32", "")}


def run_checks(tables: Tables, plan: Plan, backend: str) -> None:
    """Every model type, float32 first (its decode is the others' reference), with and without fuse_norm, with
    each of the combine's roundings (kernels.COMBINE_ROUNDINGS)."""
    for name in CONFIGS:
        ref = None
        for dtype in ("float32", *(d for d in plan.dtypes if d != "float32")):
            if dtype != "float32" and ref is None:
                continue
            model = built(tables, "checks", dict(model=name, dtype=dtype), name, plan.check_layers, dtype, plan)
            if model is None:
                continue
            prompt = tokens(plan.check_prompt, model.args.vocab_size)
            if dtype == "float32":
                ref = decode(model, prompt)
            for fuse, rounding in itertools.product((False, True), kernels.COMBINE_ROUNDINGS):
                guarded(tables, "checks", dict(model=name, dtype=dtype, fuse_norm=fuse, rounding=rounding),
                        lambda: check_row(model, prompt, fuse, rounding, backend,
                                          None if dtype == "float32" else ref))
            del model
            mx.clear_cache()


def run_checks_child(tables: Tables, quick: bool) -> None:
    """run_checks in a child process under CHECKS_ENV, its rows added to this run's checks table; a child that
    fails is recorded as one failed row."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "moe_reduce.model_bench", "--out", tmp, "--checks-only",
               "--budget-s", str(max(0.0, tables.budget_s - tables.seconds()))] + (["--quick"] if quick else [])
        path = os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])
        done = subprocess.run(cmd, env=os.environ | CHECKS_ENV | {"PYTHONPATH": path}, capture_output=True, text=True)
        print(done.stdout, end="", flush=True)
        found = Path(tmp) / "checks.csv"
        if done.returncode != 0 or not found.exists():
            failed(tables, "checks", {"model": "all"}, RuntimeError(f"the checks' child process exited "
                                                                    f"{done.returncode}: {done.stderr[-300:]}"))
            return
        with open(found, newline="") as f:
            tables.add("checks", *csv.DictReader(f))


# ---------------------------------------------------------------- 2. timing


def chained_steps(step: Callable[[mx.array], mx.array], y: mx.array, n: int) -> tuple[float, float, float, mx.array]:
    """n decode steps chained as mlx-lm's generate does: wall seconds per step, the host's seconds per step in
    building the step's graph (step(): mlx-lm's Python and ours) and in handing it over (mx.async_eval: MLX
    encodes every op's kernels), not the wait for the token, and the last token."""
    build = hand = 0.0
    t0 = time.perf_counter()
    for _ in range(n):
        t1 = time.perf_counter()
        nxt = step(y)
        t2 = time.perf_counter()
        mx.async_eval(nxt)
        hand += time.perf_counter() - t2
        build += t2 - t1
        y.item()
        y = nxt
    y.item()
    return (time.perf_counter() - t0) / n, build / n, hand / n, y


@contextlib.contextmanager
def counting_traces() -> Iterator[list[int]]:
    """Counts the runs of the Python that our compiled calls trace (kernels.combine_call, kernels.fused_call). On
    a GPU backend they run only when mx.compile traces: after a decode's first step none should run, and a count
    that grows with the steps is a retrace per call. (The host runner has no compiled call; its fused call runs
    fused_call every time.)"""
    count = [0]
    originals = {name: getattr(kernels, name) for name in ("combine_call", "fused_call")}

    def counted(fn: Callable[..., Any]) -> Callable[..., Any]:
        """fn, counting its calls."""
        def call(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            return fn(*args, **kwargs)
        return call

    try:
        for name, fn in originals.items():
            setattr(kernels, name, counted(fn))
        yield count
    finally:
        for name, fn in originals.items():
            setattr(kernels, name, fn)


def measure_decode(tables: Tables, row: dict, model: nn.Module, plan: Plan) -> dict:
    """Decode after plan.cached tokens: wall and host µs per step (median, min and max over plan.decode_rounds
    timings), GPU µs, kernels and ops per step; each kernel's row in kernels."""
    cache = make_prompt_cache(model)
    prompt = tokens(plan.cached, model.args.vocab_size)
    model(prompt[None], cache=cache)
    mx.eval([c.state for c in cache])

    def step(y: mx.array) -> mx.array:
        """The greedy next token of one cached decode step."""
        return mx.argmax(model(y[None], cache=cache)[:, -1, :], axis=-1)

    y = prompt[-1:]
    for _ in range(plan.warmup):
        y = step(y)
        mx.eval(y)
    nxt = step(y)
    ops = graph_ops(nxt)
    mx.eval(nxt)
    y, walls, builds, hands = nxt, [], [], []
    with counting_traces() as traces:
        for _ in range(plan.decode_rounds):
            wall, build, hand, y = chained_steps(step, y, plan.wall_steps)
            walls.append(wall * 1e6)
            builds.append(build * 1e6)
            hands.append(hand * 1e6)
    hosts = [b + h for b, h in zip(builds, hands)]
    gpu, n_kernels, names = profile(lambda: chained_steps(step, y, plan.gpu_steps), plan.gpu_steps)
    add_kernels(tables, row, names)
    return dict(wall_us=statistics.median(walls), wall_min_us=min(walls), wall_max_us=max(walls),
                host_us=statistics.median(hosts), host_min_us=min(hosts), host_max_us=max(hosts),
                build_us=statistics.median(builds), hand_us=statistics.median(hands), traces=traces[0], gpu_us=gpu,
                kernels=n_kernels, ops=ops,
                cached_last=plan.cached + plan.warmup + 1 + plan.wall_steps * plan.decode_rounds + plan.gpu_steps)


def measure_prefill(tables: Tables, row: dict, model: nn.Module, n: int, plan: Plan) -> dict:
    """A prefill of n tokens into a fresh cache, up to the final norm: wall µs (median), GPU µs, kernels, ops."""
    prompt = tokens(n, model.args.vocab_size)

    def once() -> None:
        """One prefill, evaluated."""
        mx.eval(model.model(prompt[None], cache=make_prompt_cache(model)))

    once()
    ops = graph_ops(model.model(prompt[None], cache=make_prompt_cache(model)))
    walls = []
    for _ in range(plan.prefill_calls):
        t0 = time.perf_counter()
        once()
        walls.append(time.perf_counter() - t0)
    gpu, n_kernels, names = profile(lambda: [once() for _ in range(2)], 2)
    add_kernels(tables, row, names)
    return dict(wall_us=statistics.median(walls) * 1e6, gpu_us=gpu, kernels=n_kernels, ops=ops)


def mlx_lm_combine(scores: mx.array, y: mx.array, sh_logit: mx.array | None, y_shared: mx.array | None) -> mx.array:
    """The combine as mlx-lm's MoE blocks write it, from expert_terms' flattened inputs."""
    n, k = scores.shape
    out = (y.reshape(n, k, -1) * scores[..., None]).sum(axis=-2)
    if y_shared is None:
        return out
    return out + mx.sigmoid(sh_logit[:, None]) * y_shared


def component_parts(model: nn.Module, name: str, backend: str, n: int) -> dict[str, Callable[[], mx.array]]:
    """Layer 0's parts at n tokens as a variant computes them: the whole decoder layer (no cache; with the fused
    variant it also computes the next norm), the MoE block, the combine, the combine + residual + next RMSNorm
    (layer 1's input norm), and the MoE block with them (the fused variant has no MoE block or combine of its
    own). Their inputs (a random residual stream h, its norm, the combine's inputs) are evaluated here."""
    layer, norm = model.layers[0], model.layers[1].input_layernorm
    block = layer.mlp
    h = mx.random.normal((n, model.args.hidden_size), key=mx.random.key(n)).astype(norm.weight.dtype)
    xn = layer.post_attention_layernorm(h)
    terms = expert_terms(block, xn)
    mx.eval(h, xn, terms)
    whole = {"decoder_layer": lambda: layer(h[None], None if n == 1 else "causal", None)}
    if VARIANTS[name]:
        def fused(t: tuple) -> mx.array:
            """Our combine + residual + RMSNorm kernel: the normed output."""
            return kernels.moe_combine_rmsnorm(*t, h, norm.weight, norm.eps, backend=backend,
                                               norm_rounding=NORM_ROUNDING, rounding=ROUNDING)[1]

        return {**whole, "combine_residual_norm": lambda: fused(terms),
                "moe_block_residual_norm": lambda: fused(expert_terms(block, xn))}
    if VARIANTS[name] is None:
        combine = lambda: mlx_lm_combine(*terms)  # noqa: E731
    else:
        combine = lambda: kernels.moe_weighted_reduce(*terms, backend=backend, rounding=ROUNDING)  # noqa: E731
    return {**whole, "moe_block": lambda: block(xn), "combine": combine,
            "combine_residual_norm": lambda: norm(h + combine()),
            "moe_block_residual_norm": lambda: norm(h + block(xn))}


def measure_part(fn: Callable[[], mx.array], plan: Plan) -> dict:
    """GPU µs, kernels and MLX ops per call of one part, after one call to warm up."""
    mx.eval(fn())
    ops = graph_ops(fn())
    gpu, n_kernels, names = profile(lambda: [mx.eval(fn()) for _ in range(plan.component_calls)],
                                    plan.component_calls)
    return dict(gpu_us=gpu, kernels=n_kernels, ops=ops, kernel_names=" | ".join(sorted(names)))


def time_components(tables: Tables, row: dict, model: nn.Module, backend: str, plan: Plan) -> None:
    """One components row per part of layer 0 (component_parts) at row["n_tokens"] tokens."""
    try:
        parts = component_parts(model, row["variant"], backend, row["n_tokens"])
    except Exception as e:  # recorded, and the run goes on
        failed(tables, "components", row, e)
        return
    for part, fn in parts.items():
        guarded(tables, "components", {**row, "part": part}, lambda: measure_part(fn, plan))


def run_timing(tables: Tables, plan: Plan, backend: str) -> None:
    """Every timed model and dtype: decode, prefills and components, each in every variant."""
    for name in TIMED:
        for dtype in plan.dtypes:
            base = dict(model=name, dtype=dtype, layers=plan.timed_layers)
            model = built(tables, "steps", base, name, plan.timed_layers, dtype, plan)
            if model is None:
                continue
            for v in VARIANTS:
                with variant(model, v, backend):
                    row = {**base, "case": "decode", "n_tokens": 1, "cached": plan.cached, "variant": v}
                    guarded(tables, "steps", row, lambda: measure_decode(tables, row, model, plan))
                    for n in plan.prefills:
                        row = {**base, "case": "prefill", "n_tokens": n, "cached": 0, "variant": v}
                        guarded(tables, "steps", row, lambda: measure_prefill(tables, row, model, n, plan))
                    for n in (1, *plan.prefills):
                        time_components(tables, {**base, "n_tokens": n, "variant": v}, model, backend, plan)
            del model
            mx.clear_cache()


# ---------------------------------------------------------------- the command


def metadata_of(plan: Plan, backend: str, argv: list[str]) -> dict:
    """Where and how the run was taken."""
    return dict(command="python -m moe_reduce.model_bench " + " ".join(argv), date=date.today().isoformat(),
                backend=backend, device=str(mx.default_device()), gpu=machine.gpu_name(), cpu=machine.cpu_name(),
                versions={**machine.versions(), "mlx_lm": metadata.version("mlx-lm")}, plan=asdict(plan),
                timed=list(TIMED), variants=VARIANTS, norm_rounding=NORM_ROUNDING, rounding=ROUNDING,
                checks_env=CHECKS_ENV,
                configs=CONFIGS, low_precision_slack=LOW_PRECISION_SLACK)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the checks and the timing, write the tables and meta.json."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m moe_reduce.model_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSV files and meta.json")
    parser.add_argument("--quick", action="store_true", help="tiny widths, few steps (a CPU test)")
    parser.add_argument("--no-checks", action="store_true", help="time only")
    parser.add_argument("--checks-only", action="store_true",
                        help="check only, in this process's environment (a run checks in a child under CHECKS_ENV)")
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="start no case after this many seconds; later cases are recorded as not run "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "meta.json").write_text("{}\n")
    except OSError as e:
        parser.error(f"--out: expected a folder this process can write, got {str(args.out)!r} ({e.strerror})")
    plan, backend = QUICK if args.quick else Plan(), pick_backend()
    meta = metadata_of(plan, backend, argv)
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    tables = Tables(args.out, args.budget_s)
    tables.log(f"backend {backend}, device {meta['device']}, gpu {meta['gpu']}")
    if args.checks_only:
        run_checks(tables, plan, backend)
    else:
        if not args.no_checks:
            run_checks_child(tables, args.quick)
        run_timing(tables, plan, backend)
    meta["seconds"] = round(tables.seconds(), 1)
    meta["failed"] = sum(bool(r.get("error")) for rows in tables.rows.values() for r in rows)
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    tables.log(f"done: {meta['failed']} failed cases; files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
