"""Do synthesised patterns really excite their channels? Prints a Markdown table and a summary.

    python bench/synthesis_eval.py --weights ../shared/weights/inception_v3_2015_notop.weights.h5 \
        --photos ../shared/images

For each layer, --per-layer channel indices that fire (positive mean) on at least one photo
in every layer (so one --channels list draws them all), spread evenly over the index range.
Each pattern is made with the default settings (so it lands in the cache the command line
reads), then fed as it is, without the random transforms. Reported per channel: the target
channel's rank by mean activation among all channels of its layer (1 is best), and its mean
activation against its highest mean over the photos; then the same with the pattern fed as a
photo is (resized to the network's input size, 299 for InceptionV3, where the pattern was made
at --size, 224 by default), so that pattern and photos are measured alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import deepviz  # noqa: E402
from _deepviz import cli, synthesis  # noqa: E402
from _deepviz.images import expand_inputs  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--photos", required=True)
    parser.add_argument("--layers", nargs="+", default=["mixed3", "mixed5", "mixed7"])
    parser.add_argument("--per-layer", type=cli.positive_int(1, 768), default=6)
    parser.add_argument("--steps", type=cli.positive_int(1, 10000), default=synthesis.DEFAULT_STEPS)
    args = parser.parse_args()

    viz = deepviz.Visualizer("inception_v3", weights=args.weights)
    photos = [str(p) for p in expand_inputs([args.photos], False)]
    photo_maps = viz.maps(photos, args.layers)  # [{layer: (h, w, 768)}] per photo
    photo_best = {layer: np.max([maps[layer].mean(axis=(0, 1)) for maps in photo_maps], axis=0)
                  for layer in args.layers}  # (channels,): each channel's highest mean over the photos
    firing = np.flatnonzero(np.all([photo_best[layer] > 0 for layer in args.layers], axis=0))
    channels = [int(firing[i]) for i in np.linspace(0, len(firing) - 1, args.per_layer).round().astype(int)]
    print(f"{len(photos)} photos; channels firing on some photo in every layer: {len(firing)}; "
          f"chosen: {','.join(map(str, channels))}", flush=True)

    settings = synthesis.synthesis_settings(viz.network, steps=args.steps)
    print("| layer | channel | rank on its pattern | pattern mean | best photo mean | ratio "
          "| as a photo: rank | mean | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for layer in args.layers:
        start = time.perf_counter()
        patterns = synthesis.synthesize_patterns(viz.network, layer, channels, settings)
        seconds = time.perf_counter() - start
        models = synthesis.build_synthesis_models(viz.network, layer, settings.size)
        means = synthesis.channel_means(viz.network, models, np.stack([patterns[c].image for c in channels]))
        as_photos = [maps[layer].mean(axis=(0, 1)) for maps in viz.maps([patterns[c].image for c in channels],
                                                                         [layer])]
        for channel, row, photo_row in zip(channels, means, as_photos):
            best = photo_best[layer][channel]
            (rank, ratio), (photo_rank, photo_ratio) = [(int((values > values[channel]).sum()) + 1,
                                                         values[channel] / best) for values in (row, photo_row)]
            rows.append((rank, ratio, photo_rank, photo_ratio))
            print(f"| {layer} | {channel} | {rank} | {row[channel]:.3f} | {best:.3f} | {ratio:.1f}x "
                  f"| {photo_rank} | {photo_row[channel]:.3f} | {photo_ratio:.1f}x |", flush=True)
        print(f"<!-- {layer}: {seconds:.0f} s for {len(channels)} patterns, {seconds / len(channels):.1f} s each "
              f"({settings.steps} steps, {settings.size}px, cache: {synthesis.cache_directory()}) -->", flush=True)
    print()
    for how, (ranks, ratios) in (("as made", np.array(rows)[:, :2].T), ("as a photo", np.array(rows)[:, 2:].T)):
        print(f"{len(rows)} channels, pattern fed {how}: ranked first on their own pattern "
              f"{np.mean(ranks == 1) * 100:.0f}%; mean >= 3x the best photo {np.mean(ratios >= 3) * 100:.0f}%; "
              f"ratio median {np.median(ratios):.1f}x, min {ratios.min():.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
