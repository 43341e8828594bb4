#!/usr/bin/env bash
# The GPU rows of the README's speed table, on Keras's torch and jax backends, in one go:
#
#     bash bench/gpu.sh OUT_DIR
#
# python3 must have Keras 3 and the backends. Random weights (--weights none) take as long as
# trained ones. Each step has a time limit (the whole stays under 10 minutes), and a step that
# fails or runs out of time says so and does not stop the others; all it prints is in OUT_DIR.
set -u
out=$(realpath -m "${1:?usage: bash bench/gpu.sh OUT_DIR}")
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
step() {  # step SECONDS LOG COMMAND...
    local seconds=$1 log=$2
    shift 2
    timeout "$seconds" "$@" >"$log" 2>&1
    local status=$?
    grep -v "^bench:" "$log"
    [ "$status" -eq 0 ] || echo "(stopped: exit status $status$([ "$status" -eq 124 ] && echo ", over ${seconds} s"))" | tee -a "$log"
}
for backend in torch jax; do
    export KERAS_BACKEND=$backend
    echo "== $backend: throughput, 64 photos, default layers, batches of 32"
    step 240 "$out/bench_$backend.md" python3 bench/bench.py --weights none --only throughput --batch-size 32 \
        --throughput-photos 64 --repeats 1
    echo "== $backend: Grad-CAM, its gradients on the GPU"
    step 45 "$out/cam_$backend.log" python3 deepviz.py images/grace_hopper.jpg --weights none --cam --top 2 \
        --out "$out/cam_$backend.png"
done
