"""Benchmark deepviz against the naive ways, in one run on this machine; prints a Markdown table.

    python bench/bench.py --weights ../shared/weights/inception_v3_2015_notop.weights.h5 --photos ../shared/images

Every time is the median of --repeats runs (32 separate runs are timed once, as a sum).
Machines are shared and noisy: read the ratios, which compare runs made minutes apart.

1. floor vs tool: a bare script that imports Keras, builds InceptionV3, loads the weights
   and runs one forward pass, against `deepviz.py IMAGE --layers conv2d_1 mixed3`.
2. drawing: all 2,816 channels of mixed3 and mixed10, deepviz's figure against one
   Matplotlib subplot per channel (what keract and most tutorials do), same arrays,
   same figure size and dpi, both saved as PNG.
3. batch: 32 photos in one run against 32 separate runs; the model's own forward-pass
   throughput at the same batch size for scale.
4. memory: peak resident memory (VmHWM) of a run over all eleven mixed layers with
   --max-maps all, and of runs over 8 and 64 photos (the main process, and the
   largest drawing worker).
5. throughput: 32 photos (--throughput-photos), default layers, in one run with
   --workers 1 and with the default workers, against the bare network at the same
   batch size; the same with half the photos, whose difference leaves each run's
   start-up out; one default figure drawn and saved on one core; and where each photo's
   time goes in the main process (read, forward, reduce) and in a worker (draw,
   encode, write); the bytes the forward pass copies to the host per photo, each
   layer reduced on the model's device, against its full maps.
6. startup: where a run's start-up goes, in a fresh process that does what the command
   line does before its first figure: import Keras and its backend, build the network,
   build the feature model, the first batch (which traces or compiles the network; on jax
   XLA's compilation comes from deepviz's cache when a run filled it) and a second batch.

`--only` runs some of these. Each row is printed as soon as it is measured. On a GPU
machine, `bash bench/gpu.sh OUT_DIR` runs the start-up and throughput sections on Keras's
jax and torch backends, 64 photos in batches of 32.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

from _deepviz import backend, cli, figure, images, mosaic, output, png, stats, synthesis, workers

FLOOR_SCRIPT = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np
from PIL import Image
weights, image = None if sys.argv[1] == "none" else sys.argv[1], sys.argv[2]
model = keras.applications.InceptionV3(include_top=False, weights=weights, input_shape=(299, 299, 3))
pixels = np.asarray(Image.open(image).convert("RGB").resize((299, 299)), dtype="float32")
model(keras.applications.inception_v3.preprocess_input(pixels[None]), training=False)
"""

THROUGHPUT_SCRIPT = """
import os, sys, time, statistics
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np
batch_size, weights = int(sys.argv[1]), None if sys.argv[2] == "none" else sys.argv[2]
model = keras.applications.InceptionV3(include_top=False, weights=weights, input_shape=(299, 299, 3))
batch = np.random.default_rng(0).uniform(-1, 1, (batch_size, 299, 299, 3)).astype("float32")
model.predict_on_batch(batch)  # trace once
times = []
for _ in range(5):
    start = time.perf_counter()
    model.predict_on_batch(batch)
    times.append(time.perf_counter() - start)
print(batch_size / statistics.median(times))
"""

# What a run does before its first figure, phase by phase: {phase: seconds since the one before}, as JSON.
STARTUP_SCRIPT = """
import json, sys, time
marks = [("start", time.perf_counter())]
def mark(phase):
    marks.append((phase, time.perf_counter()))
    print(f"bench:   {phase}: {marks[-1][1] - marks[-2][1]:.1f} s", file=sys.stderr, flush=True)
from _deepviz import backend, images
import deepviz
backend.import_keras()
mark("import")
weights, photo, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
visualizer = deepviz.Visualizer(weights=weights)
mark("network")
analysis = deepviz.Analysis(layers=tuple(visualizer.default_layers))
visualizer.prepare(analysis)
mark("feature model")
photos = [images.load_image(photo)] * batch_size
for batch in ("first batch", "second batch"):
    visualizer.analyse(photos, analysis, batch_size)
    mark(batch)
print(json.dumps({name: end - marks[i][1] for i, (name, end) in enumerate(marks[1:])}))
"""

