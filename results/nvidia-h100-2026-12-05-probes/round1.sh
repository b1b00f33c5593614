#!/usr/bin/env bash
# Round 1 on the GPU host (round1.py says what each step measures). Run from the repository root after
# `bash .device/setup.sh`; writes $OUT/r1.tgz (every step's files and the log) after each step.
set -u
export PYTHONPATH=lib PYTHONUNBUFFERED=1
R=/tmp/r1
mkdir -p "$R"
py="python3 results/nvidia-2026-12-05-probes/round1.py"
step() {
    local limit=$1
    shift
    OUT=$R timeout "$limit" $py "$@" 2>&1 | tee -a "$R/log.txt"
    tar czf "$OUT/r1.tmp" -C /tmp r1 && mv "$OUT/r1.tmp" "$OUT/r1.tgz"
}
declare -A LIMIT=([env]=60 [empty]=90 [nographs]=60 [candidates]=240 [latency]=60 [host]=60 [timeline]=90 [ncu]=240)
# steps to run: the arguments, or all of them in this order
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(env empty nographs candidates latency host timeline ncu)
for s in "${steps[@]}"; do
    step "${LIMIT[$s]}" $s
done
