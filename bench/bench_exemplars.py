"""Benchmark `deepviz --exemplars`: its stages, local against Ray on this machine, memory, a cluster projection.

    python bench/bench_exemplars.py --weights ../shared/weights/inception_v3_2015_notop.weights.h5 \\
        --photos ../shared/images --counts 100,2000

Photos are made at run time by flipping, mirroring, rotating and cropping the bundled
photos and those in --photos (longest side at most 512 pixels), in a temporary folder
deleted afterwards. The model is the real InceptionV3 (with the given weights) up to
mixed5, searching channels 12 and 97, 9 photos each.

1. stages, in this process: reading and preprocessing a photo (one core), the forward
   pass to mixed5 (batches of --batch-size), reducing a batch's maps to a tally, merging
   two tallies (what the Ray driver does per batch), and a tally's size.
2. end to end: `deepviz.py --exemplars` over each count of photos, --engine local and
   --engine ray (a local Ray started by the run), wall time and the process's peak
   resident memory (VmHWM; for Ray the driver's own, the workers are separate processes).
   Photos/s in steady state is the difference of two counts over the difference of times,
   which leaves out start-up (building the network, starting Ray).
3. a projection, on paper, for N nodes with one GPU each, from the stage figures and the
   stated GPU rate (an assumption, not a measurement: no GPU here).
Machines are shared and noisy: compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _deepviz import cli, exemplars, images, models  # noqa: E402
from bench import timed  # noqa: E402  (bench/bench.py, beside this script)

LAYER = "mixed5"
CHANNELS = "12,97"
PER_CHANNEL = 9
LONGEST_SIDE = 512
ASSUMED_GPU_RATE = 1500  # photos/s of InceptionV3 to mixed5 on one data-centre GPU: an assumption
ASSUMED_CORES_PER_NODE = 8  # CPU cores reading photos beside each GPU: an assumption

# Runs deepviz.py as __main__ and writes the process's peak resident memory (kB) to a file.
PEAK_MEMORY_SCRIPT = """
import atexit, re, runpy, sys
report, script = sys.argv[1], sys.argv[2]
def write_peak():
    status = open("/proc/self/status").read()
    open(report, "w").write(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
atexit.register(write_peak)
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def make_photos(sources: list[Path], count: int, folder: Path) -> Path:
    """`count` distinct photos: each source flipped, mirrored, rotated and cropped in turn."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(count)
    originals = []
    for source in sources:
        photo = images.load_image(source)
        photo.thumbnail((LONGEST_SIDE, LONGEST_SIDE))
        originals.append(photo)
    for i in range(count):
        photo = originals[i % len(originals)]
        if rng.random() < 0.5:
            photo = ImageOps.mirror(photo)
        if rng.random() < 0.2:
            photo = ImageOps.flip(photo)
        photo = photo.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR, expand=False)
        width, height = photo.size
        keep = rng.uniform(0.6, 1.0)
        left, top = rng.uniform(0, 1 - keep) * width, rng.uniform(0, 1 - keep) * height
        photo.crop((int(left), int(top), int(left + keep * width), int(top + keep * height))).save(
            folder / f"{i:05d}.jpg", quality=90)
    return folder


# --- 1. Stages ------------------------------------------------------------------------
def stage_figures(weights: Path, folder: Path, batch_size: int) -> dict[str, float]:
    network = models.build_network(models.NetworkChoice(weights=str(weights)))
    maps_model = exemplars.build_maps_model(network, [LAYER])
    paths = sorted(folder.iterdir())[:batch_size * 3]
    batch_size = min(batch_size, len(paths))  # a folder of fewer photos than a batch: one smaller batch
    read = timed(lambda: [images.preprocess(images.load_image(p), network) for p in paths]) / len(paths)
    batch = np.stack([images.preprocess(images.load_image(p), network) for p in paths[:batch_size]])
    maps_model.predict_on_batch(batch)  # trace once
    forward = timed(lambda: maps_model.predict_on_batch(batch)) / batch_size
    maps = np.asarray(maps_model.predict_on_batch(batch)[LAYER])  # (batch, 17, 17, 768)
    numbers = np.arange(batch_size)
    chosen = [int(c) for c in CHANNELS.split(",")]
    reduce = timed(lambda: exemplars.tally_maps(maps, numbers, chosen, PER_CHANNEL, "max"))
    reduce_all = timed(lambda: exemplars.tally_maps(maps, numbers, None, PER_CHANNEL, "max"))
    first = exemplars.tally_maps(maps, numbers, None, PER_CHANNEL, "max")
    second = exemplars.tally_maps(maps, numbers + batch_size, None, PER_CHANNEL, "max")
    merge_all = timed(lambda: exemplars.merge_tallies(first, second, PER_CHANNEL))
    first_two = exemplars.tally_maps(maps, numbers, chosen, PER_CHANNEL, "max")
    second_two = exemplars.tally_maps(maps, numbers + batch_size, chosen, PER_CHANNEL, "max")
    merge = timed(lambda: exemplars.merge_tallies(first_two, second_two, PER_CHANNEL))
    partial = exemplars.Partial({LAYER: first}, [])
    return {"read": read, "forward": forward, "reduce": reduce, "reduce_all": reduce_all, "merge": merge,
            "merge_all": merge_all, "tally_all_bytes": first.nbytes, "partial_all_bytes": len(pickle.dumps(partial)),
            "tally_bytes": exemplars.tally_maps(maps, numbers, chosen, PER_CHANNEL, "max").nbytes}


# --- 2. End to end --------------------------------------------------------------------
def run_exemplars(folder: Path, weights: Path, engine: str, batch_size: int, out: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MiB of the deepviz process) of one --exemplars run."""
    with tempfile.NamedTemporaryFile(suffix=".peak") as report:
        command = [sys.executable, "-c", PEAK_MEMORY_SCRIPT, report.name, str(ROOT / "deepviz.py"),
                   "--exemplars", str(folder), "--layers", LAYER, "--channels", CHANNELS,
                   "--per-channel", str(PER_CHANNEL), "--weights", str(weights), "--engine", engine,
                   "--batch-size", str(batch_size), "--quiet", "--out", str(out)]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"benchmark run failed ({engine}):\n{result.stderr[-2000:]}")
        searched = re.search(r"(\d+) of (\d+) photos searched", result.stdout)
        assert searched and searched.group(1) == searched.group(2), result.stdout[-500:]
        return seconds, int(Path(report.name).read_text()) / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, type=Path, help="a local InceptionV3 weights file")
    parser.add_argument("--photos", type=Path, default=ROOT / "images", help="more photos to vary")
    parser.add_argument("--counts", default="100,2000", help="photo counts, comma-separated, smallest first")
    parser.add_argument("--batch-size", type=cli.positive_int(1, 1000), default=8)
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--gpu-rate", type=float, default=ASSUMED_GPU_RATE,
                        help="assumed photos/s of one GPU for the projection")
    parser.add_argument("--cores-per-node", type=int, default=ASSUMED_CORES_PER_NODE,
                        help="assumed CPU cores reading photos on each GPU node, for the projection")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c.strip().isdigit() and int(c) > 0]
    if len(counts) != len(args.counts.split(",")) or counts != sorted(counts):
        parser.error(f"--counts {args.counts}: expected photo counts of at least 1, comma-separated, smallest first")
    sources = sorted({p for folder in (ROOT / "images", args.photos) for p in folder.iterdir()
                      if p.suffix.lower() in images.IMAGE_SUFFIXES})
    work = Path(tempfile.mkdtemp(prefix="deepviz-bench-exemplars-"))

    def progress(message):
        print(f"bench: {message}", file=sys.stderr, flush=True)

    try:
        folders = {}
        for count in counts:
            progress(f"making {count} photos")
            folders[count] = make_photos(sources, count, work / f"photos{count}")
        progress("stages")
        stages = stage_figures(args.weights, folders[counts[0]], args.batch_size)
        runs = {}
        for engine in args.engines.split(","):
            for count in counts:
                progress(f"{engine}, {count} photos")
                runs[engine, count] = run_exemplars(folders[count], args.weights, engine, args.batch_size,
                                                    work / "out")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"Machine: {os.cpu_count()} cores, no GPU; InceptionV3 to {LAYER}, channels {CHANNELS}, "
          f"{PER_CHANNEL} per channel, batches of {args.batch_size}, photos at most {LONGEST_SIDE} px.\n")
    print("| stage (this machine) | per photo | photos/s |")
    print("|---|---|---|")
    for name, key in [("read + preprocess (one core)", "read"), (f"forward pass to {LAYER}", "forward")]:
        print(f"| {name} | {stages[key] * 1000:.1f} ms | {1 / stages[key]:.1f} |")
    print(f"| reduce a batch to a tally, 2 channels | {stages['reduce'] / args.batch_size * 1000:.3f} ms | |")
    reduce_all = stages["reduce_all"] / args.batch_size * 1000
    print(f"| reduce a batch to a tally, all 768 channels | {reduce_all:.3f} ms | |")
    print(f"| merge two 2-channel tallies (driver, per batch) | {stages['merge'] * 1000:.3f} ms per batch | "
          f"{args.batch_size / stages['merge']:.0f} |")
    print(f"| merge two all-channel tallies (driver, per batch) | {stages['merge_all'] * 1000:.2f} ms per batch | "
          f"{args.batch_size / stages['merge_all']:.0f} |")
    print(f"\nTally size: {stages['tally_bytes'] / 1024:.1f} KiB for 2 channels, "
          f"{stages['tally_all_bytes'] / 2**20:.1f} MiB for all 768 (pickled partial "
          f"{stages['partial_all_bytes'] / 2**20:.1f} MiB), whatever the number of photos.\n")
    print("| engine | photos | wall | photos/s (all) | peak memory |")
    print("|---|---|---|---|---|")
    for (engine, count), (seconds, peak) in runs.items():
        print(f"| {engine} | {count} | {seconds:.1f} s | {count / seconds:.2f} | {peak:.0f} MiB |")
    for engine in args.engines.split(","):
        if len(counts) > 1:
            (t1, m1), (t2, m2) = runs[engine, counts[0]], runs[engine, counts[-1]]
            steady = (counts[-1] - counts[0]) / (t2 - t1)
            print(f"\n{engine}: steady state {steady:.2f} photos/s (start-up {t1 - counts[0] / steady:.1f} s); "
                  f"peak memory {counts[-1]} photos / {counts[0]} photos = {m2 / m1:.3f}")

    read_rate, merge_rate = 1 / stages["read"], args.batch_size / stages["merge"]
    node_rate = min(args.gpu_rate, read_rate * args.cores_per_node)
    print(f"\nProjection, on paper (not measured): each node reads at {read_rate:.0f} photos/s per core x "
          f"{args.cores_per_node} cores and runs an assumed {args.gpu_rate:.0f} photos/s on its GPU, so "
          f"{node_rate:.0f} photos/s per node; the driver merges these 2-channel tallies at {merge_rate:.0f} "
          f"photos/s (all-channel tallies: {args.batch_size / stages['merge_all']:.0f}).")
    print("| nodes | photos/s | 100,000 photos |")
    print("|---|---|---|")
    for nodes in (1, 4, 16, 64):
        rate = min(nodes * node_rate, merge_rate)
        print(f"| {nodes} | {rate:.0f} | {100_000 / rate:.0f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
