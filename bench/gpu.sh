#!/usr/bin/env bash
# The GPU rows of the README's speed table, on Keras's jax and torch backends, in one go:
#
#     bash bench/gpu.sh OUT_DIR
#
# python3 must have Keras 3 and the backends. Random weights (--weights none) take as long as
# trained ones. Each step has a time limit (together 9.5 minutes at most), and a step that
# fails or runs out of time says so and does not stop the others; all it prints is in
# OUT_DIR/gpu.txt, and each step's whole output in its own log there.
#
# jax runs first: its rows are the ones the README still lacks. XLA compiles the network for
# the GPU on a process's first batch; a first run, timed on its own, pays that and fills a
# compilation cache in OUT_DIR, so that the benchmark's six processes time deepviz, not six
# compilations of the same graph.
set -u
out=$(realpath -m "${1:?usage: bash bench/gpu.sh OUT_DIR}")
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
step() {  # step SECONDS LOG COMMAND...
    local seconds=$1 log=$2 start=$(date +%s%N)
    shift 2
    timeout "$seconds" "$@" >"$log" 2>&1
    local status=$?
    grep -v "^bench:" "$log"
    local tenths=$(( ($(date +%s%N) - start) / 100000000 ))
    echo "(took $((tenths / 10)).$((tenths % 10)) s)" | tee -a "$log"
    [ "$status" -eq 0 ] || echo "(stopped: exit status $status$([ "$status" -eq 124 ] && echo ", over ${seconds} s"))" | tee -a "$log"
}
run_all() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    for backend in jax torch; do
        export KERAS_BACKEND=$backend
        bench_seconds=200
        if [ "$backend" = jax ]; then
            export JAX_COMPILATION_CACHE_DIR="$out/jax_cache"
            echo "== jax: a first run, 3 photos in a batch of 32: start-up, compilation for the GPU included"
            step 60 "$out/first_jax.log" python3 deepviz.py images --weights none --batch-size 32 --out "$out/first_jax"
            bench_seconds=230
        fi
        echo "== $backend: throughput, 64 photos, default layers, batches of 32"
        step "$bench_seconds" "$out/bench_$backend.md" python3 bench/bench.py --weights none --only throughput --batch-size 32 \
            --throughput-photos 64 --repeats 1
        echo "== $backend: Grad-CAM, its gradients on the GPU"
        step 40 "$out/cam_$backend.log" python3 deepviz.py images/grace_hopper.jpg --weights none --cam --top 2 \
            --out "$out/cam_$backend.png"
        unset JAX_COMPILATION_CACHE_DIR
    done
}
run_all 2>&1 | tee "$out/gpu.txt"  # all it prints, section headings too
