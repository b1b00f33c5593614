"""GPU probe, call 3: managed vs device inputs; empty-kernel GPU time for MLX and Triton launches; decode GPU
time of every variant and threadgroup size against the Triton peer under the same rotation; traffic ceilings."""
import itertools, json, os, statistics, sys, time
import mlx.core as mx
OUT = os.environ["OUT"]
STEP = sys.argv[1]
from moe_reduce import kernels, gputime, backends, ceiling, tune
from moe_reduce.inputs import make_inputs, CombineArgs
from moe_reduce.timing import chained, run_calls, GPU_TIMER
from moe_reduce.impls import prepare_mlx, GATE_DTYPE
from moe_reduce.sweep import n_sets, problem_bytes, GPU_BUDGET

def save(name, obj):
    json.dump(obj, open(f"{OUT}/{name}.json", "w"), indent=1, default=str)

def sync(outs):
    mx.eval(*outs); mx.synchronize()

def gpu_us(call, count, calls=64, reps=3, match="custom_kernel"):
    rot = (i % count for i in itertools.count())
    run_calls(call, 4, rot, sync, mx.async_eval, 64)
    acts = gputime.device_activities(lambda: [run_calls(call, calls, rot, sync, mx.async_eval, 64) for _ in range(reps)])
    ks = [us for n, us in acts if match in n]
    return statistics.median(ks), len(ks)

if STEP == "memory":
    import torch
    from moe_reduce import impls_torch, impls_triton as it
    res = {}
    for n in (1, 64, 4096):
        base = make_inputs(n, 2048, 8)
        count = n_sets(problem_bytes(n, 2048, 8, "float32", True), GPU_BUDGET)
        managed = [base.mlx("float32", GATE_DTYPE) for _ in range(count)]
        mx.eval(managed)
        device = [prepare_mlx(base, "float32") for _ in range(count)]
        for name, sets in (("managed", managed), ("device", device)):
            call, _ = chained(lambda *a: kernels.moe_weighted_reduce(*a, variant="vec_k", threads=256), sets)
            res[f"n{n} vec_k/256 {name} inputs"] = gpu_us(call, count)
        tsets = [impls_torch.prepare(base, "float32") for _ in range(count)]
        cfg = it.best_config(it.signature(tsets[0]))
        step, _ = chained(lambda *a: it.launch(cfg, *a), tsets)
        rot = (i % count for i in itertools.count())
        run_calls(step, 4, rot, impls_torch.sync)
        acts = gputime.device_activities(lambda: [run_calls(step, 64, rot, impls_torch.sync) for _ in range(3)])
        ks = [us for nm, us in acts if "combine_kernel" in nm]
        res[f"n{n} triton {cfg} (same rotation: {count} sets)"] = (statistics.median(ks), len(ks))
        print({k: v for k, v in res.items() if k.startswith(f"n{n} ")}, flush=True)
        del managed, device, tsets
        mx.clear_cache(); torch.cuda.empty_cache()
    # empty kernels: MLX (compiled launch, chained) and a Triton no-op
    empty = backends.compile_shader("empty.metal", ("x",), "cuda")
    x = mx.zeros((1,)); mx.eval(x)
    ef = mx.compile(lambda a: empty(inputs=[a], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)], output_dtypes=[mx.float32])[0])
    res["empty mlx"] = gpu_us(lambda i, prev: ef(x if prev is None else prev), 1, match="empty")
    import triton, triton.language as tl
    @triton.jit
    def nop(p):
        pass
    t = torch.zeros(1, device="cuda")
    nop[(1,)](t); torch.cuda.synchronize()
    acts = gputime.device_activities(lambda: ([nop[(1,)](t) for _ in range(64)], torch.cuda.synchronize()))
    ks = [us for nm, us in acts if "nop" in nm]
    res["empty triton"] = (statistics.median(ks), len(ks))
    save("memory", res)
    print(json.dumps(res, indent=1, default=str))

if STEP == "decode":
    import torch
    from moe_reduce import impls_torch, impls_triton as it
    rows = []
    for dtype in ("float32", "bfloat16"):
        for n in (1, 4, 16, 64, 256):
            for s in tune.tune_size("cuda", dtype, n, 2048, 8):
                rows.append(dict(impl=f"kernel_{s.variant}", cfg=s.threads, dtype=dtype, n=n, gpu_us=s.gpu_us, spread=s.spread))
            base = make_inputs(n, 2048, 8)
            count = n_sets(problem_bytes(n, 2048, 8, dtype, True), GPU_BUDGET)
            sets = [impls_torch.prepare(base, dtype) for _ in range(count)]
            for cfg in it.candidates(2048):
                step, _ = chained(lambda *a, cfg=cfg: it.launch(cfg, *a), sets)
                rot = (i % count for i in itertools.count())
                run_calls(step, 8, rot, impls_torch.sync)
                acts = gputime.device_activities(lambda: [run_calls(step, 64, rot, impls_torch.sync) for _ in range(3)])
                ks = [us for name, us in acts if "combine_kernel" in name]
                reps = [statistics.median(ks[r*64:(r+1)*64]) for r in range(3)]
                rows.append(dict(impl="triton", cfg=f"{cfg.block}x{cfg.warps}", dtype=dtype, n=n,
                                 gpu_us=statistics.median(reps), spread=(max(reps)-min(reps))/statistics.median(reps)))
            mine = sorted((r["gpu_us"], r["impl"], r["cfg"]) for r in rows if r["n"] == n and r["dtype"] == dtype and r["impl"] != "triton")
            tri = sorted((r["gpu_us"], r["cfg"]) for r in rows if r["n"] == n and r["dtype"] == dtype and r["impl"] == "triton")
            print(dtype, n, "ours", [(round(a, 2), b, c) for a, b, c in mine[:3]], "triton", [(round(a, 2), b) for a, b in tri[:2]], flush=True)
            del sets
            torch.cuda.empty_cache(); mx.clear_cache()
    save("decode", rows)

if STEP == "ceilings":
    rates = ceiling.traffic_ceilings("gpu", 1 << 30, GPU_TIMER, "cuda")
    save("ceilings", {k: vars(v) for k, v in rates.items()})
    print(json.dumps({k: vars(v) for k, v in rates.items()}, indent=1))

if STEP == "ncu_target":
    import torch
    from moe_reduce import impls_torch, impls_triton as it
    from moe_reduce.reference_torch import torch_combine
    for dtype in ("float32", "bfloat16"):
        base = make_inputs(4096, 2048, 8)
        a = prepare_mlx(base, dtype)
        for v in ("vec_k", "vec"):
            mx.eval(kernels.moe_weighted_reduce(*a, variant=v))
        ta = impls_torch.prepare(base, dtype)
        f = torch.compile(torch_combine, dynamic=False)
        f(*ta); f(*ta)
        it.launch(it.Config(1024, 4), *ta)
        torch.cuda.synchronize()
        torch.compiler.reset()