# One figure drawn and written as a drawing worker does it, in a fresh process without Keras
# (whose heap the garbage collector would walk): the median CPU seconds of 5.
FIGURE_SCRIPT = """
import pickle, statistics, sys, time
from _deepviz import workers
job = pickle.load(open(sys.argv[1], "rb"))
workers.draw_and_write(job)  # warm up
times = []
for _ in range(5):
    start = time.process_time()
    workers.draw_and_write(job)
    times.append(time.process_time() - start)
print(statistics.median(times))
"""

# Runs deepviz.py as __main__ and writes the peak resident memory (kB) of the process and of
# its largest child (a drawing worker) to a file. A child's VmHWM is read while it runs:
# its rusage would count the pages it shared with this process between fork and exec.
# (Drawing workers only: their command line names multiprocessing's spawn_main.)
PEAK_MEMORY_SCRIPT = """
import atexit, glob, re, runpy, sys, threading, time
report, script = sys.argv[1], sys.argv[2]
def peak_kib(status_path):
    try:
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", open(status_path).read()).group(1))
    except (OSError, AttributeError):
        return 0
worker_peak = [0]
def watch_children():
    while True:
        for children in glob.glob("/proc/self/task/*/children"):
            for pid in open(children).read().split():
                try:  # only once it runs a worker: before exec it still holds this process's pages
                    started = b"spawn_main" in open(f"/proc/{pid}/cmdline", "rb").read()
                except OSError:
                    started = False
                if started:
                    worker_peak[0] = max(worker_peak[0], peak_kib(f"/proc/{pid}/status"))
        time.sleep(0.1)
threading.Thread(target=watch_children, daemon=True).start()
def write_peak():
    open(report, "w").write(f"{peak_kib('/proc/self/status')} {worker_peak[0]}")
atexit.register(write_peak)
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def run_python(*args: str, stderr_shown: bool = False) -> subprocess.CompletedProcess:
    """Run python ARGS; with `stderr_shown`, what it prints on stderr goes on to this process's stderr as it comes."""
    result = subprocess.run([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=None if stderr_shown else subprocess.PIPE, text=True, cwd=ROOT)
    if result.returncode != 0:
        shown = " ".join("SCRIPT" if "\n" in arg else arg for arg in args)  # an inline script by name only
        raise SystemExit(f"benchmark step failed: python {shown}\n{(result.stderr or '')[-2000:]}")
    return result


def timed(function, repeats: int = 3) -> float:
    """Median wall-clock seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tool(*args) -> subprocess.CompletedProcess:
    return run_python(str(ROOT / "deepviz.py"), *map(str, args), "--quiet")


def peak_memory_mib(*args) -> tuple[float, float]:
    """(main process, largest worker) peak resident memory of a run, in MiB."""
    with tempfile.NamedTemporaryFile(suffix=".peak") as report:
        run_python("-c", PEAK_MEMORY_SCRIPT, report.name, str(ROOT / "deepviz.py"), *map(str, args), "--quiet")
        main_kib, worker_kib = map(int, Path(report.name).read_text().split())
        return main_kib / 1024, worker_kib / 1024


# --- 2. Drawing ---------------------------------------------------------------------
def drawing_layers():
    rng = np.random.default_rng(0)
    return [
        stats.summarize_layer("mixed3", rng.gamma(1.0, 1.0, (17, 17, 768)).astype(np.float32), None, "mean"),
        stats.summarize_layer("mixed10", rng.gamma(1.0, 1.0, (8, 8, 2048)).astype(np.float32), None, "mean"),
    ]


def draw_with_deepviz(photo, layers, dpi: int) -> tuple[float, float]:
    style = figure.FigureStyle("photo", "channel", "viridis", dpi)
    drawn = figure.draw_figure(photo, layers, style)
    output.write_png(drawn, io.BytesIO(), dpi)
    return drawn.get_figwidth(), drawn.get_figheight()


def draw_naively(photo, layers, size: tuple[float, float], dpi: int) -> None:
    """One subplot per channel, titled with its index, as keract and most tutorials do."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    subfigures = figure.subfigures(len(layers) + 1, 1)
    subfigures[0].add_subplot().imshow(np.asarray(photo))
    for subfigure, layer in zip(subfigures[1:], layers):
        count = layer.maps.shape[-1]
        columns = mosaic.mosaic_columns(count, *layer.maps.shape[:2])
        rows = -(-count // columns)
        axes = subfigure.subplots(rows, columns).ravel()
        for slot, ax in enumerate(axes):
            ax.set_axis_off()
            if slot < count:
                ax.imshow(layer.maps[:, :, slot], cmap="viridis")
                ax.set_title(str(layer.channels[slot]), fontsize=3)
    figure.savefig(io.BytesIO(), format="png", dpi=dpi)


# --- 5. Throughput --------------------------------------------------------------------
STAGES = ("read", "forward", "reduce", "draw", "encode", "write")
DRAWING_STAGES = ("draw", "encode", "write")  # a worker's, timed over the first FIGURES_TIMED photos of the batch
FIGURES_TIMED = 8


def bare_network_throughput(batch_size: int, weights: Path) -> float:
    return float(run_python("-c", THROUGHPUT_SCRIPT, str(batch_size), str(weights)).stdout)


def outputs_bytes(outputs: dict) -> int:
    """Bytes of a forward pass's outputs (NumPy arrays, nested as the feature model's)."""
    from _deepviz.backend import import_keras

    return sum(values.nbytes for values in import_keras().tree.flatten(outputs))


def full_maps_bytes(visualizer, analysis) -> int:
    """Bytes per photo the same forward pass would copy with every layer's full maps: from its output shapes."""
    import dataclasses

    full = visualizer.prepare(dataclasses.replace(analysis, keep_arrays=True))  # built, never run
    return sum(int(np.prod(spec.shape[1:])) * np.dtype(spec.dtype).itemsize
               for spec in full.feature_model.outputs)


def stage_seconds(weights: Path, paths, batch_size: int, out: Path) -> tuple[dict, float, tuple[float, int]]:
    """({stage: seconds per photo}, CPU seconds of one figure drawn and saved, (bytes to the host per photo,
    those of full maps)), over one batch, after a warm-up.

    read, forward and reduce run in the main process, timed over the batch; draw (build the
    figure and render it), encode (PNG) and write in a worker, or the main process with
    --workers 1, timed over the batch's first FIGURES_TIMED photos. The
    figure's CPU time is measured in a fresh process, as a worker draws it. The host
    bytes are those of the forward pass's outputs, reduced on the model's device, as measured,
    and what the unreduced feature model's outputs hold.
    """
    import deepviz
    from _deepviz.analysis import Analysis, forward_batch, reduce_batch

    visualizer = deepviz.Visualizer(weights=str(weights))
    analysis = Analysis(layers=tuple(visualizer.default_layers))
    pipeline = visualizer.prepare(analysis)
    seconds = dict.fromkeys(STAGES, 0.0)

    def timed_stage(stage, function, *function_args):
        start = time.perf_counter()
        result = function(*function_args)
        seconds[stage] += time.perf_counter() - start
        return result

    for _ in range(2):  # a warm-up batch, then the one measured
        seconds = dict.fromkeys(STAGES, 0.0)  # the warm-up's are dropped
        photos = [timed_stage("read", images.load_image, path) for path in paths[:batch_size]]
        outputs = timed_stage("forward", forward_batch, visualizer.network, pipeline.feature_model, photos, batch_size)
        host_bytes = outputs_bytes(outputs) / batch_size  # the batch is padded to batch_size
        results = timed_stage("reduce", reduce_batch, visualizer.network, pipeline, outputs, len(photos), analysis)
        for i, (photo, result) in enumerate(zip(photos[:FIGURES_TIMED], results)):
            style = figure.FigureStyle(figure.photo_title("photo", photo, visualizer.network, result.predictions),
                                       "channel", figure.DEFAULT_CMAP, figure.DEFAULT_DPI)
            with workers.collected_once():  # as draw_and_write
                drawn = timed_stage("draw", figure.draw_figure, figure.display_photo(photo), result.layers, style)
                pixels = timed_stage("draw", output.render_figure, drawn, figure.DEFAULT_DPI)
                stream = io.BytesIO()
                timed_stage("encode", lambda: stream.write(png.encode_png(pixels, figure.DEFAULT_DPI)))
                timed_stage("write", output.write_atomically, out / f"{i}.png", lambda s: s.write(stream.getvalue()))
                drawn = pixels = None
            if i == 0:
                job = workers.DrawJob(figure.display_photo(photo), result.layers, None, style, out / "job.png")
    (out / "job.pickle").write_bytes(pickle.dumps(job))
    figure_cpu = float(run_python("-c", FIGURE_SCRIPT, str(out / "job.pickle")).stdout)
    photos_through = {stage: min(FIGURES_TIMED, len(photos)) if stage in DRAWING_STAGES else len(photos)
                      for stage in STAGES}
    seconds = {stage: total / photos_through[stage] for stage, total in seconds.items()}
    return seconds, figure_cpu, (host_bytes, full_maps_bytes(visualizer, analysis))


def throughput_rows(args, work: Path, sources, progress):
    """The throughput section's rows, each yielded once measured."""
    count = args.throughput_photos
    folder = work / f"throughput{count}"
    folder.mkdir()
    copies = []
    for i in range(count):
        copies.append(folder / f"{i:03d}_{sources[i % len(sources)].name}")
        shutil.copy(sources[i % len(sources)], copies[-1])
    half = count // 2
    half_folder = work / f"throughput{half}"
    half_folder.mkdir()
    for copy in copies[:half]:
        shutil.copy(copy, half_folder / copy.name)
    progress(f"throughput: the network alone, batches of {args.batch_size}")
    network = bare_network_throughput(args.batch_size, args.weights)
    yield (f"network alone, batches of {args.batch_size}", "", f"{network:.1f} images/s", "for scale")
    progress(f"throughput: {count} and {half} photos, default layers, --workers 1 and the default")
    common = ["--weights", args.weights, "--batch-size", args.batch_size]
    one = timed(lambda: tool(folder, *common, "--workers", 1, "--out", work / "one_worker"), args.repeats)
    yield (f"{count} photos, default layers, one run, --workers 1", f"{one:.1f} s", f"{count / one:.2f} images/s", "")
    default = timed(lambda: tool(folder, *common, "--out", work / "default_workers"), args.repeats)
    yield (f"{count} photos, default layers, one run, default --workers ({workers.default_workers(count)})",
           f"{default:.1f} s",
           f"{count / default:.2f} images/s; {one / default:.2f}x --workers 1; "
           f"{count / default / network:.2f}x the network",
           f"≥ 1.6x: {verdict(one / default >= 1.6)}; ≥ 3 images/s: {verdict(count / default >= 3)}; "
           f"≥ 0.2x the network: {verdict(count / default / network >= 0.2)}")
    one_half = timed(lambda: tool(half_folder, *common, "--workers", 1, "--out", work / "one_worker"), args.repeats)
    default_half = timed(lambda: tool(half_folder, *common, "--out", work / "default_workers"), args.repeats)
    # The photos beyond the first `half`: a run's start-up (imports, the network built, its first pass) cancels out
    one_beyond, default_beyond = (count - half) / (one - one_half), (count - half) / (default - default_half)
    yield (f"the photos beyond the first {half} ({count} photos' run less {half} photos'): --workers 1; default",
           f"{one - one_half:.1f} s; {default - default_half:.1f} s",
           f"{one_beyond:.2f}; {default_beyond:.2f} images/s; {default_beyond / one_beyond:.2f}x", "start-up left out")
    progress("throughput: where each photo's time goes")
    (work / "stages").mkdir()
    seconds, figure_cpu, (host_bytes, full_bytes) = stage_seconds(args.weights, copies, args.batch_size,
                                                                   work / "stages")
    breakdown = ", ".join(f"{stage} {seconds[stage] * 1000:.0f}" for stage in STAGES)
    yield ("per photo, ms: " + breakdown, f"{sum(seconds.values()) * 1000:.0f} ms", "", "")
    yield ("per photo, copied to the host by the forward pass: layers reduced on the device; their full maps",
           f"{host_bytes / 1e6:.2f} MB; {full_bytes / 1e6:.2f} MB", f"{host_bytes / full_bytes:.2f}x the full maps", "")
    yield ("one default figure (5 layers x 64 tiles) drawn, encoded and written as a worker does, CPU time of one core",
           f"{figure_cpu:.2f} s", "", f"≤ 0.4 s: {verdict(figure_cpu <= 0.4)}")


# --- 6. Start-up ----------------------------------------------------------------------
def startup_row(weights: Path, photo: Path, batch_size: int, progress) -> tuple:
    """The start-up section's row: each phase of STARTUP_SCRIPT, shown on stderr as it ends, then together."""
    progress("where a run's start-up goes; each phase as it ends:")
    phases = json.loads(run_python("-c", STARTUP_SCRIPT, str(weights), str(photo), str(batch_size),
                                   stderr_shown=True).stdout)
    before_first = sum(seconds for phase, seconds in phases.items() if phase != "second batch")
    return (f"start-up of a run, s: import Keras {phases['import']:.1f}, build the network {phases['network']:.1f}, "
            f"the feature model {phases['feature model']:.1f}, first batch of {batch_size} "
            f"{phases['first batch']:.1f}; a second batch {phases['second batch']:.2f}",
            f"{before_first:.1f} s", "", "")


# --- Report ---------------------------------------------------------------------------
def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = run_python("-c", "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import keras, "
                          "matplotlib; print(keras.__version__, keras.backend.backend(), matplotlib.__version__)"
                          ).stdout.split()
    return (f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, {gpu_description()}; Python "
            f"{platform.python_version()}, Keras {versions[0]} on {versions[1]}, Matplotlib {versions[2]}")


def gpu_description() -> str:
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "no GPU"
    return " + ".join(name.strip() for name in names if name.strip()) or "no GPU"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


SECTIONS = ("floor", "drawing", "batch", "memory", "throughput", "startup")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, type=Path,
                        help="a local InceptionV3 weights file, or 'none' (random: for timing on another machine)")
    parser.add_argument("--photos", type=Path, default=ROOT / "images",
                        help="folder of photos to cycle through (default: the bundled images/)")
    parser.add_argument("--repeats", type=cli.positive_int(1, 1000), default=3,
                        help="runs per median (default: %(default)s)")
    parser.add_argument("--batch-size", type=cli.positive_int(1, 1000), default=cli.DEFAULT_BATCH_SIZE,
                        help="deepviz's --batch-size in the batch, throughput and start-up runs (default: %(default)s)")
    parser.add_argument("--throughput-photos", type=cli.positive_int(2, 10000), default=32,
                        help="photos of the throughput runs, at least 2: half of them make the second run "
                             "(default: %(default)s)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS,
                        help="the sections to run (default: all)")
    args = parser.parse_args(argv)

    if args.weights != Path("none") and not args.weights.is_file():
        parser.error(f"--weights {args.weights}: no such file; give an InceptionV3 weights file, or 'none'")
    sources = sorted(p for p in args.photos.iterdir()) if args.photos.is_dir() else []
    sources = [p for p in sources if p.suffix.lower() in images.IMAGE_SUFFIXES]
    if not sources:
        parser.error(f"--photos {args.photos}: expected a folder holding photos (.jpg, .png, ...)")
    image = sources[0]
    # On jax, what XLA compiles is kept for the next process, as the command line keeps it: in the
    # benchmark's own processes too, the bare network's and the start-up's
    backend.keep_jax_compilations(synthesis.cache_directory() / "jax")
    work = Path(tempfile.mkdtemp(prefix="deepviz-bench-"))
    floor = None
    # The table is printed a row at a time, as each is measured: a run cut short keeps what it measured
    print(f"Measured on: {machine_description()}; medians of {args.repeats} runs.\n")
    print("| measurement | time or size | ratio | target |")
    print("|---|---|---|---|", flush=True)

    def show(*row):
        print("| " + " | ".join(row) + " |", flush=True)

    def progress(message):
        print(f"bench: {message}", file=sys.stderr, flush=True)

    try:
        folder = work / "photos32"
        folder.mkdir()
        copies = []
        for i in range(32):
            source = sources[i % len(sources)]
            copies.append(folder / f"{i:02d}_{source.name}")
            shutil.copy(source, copies[-1])

        if "floor" in args.only:  # 1. Floor vs tool
            progress("floor vs tool")
            floor = timed(lambda: run_python("-c", FLOOR_SCRIPT, str(args.weights), str(image)), args.repeats)
            whole = timed(lambda: tool(image, "--layers", "conv2d_1", "mixed3", "--weights", args.weights,
                                       "--out", work / "one.png"), args.repeats)
            help_time = timed(lambda: run_python(str(ROOT / "deepviz.py"), "--help"), args.repeats)
            show("floor: import Keras, build, load weights, one forward pass", f"{floor:.2f} s", "", "")
            show("deepviz IMAGE --layers conv2d_1 mixed3", f"{whole:.2f} s",
                 f"{whole / floor:.2f}x floor", f"≤ 1.3x: {verdict(whole / floor <= 1.3)}")
            show("deepviz --help", f"{help_time:.2f} s", "", f"≤ 1 s: {verdict(help_time <= 1)}")

        if "drawing" in args.only:  # 2. Drawing
            progress("drawing 2,816 tiles")
            photo = images.load_image(image)
            layers = drawing_layers()
            size = draw_with_deepviz(photo, layers, figure.DEFAULT_DPI)  # warm up, and the size to match
            ours = timed(lambda: draw_with_deepviz(photo, layers, figure.DEFAULT_DPI), args.repeats)
            naive = timed(lambda: draw_naively(photo, layers, size, figure.DEFAULT_DPI), args.repeats)
            show("drawing mixed3 + mixed10, all 2,816 channels: one subplot per channel", f"{naive:.2f} s",
                 "", "")
            versus_floor = f"; {ours / floor:.2f}x floor" if floor else ""
            floor_target = f"; ≤ 0.25x floor: {verdict(ours / floor <= 0.25)}" if floor else ""
            show("drawing mixed3 + mixed10, all 2,816 channels: deepviz", f"{ours:.2f} s",
                 f"{naive / ours:.0f}x faster{versus_floor}",
                 f"≥ 10x: {verdict(naive / ours >= 10)}{floor_target}")

        if "batch" in args.only:  # 3. Batch
            progress("32 photos: one run, then 32 runs")
            common = ["--layers", "conv2d_1", "mixed3", "--weights", args.weights, "--batch-size", args.batch_size]
            batched = timed(lambda: tool(folder, *common, "--out", work / "batched"), args.repeats)
            separate = timed(lambda: [tool(p, *common, "--out", work / "separate") for p in copies], 1)
            throughput = bare_network_throughput(args.batch_size, args.weights)
            show("32 photos, 32 separate runs", f"{separate:.1f} s", f"{32 / separate:.2f} images/s", "")
            show(f"32 photos, one run (batches of {args.batch_size})", f"{batched:.1f} s",
                 f"{batched / separate:.3f}x the separate runs; {32 / batched:.2f} images/s",
                 f"≤ 0.15x: {verdict(batched / separate <= 0.15)}")
            show(f"model alone: forward passes of {args.batch_size} photos", "",
                 f"{throughput:.1f} images/s", "for scale")

        if "memory" in args.only:  # 4. Memory
            progress("peak memory")
            mixed, _ = peak_memory_mib(image, "--layers", *[f"mixed{i}" for i in range(11)], "--max-maps", "all",
                                       "--weights", args.weights, "--out", work / "mixed.png")
            show("peak memory: all eleven mixed layers, --max-maps all", f"{mixed:.0f} MiB", "",
                 f"≤ 2 GB: {verdict(mixed * 2**20 <= 2e9)}")
            eight, eight_worker = peak_memory_mib(*copies[:8], "--weights", args.weights, "--out", work / "eight")
            folder64 = work / "photos64"
            folder64.mkdir()
            for i in range(64):
                shutil.copy(copies[i % 32], folder64 / f"{i:02d}_{copies[i % 32].name}")
            sixty_four, sixty_four_worker = peak_memory_mib(folder64, "--weights", args.weights,
                                                            "--out", work / "sixty_four")
            show("peak memory: 8 photos, default layers (main process; largest worker)",
                 f"{eight:.0f} MiB; {eight_worker:.0f} MiB", "", "")
            show("peak memory: 64 photos, default layers (main process; largest worker)",
                 f"{sixty_four:.0f} MiB; {sixty_four_worker:.0f} MiB",
                 f"{sixty_four / eight:.2f}x the 8-photo run", f"≤ 1.2x: {verdict(sixty_four / eight <= 1.2)}")

        if "throughput" in args.only:  # 5. Throughput
            for row in throughput_rows(args, work, sources, progress):
                show(*row)

        if "startup" in args.only:  # 6. Start-up
            show(*startup_row(args.weights, image, args.batch_size, progress))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
