"""Benchmark --synthesize: seconds per optimisation step and per pattern, and a cache hit; prints a Markdown table.

    python bench/bench_synthesis.py --weights ../shared/weights/inception_v3_2015_notop.weights.h5

For each layer, --channels channels are optimised together for --steps steps (after one
untimed warm-up step); a pattern at the default 256 steps costs 256 times the time per
step, shared by the batch. Then the same patterns are asked for again: a cache hit, timed
with the weights' digest memoised (a second call in one process) and without (the first
call of a new process hashes the model's weights once).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _deepviz import models, synthesis  # noqa: E402
from _deepviz.backend import import_keras  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--layers", nargs="+", default=["mixed3", "mixed7"])
    parser.add_argument("--channels", type=int, default=4, help="channels optimised together")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per layer")
    args = parser.parse_args()
    os.environ["DEEPVIZ_CACHE"] = tempfile.mkdtemp(prefix="deepviz-bench-cache-")

    keras = import_keras()
    network = models.build_network(models.NetworkChoice("inception_v3", args.weights))
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Keras {keras.__version__} on {keras.backend.backend()}, "
          f"no GPU" if not gpu_present(keras) else "GPU present")
    channels = list(range(args.channels))
    print(f"| layer | channels together | s per step | s per pattern at {synthesis.DEFAULT_STEPS} steps | "
          "cache hit, first call (weights hashed) | cache hit, again |")
    print("|---|---|---|---|---|---|")
    for layer in args.layers:
        settings = synthesis.synthesis_settings(network, steps=args.steps)
        built = synthesis.build_synthesis_models(network, layer, settings.size)
        synthesis.optimise_patterns(network, built, channels, synthesis.Settings(steps=1))  # warm-up
        start = time.perf_counter()
        patterns = synthesis.optimise_patterns(network, built, channels, settings)
        per_step = (time.perf_counter() - start) / args.steps
        identity = synthesis.model_identity(network)
        for channel, pattern in patterns.items():
            synthesis.write_cached(synthesis.cache_path(identity, layer, channel, settings), pattern)
        synthesis._model_digests.clear()  # as in a new process
        start = time.perf_counter()
        synthesis.synthesize_patterns(network, layer, channels, settings)
        cold_hit = time.perf_counter() - start
        start = time.perf_counter()
        synthesis.synthesize_patterns(network, layer, channels, settings)
        warm_hit = time.perf_counter() - start
        per_pattern = per_step * synthesis.DEFAULT_STEPS / len(channels)
        print(f"| {layer} | {len(channels)} | {per_step:.2f} | {per_pattern:.0f} | {cold_hit:.2f} s | "
              f"{warm_hit * 1000:.1f} ms |", flush=True)
    return 0


def gpu_present(keras) -> bool:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


if __name__ == "__main__":
    raise SystemExit(main())
