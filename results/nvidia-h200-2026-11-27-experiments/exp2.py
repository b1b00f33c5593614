"""Device experiment 2: compiled launches (host cost), Row loads and wider threads (bandwidth)."""
import dataclasses, json, os, time
import mlx.core as mx
from moe_reduce import bench, kernels
from moe_reduce.inputs import make_inputs
from moe_reduce.reference import _mlx_combine
from moe_reduce.validate import validate

OUT = os.environ.get("OUT", "/tmp")
BK = kernels.pick_backend()
H = int(os.environ.get("H", "2048"))
TS = [int(x) for x in os.environ.get("TS", "1,256,1024,4096").split(",")]
TB = [int(x) for x in os.environ.get("TB", "2048,4096,16384").split(",")]
cfg = bench.TimerConfig(repeats=9, max_s=1.0, batch_s=0.02)
res = {"host": [], "decode": [], "bw": []}

def sets_for(t, dtype):
    inp = make_inputs(t, H, 8)
    n = bench.n_sets(bench.problem_bytes(t, H, 8, dtype, True), bench.GPU_BUDGET)
    return [bench._prepare_mlx(inp, dtype) for _ in range(n)]

def time_fn(fn, sets, gc=64):
    call, _ = bench.chained(fn, sets)
    t = bench.time_calls(call, bench.sync_mlx, len(sets), dataclasses.replace(cfg, graph_calls=gc), flush=mx.async_eval, group=gc)
    return round(t.median * 1e6, 2), round(t.p20 * 1e6, 2), round(t.p80 * 1e6, 2)

def host_cost(fn, args, n=3000):
    outs = []
    t0 = time.perf_counter()
    for _ in range(n):
        outs.append(fn(*args))
    return round((time.perf_counter() - t0) / n * 1e6, 2)

def launcher(file, tpl, grid, group, out_shape, out_dtype, names=tuple(kernels.INPUT_NAMES)):
    k = kernels.compile_shader(file, names, BK)
    return lambda *z: k(inputs=list(z), template=tpl, grid=grid, threadgroup=group, output_shapes=[out_shape], output_dtypes=[out_dtype])[0]

empty_raw = launcher("empty.metal", [], (1, 1, 1), (1, 1, 1), (1,), mx.float32, ("x",))
empty_c = mx.compile(empty_raw) if BK != "host" else empty_raw
x1 = mx.zeros((1,), mx.float32); mx.eval(x1)
res["host"].append(("empty raw", host_cost(empty_raw, (x1,))))
res["host"].append(("empty compiled", host_cost(empty_c, (x1,))))
for gc in (1, 64):
    for name, f in (("empty raw", empty_raw), ("empty compiled", empty_c)):
        us = time_fn(lambda *z: f(z[4]), [(None, None, None, None, x1)], gc)
        res["decode"].append(dict(impl=name, gc=gc, us=us)); print(res["decode"][-1], flush=True)

for dtype in ("float32", "bfloat16"):
    for t in TS:
        sets = sets_for(t, dtype)
        run = kernels.plan(kernels._signature(sets[0]), "auto", "vec_k", 256)
        raw = launcher(kernels.VARIANTS["vec_k"].file, run.template, run.grid, run.group, run.out_shape, sets[0][1].dtype)
        comp = mx.compile(raw) if BK != "host" else raw
        mlxc = mx.compile(_mlx_combine)
        impls = {"wrapper": lambda *z: kernels.moe_weighted_reduce(*z, variant="vec_k"), "raw": raw, "compiled": comp,
                 "mlx_compile_novalidate": mlxc}
        for name, f in impls.items():
            if t == TS[0]:
                res["host"].append((f"{name} {dtype}", host_cost(f, sets[0])))
            us = time_fn(f, sets)
            res["decode"].append(dict(impl=name, dtype=dtype, t=t, us=us)); print(res["decode"][-1], flush=True)
        del sets; mx.clear_cache()
print(res["host"], flush=True)

# bandwidth: vec_k vs Row loads, NV 1/2 (f32), 2/4 (bf16)
for dtype in ("float32", "bfloat16"):
    for t in TB:
        sets = sets_for(t, dtype)
        p = validate(*sets[0])
        nbytes = bench.problem_bytes(t, H, 8, dtype, True)
        base_nv = 16 // mx.array(0, dtype=sets[0][1].dtype).itemsize // 4
        for file in (kernels.VARIANTS["vec_k"].file, "exp_vec_row.metal"):
            for nv in (base_nv, 2 * base_nv):
                W = 4 * nv
                _, _, tpl = kernels.launch_config("vec_k", p)
                tpl = [(n, nv if n == "NV" else (H % W == 0) if n == "ALIGNED" else v) for n, v in tpl]
                n = t * -(-H // W)
                f = launcher(file, tpl, (n, 1, 1), (256, 1, 1), (t, H), sets[0][1].dtype)
                mx.eval(f(*sets[0]))
                us = time_fn(f, sets)
                row = dict(file=file, dtype=dtype, t=t, nv=nv, us=us, gbps=round(nbytes / us[0] / 1e3, 1))
                res["bw"].append(row); print(row, flush=True)
        del sets; mx.clear_cache()
res["ceilings"] = bench.copy_ceilings(bench.mlx_processor(), int(os.environ.get("CEIL", 1 << 30)), cfg, BK)
print(res["ceilings"])
json.dump(res, open(f"{OUT}/exp2.json", "w"), indent=1)
