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

from _deepviz import cli, models, synthesis  # noqa: E402
from _deepviz.backend import import_keras  # noqa: E402
from _deepviz.errors import DeepvizError  # noqa: E402
from _deepviz.layers import check_layer_names  # noqa: E402

BACKEND_NAMES = {"tensorflow": "TensorFlow", "torch": "PyTorch", "jax": "JAX"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--layers", nargs="+", default=["mixed3", "mixed7"])
    parser.add_argument("--channels", type=cli.positive_int(1, 64), default=4, help="channels optimised together")
    parser.add_argument("--steps", type=cli.positive_int(1, 10000), default=8, help="timed steps per layer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepviz-bench-cache-") as cache:
        os.environ["DEEPVIZ_CACHE"] = cache  # the patterns made here, not the user's cache
        try:
            network = models.build_network(models.NetworkChoice("inception_v3", args.weights))
            check_layer_names(network, args.layers)
        except DeepvizError as error:
            parser.error(str(error))
        print_table(network, args.layers, list(range(args.channels)), args.steps)
    return 0


def print_table(network, layers, channels, steps: int) -> None:
    keras = import_keras()
    backend = BACKEND_NAMES.get(keras.backend.backend(), keras.backend.backend())
    device = "GPU present" if gpu_present(keras) else "no GPU"
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Keras {keras.__version__} on {backend}, {device}")
    print(f"| backend | layer | channels together | s per step | s per pattern at {synthesis.DEFAULT_STEPS} steps | "
          "cache hit, first call (weights hashed) | cache hit, again |")
    print("|---|---|---|---|---|---|---|")
    for layer in layers:
        settings = synthesis.synthesis_settings(network, steps=steps)
        built = synthesis.build_synthesis_models(network, layer, settings.size)
        synthesis.optimise_patterns(network, built, channels, synthesis.Settings(steps=1))  # warm-up
        start = time.perf_counter()
        patterns = synthesis.optimise_patterns(network, built, channels, settings)
        per_step = (time.perf_counter() - start) / steps
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
        print(f"| {backend} | {layer} | {len(channels)} | {per_step:.2f} | {per_pattern:.0f} | {cold_hit:.2f} s | "
              f"{warm_hit * 1000:.1f} ms |", flush=True)


def gpu_present(keras) -> bool:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


if __name__ == "__main__":
    raise SystemExit(main())
