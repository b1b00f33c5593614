#!/usr/bin/env bash
# Second H100 call of 2026-12-05 (after run.sh; the H200 did not start): the row variant's correctness tests on
# the cuda backend, smallcalls again (with the shipped H100 table and the thinner fast path), then up to two
# more tokens-sweep benches of kernel_auto, kernel_row and Triton, both dtypes in one process each, so that
# bench rows have repeats. Everything is packed into $OUT/repeat.tgz as it goes.
set -u
export PYTHONPATH=lib PYTHONUNBUFFERED=1
R=/tmp/repeat
mkdir -p "$R"
pack() { tar czf "$OUT/repeat.tmp" -C /tmp repeat && mv "$OUT/repeat.tmp" "$OUT/repeat.tgz"; }
start=$(date +%s)
timeout 60 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_kernels.py \
    -k "row and (awkward or half or falls)" > "$R/gpu_tests.txt" 2>&1
tail -2 "$R/gpu_tests.txt"; pack
timeout 90 python3 -m moe_reduce.smallcalls --out "$R/small" > "$R/small.txt" 2>&1
tail -8 "$R/small.txt"; pack
for rep in 2 3; do
    [ $(( $(date +%s) - start )) -gt 300 ] && { echo "repeat $rep skipped: $(( $(date +%s) - start )) s gone"; break; }
    timeout 200 python3 -m moe_reduce bench --dtypes float32,bfloat16 --impls kernel_auto,kernel_row,triton \
        --sweeps tokens --out "$R/bench-rep$rep" --no-progress > "$R/bench-rep$rep.txt" 2>&1
    tail -4 "$R/bench-rep$rep.txt"; pack
done
echo "repeat.sh: $(( $(date +%s) - start )) s"
