#!/usr/bin/env bash
# The small-call runs of one GPU (issue 18), from the repository root after `bash .device/setup.sh`.
#   tune:  python -m moe_reduce tune (the launch table of this card, with the row variant), installed here
#   small: python -m moe_reduce.smallcalls (empty kernels, one-token GPU time with the logit as a view and as its
#          own array, host cost per call)
#   bench: python -m moe_reduce bench of our kernels and Triton, float32 and bfloat16, tokens and hidden sweeps
# Each step's files and the log are packed into $OUT/<step>.tgz as soon as the step ends (the device returns
# a limited count of files). DTYPES (default "float32 bfloat16") and SWEEPS (default tokens,hidden) pick the
# bench's dtypes and sweeps.
set -u
export PYTHONPATH=lib PYTHONUNBUFFERED=1
declare -A LIMIT=([tune]=300 [small]=100 [bench]=400)
IMPLS=kernel_auto,kernel_row,kernel_scalar_k,kernel_vec_k,triton
run_step() {
    case $1 in
        tune) python3 -m moe_reduce tune --out "$OUT/tune" && python3 -c "
import json, sys
ship, new = 'lib/moe_reduce/launch_table.json', json.load(open(sys.argv[1]))
table = json.load(open(ship))
for key in ('cards', 'source', 'backend'):
    table[key].update(new[key])
open(ship, 'w').write(json.dumps(table, indent=1) + '\\n')
print('installed this card\\'s table in', ship, 'for the bench step')" "$OUT/tune/launch_table.json" ;;
        small) python3 -m moe_reduce.smallcalls --out "$OUT/small" ;;
        bench) for d in ${DTYPES:-float32 bfloat16}; do
                   python3 -m moe_reduce bench --dtypes $d --impls $IMPLS --sweeps ${SWEEPS:-tokens,hidden} --out "$OUT/bench-$d" \
                       --no-progress
               done ;;
    esac
}
for s in "$@"; do
    mkdir -p "$OUT/logs"
    start=$(date +%s)
    timeout "${LIMIT[$s]}" bash -c "$(declare -f run_step); OUT=$OUT IMPLS=$IMPLS run_step $s" 2>&1 | tee "$OUT/logs/$s.txt"
    echo "step $s: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/logs/$s.txt"
    (cd "$OUT" && tar czf "$s.tgz" --remove-files $(ls -d $s* logs | grep -v '\.tgz$') && mkdir -p logs)
done
