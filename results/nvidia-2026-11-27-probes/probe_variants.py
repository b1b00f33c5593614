"""GPU probe, call 2: kernel-body variants at decode and large sizes (GPU time, CUPTI), host cost per call,
the fixed traffic ceilings, torch.compile's generated code."""
import itertools, json, os, statistics, sys, time
from pathlib import Path
import mlx.core as mx
OUT = os.environ["OUT"]
STEP = sys.argv[1]
from moe_reduce import kernels, gputime, backends, ceiling, impls
from moe_reduce.inputs import make_inputs
from moe_reduce.timing import chained, run_calls, GPU_TIMER
from moe_reduce.impls import prepare_mlx
from moe_reduce.sweep import n_sets, problem_bytes, GPU_BUDGET
from moe_reduce.validate import validate
from moe_reduce.reference import reference_f64
from moe_reduce.check import rel_error, tolerance

FAST = """
namespace metal { namespace fast {
__device__ inline float exp(float x) { return ::__expf(x); }
__device__ inline float divide(float a, float b) { return ::__fdividef(a, b); }
} }
"""
HEADER = backends.read_source("metal_compat.cuh") + FAST

def save(name, obj):
    json.dump(obj, open(f"{OUT}/{name}.json", "w"), indent=1, default=str)

def sync(outs):
    mx.eval(*outs); mx.synchronize()

if STEP == "variants":
    names = ["vecA", "vecB", "vecC", "vecD", "vecE", "scalarA", "scalarK"]
    objs = {n: mx.fast.cuda_kernel(name=n, input_names=list(kernels.INPUT_NAMES), output_names=["out"],
                                   source=open(Path(__file__).with_name("variants") / f"{n}.metal").read(), header=HEADER) for n in names}
    rows = []
    for dtype, n_tok in itertools.product(("float32", "bfloat16"), (1, 4, 16, 64, 256, 4096)):
        base = make_inputs(n_tok, 2048, 8)
        count = n_sets(problem_bytes(n_tok, 2048, 8, dtype, True), GPU_BUDGET)
        sets = [prepare_mlx(base, dtype) for _ in range(count)]
        p = validate(*sets[0])
        ref = reference_f64(*sets[0])
        cfgs = []
        for name, threads in itertools.product(names, (32, 64, 128, 256)):
            vname = "scalar" if name.startswith("scalar") else "vec_k"
            conf = kernels.launch_config(vname, p, threads)
            tpl = conf.template + ([("TOP_K", 8)] if name == "scalarK" else [])
            conf = kernels.LaunchConfig(conf.grid, conf.threadgroup, tpl)
            fn = lambda *a, obj=objs[name], conf=conf: kernels.dispatch(obj, conf, p, kernels.CombineArgs(*a))
            out = kernels.dispatch(objs[name], conf, p, kernels.CombineArgs(*sets[0]), float("nan"))
            err = rel_error(out, ref)
            assert err < tolerance(dtype), (name, dtype, n_tok, err)
            cfgs.append((name, threads, chained(fn, sets)[0], err))
        rot = (i % count for i in itertools.count())
        for _, _, call, _ in cfgs:
            run_calls(call, 4, rot, sync, mx.async_eval, 64)
        def run():
            for (_, _, call, _), r in itertools.product(cfgs, range(3)):
                run_calls(call, 64, rot, sync, mx.async_eval, 64)
        acts = [us for nm, us in gputime.device_activities(run) if "custom_kernel" in nm]
        assert len(acts) == len(cfgs) * 3 * 64, len(acts)
        for i, (name, threads, _, err) in enumerate(cfgs):
            reps = [statistics.median(acts[(i * 3 + r) * 64:(i * 3 + r + 1) * 64]) for r in range(3)]
            rows.append(dict(dtype=dtype, n=n_tok, kernel=name, threads=threads, gpu_us=statistics.median(reps),
                             spread=(max(reps) - min(reps)) / statistics.median(reps), err=err))
        best = sorted((r["gpu_us"], r["kernel"], r["threads"]) for r in rows if r["dtype"] == dtype and r["n"] == n_tok)
        print(dtype, n_tok, [(round(a, 2), b, c) for a, b, c in best[:5]],
              "A/256:", [round(r["gpu_us"], 2) for r in rows if r["dtype"] == dtype and r["n"] == n_tok and r["kernel"] == "vecA" and r["threads"] == 256], flush=True)
    save("variants", rows)

if STEP == "basics":
    args = make_inputs(1, 2048, 8).mlx()
    empty = backends.compile_shader("empty.metal", ("x",), "cuda")
    x = mx.zeros((1,)); mx.eval(x)
    empty_c = mx.compile(lambda a: empty(inputs=[a], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)], output_dtypes=[mx.float32])[0])
    fast = kernels.compiled_launch("auto", "auto", None)
    fns = {"moe_weighted_reduce": lambda: kernels.moe_weighted_reduce(*args), "compiled_launch direct": lambda: fast(*args),
           "empty compiled": lambda: empty_c(x)}
    host = {}
    for name, fn in fns.items():
        fn(); mx.synchronize()
        reps = []
        for _ in range(5):
            outs = []
            t0 = time.perf_counter()
            for _ in range(2000):
                outs.append(fn())
            reps.append((time.perf_counter() - t0) / 2000 * 1e6)
            mx.eval(*outs); mx.synchronize()
        host[name] = statistics.median(reps)
    rates = ceiling.traffic_ceilings("gpu", 1 << 30, GPU_TIMER, "cuda")
    info = {"host_us_per_call": host, "device_info": {k: str(v) for k, v in mx.device_info().items()},
            "ceilings": {k: vars(v) for k, v in rates.items()},
            "empty_us": ceiling.empty_kernel_us("cuda", GPU_TIMER), "empty_plain_us": ceiling.empty_kernel_us("cuda", GPU_TIMER, False)}
    save("basics", info)
    print(json.dumps(info, indent=1))

if STEP == "inductor":
    import torch
    from moe_reduce.reference_torch import torch_combine
    from moe_reduce import impls_torch
    for dtype in ("float32", "bfloat16"):
        a = impls_torch.prepare(make_inputs(4096, 2048, 8), dtype)
        f = torch.compile(torch_combine, dynamic=False)
        f(*a); torch.cuda.synchronize()
        g = gputime.gpu_time(lambda: [f(*a) for _ in range(20)] and torch.cuda.synchronize(), 20)
        print(dtype, "gpu_us", g.us, g.kernels, flush=True)
        torch.compiler.reset()
