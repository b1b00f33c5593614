"""Device experiment: host cost per call, timing modes, variants, threadgroup sizes, torch.compile modes."""
import dataclasses, json, os, time
import mlx.core as mx
from moe_reduce import bench, kernels
from moe_reduce.inputs import make_inputs

OUT = os.environ.get("OUT", "/tmp")
BK = kernels.pick_backend()
TS = [int(x) for x in os.environ.get("TS", "1,256,1024,4096,16384").split(",")]
TS2 = [int(x) for x in os.environ.get("TS2", "1,4096").split(",")]
H = int(os.environ.get("H", "2048"))
res = {}
cfg = bench.TimerConfig(repeats=9, max_s=1.0, batch_s=0.02)

def sets_for(t, h, k, dtype, n, shared=True):
    inp = make_inputs(t, h, k, shared=shared)
    return [bench._prepare_mlx(inp, dtype) for _ in range(n)]

def time_fn(fn, sets, graph_calls):
    call, linked = bench.chained(fn, sets)
    t = bench.time_calls(call, bench.sync_mlx, len(sets), dataclasses.replace(cfg, graph_calls=graph_calls),
                         flush=mx.async_eval, group=graph_calls)
    return round(t.median * 1e6, 2), round(t.p20 * 1e6, 2), round(t.p80 * 1e6, 2)

def host_cost(fn, args, n=3000):
    outs = []
    t0 = time.perf_counter()
    for _ in range(n):
        outs.append(fn(*args))
    dt = (time.perf_counter() - t0) / n * 1e6
    del outs
    return round(dt, 2)

# ---- A: host cost of building one lazy call
a = sets_for(1, H, 8, "float32", 1)[0]
empty = kernels.compile_shader("empty.metal", ("x",), BK)
x1 = mx.zeros((1,), mx.float32); mx.eval(x1)
run = kernels.plan(kernels._signature(a), "auto", "vec_k", 256)
raw = lambda *args: run.kernel(inputs=list(args), template=run.template, grid=run.grid, threadgroup=run.group,
                               output_shapes=[run.out_shape], output_dtypes=[mx.float32])[0]
res["host_us"] = {
    "empty raw call": host_cost(lambda x: empty(inputs=[x], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)], output_dtypes=[mx.float32])[0], (x1,)),
    "vec_k raw call": host_cost(raw, a),
    "moe_weighted_reduce vec_k": host_cost(lambda *z: kernels.moe_weighted_reduce(*z, variant="vec_k"), a),
    "mlx_compile": host_cost(lambda *z: bench.mlx_reference(*z, compiled=True), a),
    "mx.add": host_cost(lambda p, q: p + q, (a[3], a[4])),
}
print(res["host_us"], flush=True)

# ---- B: timing modes x variants x sizes
empty_call = lambda x: empty(inputs=[x], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)], output_dtypes=[mx.float32])[0]
res["modes"] = []
for gc in (1, 64):
    us = bench.empty_kernel_us(BK, dataclasses.replace(cfg, graph_calls=gc))
    res["modes"].append(dict(impl="empty", graph_calls=gc, us=us)); print(res["modes"][-1], flush=True)
for dtype in ("float32", "bfloat16"):
    for t in TS:
        nbytes = bench.problem_bytes(t, H, 8, dtype, True)
        sets = sets_for(t, H, 8, dtype, bench.n_sets(nbytes, bench.GPU_BUDGET))
        impls = {v: (lambda v: lambda *z: kernels.moe_weighted_reduce(*z, variant=v))(v) for v in kernels.VARIANTS}
        impls["vec_k_raw"] = None
        if t in TS2:
            impls["mlx_compile"] = lambda *z: bench.mlx_reference(*z, compiled=True)
        for name, fn in impls.items():
            if fn is None:
                r = kernels.plan(kernels._signature(sets[0]), "auto", "vec_k", 256)
                fn = (lambda r: lambda *z: r.kernel(inputs=list(z), template=r.template, grid=r.grid, threadgroup=r.group,
                             output_shapes=[r.out_shape], output_dtypes=[z[1].dtype])[0])(r)
            for gc in ((1, 64) if name in ("vec_k", "mlx_compile") else (64,)):
                us = time_fn(fn, sets, gc)
                row = dict(impl=name, dtype=dtype, t=t, graph_calls=gc, us=us, gbps=round(nbytes / us[0] / 1e3, 1))
                res["modes"].append(row); print(row, flush=True)
        del sets
        mx.clear_cache()

# ---- C: threadgroup sizes (vec_k)
res["threads"] = []
for dtype in ("float32", "bfloat16"):
    for t in TS2:
        nbytes = bench.problem_bytes(t, H, 8, dtype, True)
        sets = sets_for(t, H, 8, dtype, bench.n_sets(nbytes, bench.GPU_BUDGET))
        for th in (64, 128, 256, 512, 1024):
            us = time_fn(lambda *z: kernels.moe_weighted_reduce(*z, variant="vec_k", threads=th), sets, 64)
            row = dict(dtype=dtype, t=t, threads=th, us=us, gbps=round(nbytes / us[0] / 1e3, 1))
            res["threads"].append(row); print(row, flush=True)
        del sets; mx.clear_cache()

# ---- D: no shared expert
res["noshared"] = []
for dtype in ("float32", "bfloat16"):
    for t in TS2:
        for shared in (True, False):
            nbytes = bench.problem_bytes(t, H, 8, dtype, True, shared)
            sets = sets_for(t, H, 8, dtype, bench.n_sets(nbytes, bench.GPU_BUDGET), shared)
            us = time_fn(lambda *z: kernels.moe_weighted_reduce(*z, variant="vec_k"), sets, 64)
            row = dict(dtype=dtype, t=t, shared=shared, us=us, gbps=round(nbytes / us[0] / 1e3, 1))
            res["noshared"].append(row); print(row, flush=True)
            del sets; mx.clear_cache()

# ---- E: copy ceilings in the chained mode, empty floor
res["ceilings"] = bench.copy_ceilings(bench.mlx_processor(), int(os.environ.get("CEIL", 1 << 30)), cfg, BK)
print(res["ceilings"], flush=True)

# ---- F: torch.compile dynamic vs static
torch = bench.import_torch_cuda()
res["torch"] = []
for dtype in (() if torch is None else ("float32", "bfloat16")):
    for t in (256, 4096):
        impl = bench.torch_impl(True)
        inp = make_inputs(t, H, 8)
        nbytes = bench.problem_bytes(t, H, 8, dtype, True)
        sets = [impl.prepare(inp, dtype) for _ in range(bench.n_sets(nbytes, bench.GPU_BUDGET))]
        for mode in ("eager", "dynamic", "static"):
            torch._dynamo.reset()
            comb = bench.torch_impl(False).build(dtype)
            fn = comb if mode == "eager" else torch.compile(comb, dynamic=(mode == "dynamic"))
            call, _ = bench.chained(fn, sets)
            tm = bench.time_calls(call, impl.sync, len(sets), cfg)
            row = dict(dtype=dtype, t=t, mode=mode, us=round(tm.median * 1e6, 2), gbps=round(nbytes / tm.median / 1e9, 1))
            res["torch"].append(row); print(row, flush=True)
        del sets; torch.cuda.empty_cache()

json.dump(res, open(f"{OUT}/exp1.json", "w"), indent=1)
