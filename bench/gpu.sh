#!/usr/bin/env bash
# The GPU rows of the README's speed tables, on Keras's torch and jax backends, in one go:
#
#     bash bench/gpu.sh OUT_DIR
#
# Random weights (--weights none) time the same as trained ones. Each step has a time limit,
# and a step that fails does not stop the others; everything printed is also in OUT_DIR.
set -u
out=${1:?usage: bash bench/gpu.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
for backend in torch jax; do
    export KERAS_BACKEND=$backend
    echo "== $backend: throughput, 64 photos, default layers, batches of 32"
    timeout 200 python3 bench/bench.py --weights none --only throughput --batch-size 32 \
        --throughput-photos 64 --repeats 1 2>&1 | tee "$out/bench_$backend.md"
    echo "== $backend: Grad-CAM (gradients on the GPU)"
    timeout 90 python3 deepviz.py images/grace_hopper.jpg --weights none --cam --top 2 \
        --out "$out/cam_$backend.png" 2>&1 | tail -8
    echo "== $backend: synthesis steps"
    timeout 90 python3 bench/bench_synthesis.py --weights none --steps 8 2>&1 | tee "$out/synthesis_$backend.md"
done
for backend in torch jax; do
    echo "== $backend: tests that run the model on the GPU"
    KERAS_BACKEND=$backend timeout 100 python3 -m pytest -q -x -p no:cacheprovider tests/test_backends.py \
        tests/test_explain.py "${@:2}" 2>&1 | tail -5
done
