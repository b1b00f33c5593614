"""Call 4: at one token, is the gate logit's 4-byte array (MLX keeps arrays of <= 8 bytes in a unified-memory
pool) what makes the kernel slow? GPU time of the same kernel with sh_logit as its own 1-element array, as a
view into a 16-element array, and with no shared expert."""
import itertools, json, os, statistics
import mlx.core as mx
from moe_reduce import kernels, gputime
from moe_reduce.inputs import make_inputs
from moe_reduce.impls import prepare_mlx
from moe_reduce.timing import chained, run_calls

def sync(outs):
    mx.eval(*outs); mx.synchronize()

res = {}
count = 2048
for variant in ("scalar_k", "vec_k"):
    for case in ("own 1-element sh_logit", "sh_logit a view into 16 elements", "no shared expert"):
        base = make_inputs(1, 2048, 8, shared=case != "no shared expert")
        sets = []
        for _ in range(count):
            a = prepare_mlx(base, "float32")
            if case.startswith("sh_logit a view"):
                big = mx.concatenate([a.sh_logit, mx.zeros((15,))])
                mx.eval(big)
                a = a._replace(sh_logit=big[:1])
            sets.append(a)
        call, _ = chained(lambda *a: kernels.moe_weighted_reduce(*a, variant=variant, threads=512), sets)
        rot = (i % count for i in itertools.count())
        run_calls(call, count, rot, sync, mx.async_eval, 64)
        acts = gputime.device_activities(lambda: [run_calls(call, 64, rot, sync, mx.async_eval, 64) for _ in range(3)])
        ks = [us for n, us in acts if "moe_weighted" in n]
        res[f"{variant}, {case}"] = (statistics.median(ks), len(ks))
        print(variant, case, res[f"{variant}, {case}"], flush=True)
json.dump(res, open(os.environ["OUT"] + "/one_token.json", "w"), indent=1)
