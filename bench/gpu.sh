#!/usr/bin/env bash
# The GPU rows of the README's speed table, on Keras's jax and torch backends, in one go:
#
#     bash bench/gpu.sh OUT_DIR
#
# python3 must have Keras 3 and the backends. Random weights (--weights none) take as long as
# trained ones. Each step has a time limit (together 9.7 minutes at most), and a step that
# fails or runs out of time says so and does not stop the others; the benchmark prints each
# row as it is measured, so a step cut short keeps the rows it measured. All it prints is in
# OUT_DIR/gpu.txt, and each step's whole output in its own log there.
#
# deepviz's cache ($DEEPVIZ_CACHE) is a new folder in OUT_DIR. On jax, a first run pays for
# XLA compiling the network and its initialisation for the GPU, and keeps what it compiled
# there; the same run again reads it back. The benchmark's runs then start as a user's later
# runs do.
set -u
out=$(realpath -m "${1:?usage: bash bench/gpu.sh OUT_DIR}")
cd "$(dirname "$0")/.."
rm -rf "$out/cache"  # the first jax run below compiles everything
mkdir -p "$out/photos32"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg DEEPVIZ_CACHE="$out/cache"
step() {  # step SECONDS LOG COMMAND...; with SHOW_LAST=N, only the log's last N lines are shown
    local seconds=$1 log=$2 start=$(date +%s%N)
    shift 2
    timeout "$seconds" "$@" >"$log" 2>&1
    local status=$?
    grep -v "^bench:" "$log" | tail -n "${SHOW_LAST:-+1}"  # the tables, without the progress between their rows
    local tenths=$(( ($(date +%s%N) - start) / 100000000 ))
    echo "(took $((tenths / 10)).$((tenths % 10)) s)" | tee -a "$log"
    if [ "$status" -ne 0 ]; then
        echo "(stopped: exit status $status$([ "$status" -eq 124 ] && echo ", over ${seconds} s"), after:" | tee -a "$log"
        grep "^bench:" "$log" | tail -n 3  # where it was
    fi
}
run_all() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    local photos=(images/*.jpg images/*.png)
    for i in $(seq 0 31); do
        cp "${photos[i % ${#photos[@]}]}" "$out/photos32/$(printf %02d "$i")_$(basename "${photos[i % ${#photos[@]}]}")"
    done
    for backend in jax torch; do
        export KERAS_BACKEND=$backend
        if [ "$backend" = jax ]; then
            echo "== jax: a first run, 32 photos in a batch of 32, nothing compiled yet"
            SHOW_LAST=2 step 60 "$out/first_jax.log" python3 deepviz.py "$out/photos32" --weights none --batch-size 32 \
                --out "$out/first_jax" --quiet
            echo "== jax: the same run again, what XLA compiled read back from deepviz's cache"
            SHOW_LAST=2 step 30 "$out/again_jax.log" python3 deepviz.py "$out/photos32" --weights none --batch-size 32 \
                --out "$out/first_jax" --quiet
        fi
        # start-up first, in a process of its own: the throughput section keeps a network on the GPU
        echo "== $backend: where a run's start-up goes, batch of 32"
        step "$([ "$backend" = jax ] && echo 30 || echo 45)" "$out/startup_$backend.md" \
            python3 bench/bench.py --weights none --only startup --batch-size 32
        echo "== $backend: throughput, 64 photos, default layers, batches of 32"
        step "$([ "$backend" = jax ] && echo 205 || echo 150)" "$out/bench_$backend.md" \
            python3 bench/bench.py --weights none --only throughput --batch-size 32 --throughput-photos 64 --repeats 1
        echo "== $backend: Grad-CAM, its gradients on the GPU"
        step 30 "$out/cam_$backend.log" python3 deepviz.py images/grace_hopper.jpg --weights none --cam --top 2 \
            --out "$out/cam_$backend.png"
    done
}
run_all 2>&1 | tee "$out/gpu.txt"  # all it prints, section headings too
