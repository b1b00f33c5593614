#!/usr/bin/env bash
# The GPU runs of 2026-12-06 and 07, from the repository root after `bash .device/setup.sh`; STEP arguments run in order:
#   tune:      python -m moe_reduce tune (this card's launch table, installed here and kept for later calls)
#   small:     python -m moe_reduce.smallcalls (empty kernels, one-token GPU time, host cost per call)
#   bench-D:   python -m moe_reduce bench, dtype D, our kernels and Triton, tokens and hidden sweeps
#   contenders-D: python -m moe_reduce bench, dtype D, every combine implementation (as 2026-11-27), tokens sweep
#   probes:    results/nvidia-h100-2026-12-05-probes/round1.py env latency host (pointer chase, host cost)
#   fused:     python -m moe_reduce bench --op fused (combine + RMSNorm, four implementations)
#   model:     python -m moe_reduce.model_bench (mlx-lm models with our kernels)
#   modelchecks, modeltiming: the two halves of model (checks only, with MLX_ENABLE_TF32=0 as model's child
#              sets it; timing only), so that a short call brings the checks back first
#   repeat:    bench of kernel_auto, kernel_row, Triton, tokens sweep, both dtypes (a second measurement)
#   graphs:    results/device-2026-12-06-graphs.py (kernel durations and gaps in and out of CUDA graphs, ours and Triton)
#   params:    results/device-2026-12-06-params.py (one-thread kernels that read parameters, in and out of graphs)
#   gputests:  the kernel tests on the cuda backend
#   rounding:  results/device-2026-12-07-rounding.py (our per-op gate and expert sum against MLX's ops, which
#              sigmoid form MLX computes, our fused norm against mx.fast.rms_norm), then the
#              per-op rounding tests (tests/test_rounding.py) on the cuda backend
#   ab:        results/device-2026-12-07-ab.py (what rounding per op and MLX's norm order cost our kernels, side by side)
#   placement: results/device-2026-12-06-placement.py (inputs in managed vs device memory, CUDA graphs on/off)
#   gap:       results/device-2026-12-06-gap.py gap (bench's wall-minus-GPU gap at 2048-16384 tokens: long batches, timelines)
#   ncu16k:    results/device-2026-12-06-gap.py ncu (Nsight Compute counters at 16384 tokens)
#   ncu:       results/nvidia-h100-2026-12-05-probes/round1.py env ncu (counters at 1, 16, 64, 1024 tokens, as 05 part 5 reads)
#   width:     results/device-2026-12-06-width.py (the row body at 4, 8 and 16 bytes per thread, vec_k and Triton, 4-1024 tokens)
# Each step's files and log are packed into $OUT/<step>.tgz when it ends (the device returns few files).
# A table tuned by an earlier call on the same warm machine (bench-runs/state/, git-ignored) is installed first.
set -u
export PYTHONPATH=lib PYTHONUNBUFFERED=1
STATE=bench-runs/state
declare -A LIMIT=([tune]=240 [small]=90 [bench-float32]=260 [bench-bfloat16]=260 [probes]=120 [fused]=160
                  [model]=260 [repeat]=200 [gputests]=220 [placement]=200 [graphs]=200 [params]=120
                  [gap]=200 [ncu16k]=200 [ncu]=240 [width]=150
                  [contenders-float32]=540 [contenders-bfloat16]=540 [rounding]=200 [modelchecks]=120 [modeltiming]=240
                  [ab]=150)
IMPLS=kernel_auto,kernel_row,kernel_scalar_k,kernel_vec_k,triton
CONTENDERS=kernel_auto,kernel_row,kernel_vec_k,kernel_vec,kernel_scalar_k,kernel_scalar,triton,triton_graph,torch_compile,torch_compile_graph,torch,mlx_compile,mlx
run_step() {
    case $1 in
        tune) python3 -m moe_reduce tune --out "$OUT/tune" && mkdir -p $STATE \
                  && cp "$OUT/tune/launch_table.json" $STATE/ && python3 -m moe_reduce.launch_table $STATE/launch_table.json ;;
        small) python3 -m moe_reduce.smallcalls --out "$OUT/small" ;;
        bench-*) python3 -m moe_reduce bench --dtypes ${1#bench-} --impls $IMPLS --sweeps tokens,hidden \
                     --out "$OUT/$1" --no-progress ;;
        contenders-*) python3 -m moe_reduce bench --dtypes ${1#contenders-} --impls $CONTENDERS --sweeps tokens \
                     --out "$OUT/$1" --no-progress ;;
        probes) mkdir -p "$OUT/probes" && OUT=$OUT/probes python3 results/nvidia-h100-2026-12-05-probes/round1.py env latency host ;;
        fused) python3 -m moe_reduce bench --op fused --sweeps tokens --no-progress --out "$OUT/fused" ;;
        model) python3 -m moe_reduce.model_bench --out "$OUT/model" --budget-s 220 ;;
        modelchecks) MLX_ENABLE_TF32=0 python3 -m moe_reduce.model_bench --out "$OUT/modelchecks" --checks-only ;;
        modeltiming) python3 -m moe_reduce.model_bench --out "$OUT/modeltiming" --no-checks --budget-s 210 ;;
        repeat) python3 -m moe_reduce bench --dtypes float32,bfloat16 --impls kernel_auto,kernel_row,triton \
                    --sweeps tokens --out "$OUT/repeat" --no-progress ;;
        placement) mkdir -p "$OUT/placement" && OUT=$OUT/placement python3 results/device-2026-12-06-placement.py ;;
        graphs) mkdir -p "$OUT/graphs" && OUT=$OUT/graphs python3 results/device-2026-12-06-graphs.py ;;
        params) mkdir -p "$OUT/params" && OUT=$OUT/params python3 results/device-2026-12-06-params.py ;;
        gap) mkdir -p "$OUT/gap" && OUT=$OUT/gap python3 results/device-2026-12-06-gap.py gap ;;
        ncu) mkdir -p "$OUT/ncu" && OUT=$OUT/ncu python3 results/nvidia-h100-2026-12-05-probes/round1.py env ncu ;;
        ncu16k) mkdir -p "$OUT/ncu16k" && OUT=$OUT/ncu16k python3 results/device-2026-12-06-gap.py ncu ;;
        width) python3 results/device-2026-12-06-width.py ;;
        rounding) mkdir -p "$OUT/rounding" && OUT=$OUT/rounding python3 results/device-2026-12-07-rounding.py \
                      && python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_rounding.py ;;
        ab) mkdir -p "$OUT/ab" && OUT=$OUT/ab python3 results/device-2026-12-07-ab.py ;;
        gputests) python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_kernels.py ;;
    esac
}
[ -f $STATE/launch_table.json ] && python3 -m moe_reduce.launch_table $STATE/launch_table.json
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv
for s in "$@"; do
    mkdir -p "$OUT/logs"
    start=$(date +%s)
    timeout "${LIMIT[$s]}" bash -c "$(declare -f run_step); STATE=$STATE OUT=$OUT \
        IMPLS=$IMPLS CONTENDERS=$CONTENDERS run_step $s" > "$OUT/logs/$s.txt" 2>&1
    echo "step $s: exit $?, $(( $(date +%s) - start )) s" | tee -a "$OUT/logs/$s.txt"
    tail -5 "$OUT/logs/$s.txt"
    (cd "$OUT" && tar czf "$s.tgz" --remove-files $(ls -d $s* logs | grep -v '\.tgz$') && mkdir -p logs)
done
