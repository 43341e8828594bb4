#!/usr/bin/env bash
# The GPU rows of the README's speed table, on Keras's torch and jax backends, in one go:
#
#     bash bench/gpu.sh OUT_DIR
#
# Random weights (--weights none) time the same as trained ones. Each step has a time limit,
# and a step that fails does not stop the others; what each prints is also in OUT_DIR.
set -u
out=${1:?usage: bash bench/gpu.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
for backend in torch jax; do
    export KERAS_BACKEND=$backend
    echo "== $backend: throughput, 64 photos, default layers, batches of 32"
    timeout 300 python3 bench/bench.py --weights none --only throughput --batch-size 32 \
        --throughput-photos 64 --repeats 1 2>&1 | grep -v "^bench:" | tee "$out/bench_$backend.md"
    echo "== $backend: Grad-CAM, its gradients on the GPU"
    timeout 60 python3 deepviz.py images/grace_hopper.jpg --weights none --cam --top 2 \
        --out "$out/cam_$backend.png" 2>&1 | tail -3
done
