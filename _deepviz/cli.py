"""The command line: its parser (every option, with its default in --help) and progress on stderr."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys

from . import __version__
from .errors import UsageError
from .exemplars import DEFAULT_ENGINE, DEFAULT_PER_CHANNEL, ENGINES, MAX_PER_CHANNEL
from .figure import DEFAULT_CMAP, DEFAULT_DPI, DPI_RANGE, check_colormap
from .images import PREPROCESSING, SAMPLE_IMAGE_NAME
from .layers import first_repeated
from .mosaic import NORMALISATIONS
from .models import DEFAULT_MODEL, DEFAULT_PREPROCESS, MODELS, NUM_CLASSES
from .output import DEFAULT_OUT_DIR, FIGURE_FORMATS
from .synthesis import DEFAULT_MAX_MAPS as SYNTHESIS_MAX_MAPS
from .synthesis import DEFAULT_SEED as SYNTHESIS_SEED
from .synthesis import DEFAULT_SIZE as SYNTHESIS_SIZE
from .synthesis import DEFAULT_STEPS as SYNTHESIS_STEPS
from .synthesis import SEED_RANGE, SIZE_RANGE, STEPS_RANGE
from .stats import DEFAULT_MAX_MAPS, DEFAULT_TOP, RANKINGS, SUMMARIES
from .workers import usable_cores

DEFAULT_BATCH_SIZE = 8
BATCH_SIZE_RANGE = (1, 1024)
WORKERS_RANGE = (1, 512)


def positive_int(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {value}")
        return value

    return parse


def max_maps_value(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1 or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1 or 'all', got {value}")
    return value


def channel_list(text: str) -> tuple[int, ...]:
    try:
        channels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected channel indices separated by commas, like 12,40,7, "
                                         f"got {text!r}") from None
    if min(channels) < 0:
        raise argparse.ArgumentTypeError(f"expected channel indices of 0 or more, got {text!r}")
    repeated = first_repeated(channels)
    if repeated is not None:
        raise argparse.ArgumentTypeError(f"expected each channel once, got {repeated} twice in {text!r}")
    return channels


class StoreGiven(argparse.Action):
    """Stores the value and notes that the option was given (`<dest>_given`): a mode can change its default,
    and a mode that does not use it refuses it, whatever its value."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it or there is none to say."""

    def _get_help_string(self, action):
        if "(default:" in (action.help or "") or action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line, as deepviz's own are, not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")

    def parse_args(self, args=None, namespace=None):
        """argparse's, but where an unknown option is a file's name (`-cat.jpg`), the error says how to pass it."""
        namespace, unknown = self.parse_known_args(args, namespace)
        if unknown:
            files = [arg for arg in unknown if arg.startswith("-") and os.path.exists(arg)]
            hint = f"; a file whose name starts with '-' goes after --: {self.prog} -- {files[0]}" if files else ""
            self.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
        return namespace


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="deepviz",
        description=(
            "Show what a convolutional network (InceptionV3 by default) sees in a photo: print its "
            "top predictions and draw the feature maps of chosen layers, from one forward pass. "
            "Each photo is resized to the network's input size (299x299 for InceptionV3) without "
            "cropping (squashed if it is not square); the figure shows it at its own aspect ratio."
        ),
        epilog="Exit status: 0 done, 1 runtime failure (download, unreadable input, write error), "
        "2 usage error, 130 interrupted, 141 stdout closed (| head). On jax, XLA's compilations are kept in "
        "$DEEPVIZ_CACHE/jax ($XDG_CACHE_HOME/deepviz/jax, ~/.cache/deepviz/jax) unless JAX_COMPILATION_CACHE_DIR "
        "is set.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help=f"image files or directories of images (default: the sample photo images/{SAMPLE_IMAGE_NAME})",
    )
    parser.add_argument(
        "--layers",
        nargs="+",
        metavar="NAME",
        help="layers to draw, early to late; a layer inside a nested model is OUTER/INNER "
        "(see --list-layers; default: the model's default layers, for InceptionV3 "
        f"{' '.join(MODELS[DEFAULT_MODEL].default_layers)})",
    )
    parser.add_argument("--list-layers", action="store_true", help="print every layer of the model and exit")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="NAME|PATH",
        help="a keras.applications ImageNet classifier (see --list-models) or a saved Keras model "
        "(.keras, or a full-model .h5)",
    )
    parser.add_argument("--list-models", action="store_true", help="print the built-in models and exit")
    parser.add_argument(
        "--weights",
        metavar="imagenet|none|PATH",
        help="for a built-in model: 'imagenet' (Keras downloads and caches them), 'none' (random, "
        "untrained) or a local Keras weights file (.h5 or .weights.h5; one saved without the "
        "classifier head draws maps without predictions) (default: imagenet)",
    )
    parser.add_argument(
        "--preprocess",
        choices=list(PREPROCESSING),
        help="how pixels are scaled for the network: 'inception' to [-1, 1], 'caffe' (BGR, ImageNet "
        "mean removed), 'torch' (ImageNet mean and std), 'unit' to [0, 1], 'none' (0 to 255) "
        f"(default: a built-in model's own; for a saved model, that of the built-in architecture it is built on, "
        f"'none' if it scales its pixels itself, else '{DEFAULT_PREPROCESS}')",
    )
    parser.add_argument("--labels", metavar="FILE",
                        help="class names for a saved model's output, one per line; logits (no activation at the "
                        "end) are shown as their softmax (default: class_0, class_1, ... for a softmax output)")
    parser.add_argument("--top", type=positive_int(1, NUM_CLASSES), default=DEFAULT_TOP, metavar="K",
                        action=StoreGiven,
                        help=f"how many predictions to print (1 to {NUM_CLASSES})")
    parser.add_argument("--max-maps", type=max_maps_value, default=DEFAULT_MAX_MAPS, metavar="N|all",
                        action=StoreGiven,
                        help=f"channels drawn per layer, the highest-ranked first ({SYNTHESIS_MAX_MAPS} with "
                        "--synthesize, unless given)")
    parser.add_argument("--rank", choices=list(RANKINGS),
                        help="order of channels: by mean or max activation, or by channel index (default: mean); "
                        "with --exemplars, how photos are ranked: max (the strongest position, the default there) "
                        "or mean")
    parser.add_argument("--norm", choices=list(NORMALISATIONS), default="channel",
                        action=StoreGiven,
                        help="tile scaling: 'channel' (each tile its own min to max) or 'layer' (one scale per layer)")
    parser.add_argument("--cmap", default=DEFAULT_CMAP, metavar="NAME", help="any Matplotlib colormap name")
    parser.add_argument("--dpi", type=positive_int(*DPI_RANGE), default=DEFAULT_DPI, metavar="N",
                        help=f"figure resolution in dots per inch ({DPI_RANGE[0]} to {DPI_RANGE[1]})")
    parser.add_argument("--out", metavar="PATH",
                        help=f"figure file (.{', .'.join(FIGURE_FORMATS)}) or directory "
                        f"(default: {DEFAULT_OUT_DIR}/<image stem>.png; {DEFAULT_OUT_DIR}/synthesis.png for "
                        f"--synthesize without IMAGE; {DEFAULT_OUT_DIR}/exemplars_<layer>.png for --exemplars)")
    parser.add_argument("--recursive", action="store_true", help="look for images in subdirectories too")
    parser.add_argument("--batch-size", type=positive_int(*BATCH_SIZE_RANGE), default=DEFAULT_BATCH_SIZE,
                        metavar="N", action=StoreGiven,
                        help=f"images per forward pass ({BATCH_SIZE_RANGE[0]} to {BATCH_SIZE_RANGE[1]})")
    parser.add_argument("--workers", type=positive_int(*WORKERS_RANGE), metavar="N",
                        help=f"processes that draw and write the figures while the network runs, {WORKERS_RANGE[0]} "
                        f"to {WORKERS_RANGE[1]}; 1 draws in this process (default: the cores this process may use, "
                        f"{usable_cores()} here, at most one per photo)")
    parser.add_argument("--channels", type=channel_list, metavar="I,J,...",
                        help="draw exactly these channels, in this order, for every chosen layer "
                        "(instead of the top-ranked ones)")
    parser.add_argument("--summary", choices=list(SUMMARIES),
                        help="show each layer as a whole first: 'pca' colours each pixel by the first three "
                        "principal components of all its channels (default: off)")
    parser.add_argument("--cam", action="store_true",
                        help="Grad-CAM: for each of the top classes, a heatmap of where the photo drives it, "
                        "overlaid on the photo in rows under it (the first 20 classes)")
    parser.add_argument("--cam-layer", metavar="NAME",
                        help="the layer Grad-CAM explains, one that every path to the output passes through "
                        f"(default: {MODELS[DEFAULT_MODEL].explained_layer} for InceptionV3; for other models their "
                        "last default layer, or the nearest before it that every path passes through)")
    parser.add_argument("--synthesize", action="store_true",
                        help="for each drawn channel, optimise an image that excites it most and draw it beside the "
                        "channel's map on the photo; without IMAGE, only the patterns of --channels "
                        "(cached under $DEEPVIZ_CACHE, default ~/.cache/deepviz)")
    parser.add_argument("--steps", type=positive_int(*STEPS_RANGE), default=SYNTHESIS_STEPS, metavar="N",
                        action=StoreGiven,
                        help=f"--synthesize: optimisation steps per pattern ({STEPS_RANGE[0]} to {STEPS_RANGE[1]})")
    parser.add_argument("--size", type=positive_int(*SIZE_RANGE), metavar="PIXELS", action=StoreGiven,
                        help=f"--synthesize: side of each square pattern, {SIZE_RANGE[0]} to {SIZE_RANGE[1]} "
                        f"(default: {SYNTHESIS_SIZE}, or the model's input if smaller)")
    parser.add_argument("--seed", type=positive_int(*SEED_RANGE), default=SYNTHESIS_SEED, metavar="N",
                        action=StoreGiven,
                        help=f"--synthesize: random seed of the starting noise and transforms ({SEED_RANGE[0]} to "
                        f"{SEED_RANGE[1]}); the same seed gives the same pattern (default: {SYNTHESIS_SEED})")
    parser.add_argument("--json", action="store_true",
                        help="also write <figure stem>.json: predictions, model, weights, versions, settings, "
                        "and each layer's statistics and ranked channels (and --synthesize's settings and patterns)")
    parser.add_argument("--save-arrays", action="store_true",
                        help="also write <figure stem>.npz: each chosen layer's maps, the model's output "
                        "(predictions), the Grad-CAM heatmaps (cam/<class>) and the synthesized patterns "
                        "(synth/<layer>/<channel>)")
    parser.add_argument("--exemplars", nargs="+", metavar="PHOTO",
                        help="dataset exemplars: stream these photos (files or directories) through the network "
                        "once and draw, per layer, the photos that excite each channel most (--channels, or the "
                        "top --max-maps by mean over the set), cropped around the strongest position")
    parser.add_argument("--per-channel", type=positive_int(1, MAX_PER_CHANNEL), default=DEFAULT_PER_CHANNEL,
                        metavar="K", action=StoreGiven,
                        help=f"with --exemplars: photos kept per channel (1 to {MAX_PER_CHANNEL})")
    parser.add_argument("--engine", choices=list(ENGINES), default=DEFAULT_ENGINE, action=StoreGiven,
                        help="with --exemplars: 'local' runs in this process; 'ray' runs Ray Data workers, "
                        "one network each (pip install \"deepviz[ray]\")")
    parser.add_argument("--ray-address", metavar="ADDRESS",
                        help="with --engine ray: the cluster to join, 'auto' for the running one, 'local' "
                        "to start a local Ray (the default)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars or status lines on stderr, only warnings and errors")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks of internal errors, every library warning and what C "
                        "libraries print while photos are decoded (also: DEEPVIZ_DEBUG=1)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def check_cmap(name: str) -> None:
    try:
        check_colormap(name)
    except UsageError as error:
        raise UsageError(f"argument --cmap: {error}") from None


def warn(message: str) -> None:
    """A warning on stderr, shown even with --quiet, as errors are."""
    print(f"deepviz: warning: {message}", file=sys.stderr, flush=True)


class Reporter:
    """Progress on stderr (silenced by --quiet); results on stdout."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def status(self, message: str) -> None:
        if not self.quiet:
            print(f"deepviz: {message}", file=sys.stderr, flush=True)

    warn = staticmethod(warn)

    def quieted(self):
        """With --quiet, what libraries print meanwhile (Keras's download progress) is dropped; errors are
        raised, and printed after."""
        return contextlib.redirect_stderr(io.StringIO()) if self.quiet else contextlib.nullcontext()

    def progress(self, total: int, label: str = "drawing"):
        """A rich progress bar over the images, when there is more than one. What is printed meanwhile
        goes above the bar where stdout is the terminal too, and to stdout as it is where it is not."""
        if self.quiet or total < 2:
            return contextlib.nullcontext(None)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        return Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False, redirect_stdout=sys.stdout.isatty(),
        )


    @contextlib.contextmanager
    def synthesis_progress(self):
        """Yields progress(layer, steps) -> advance(n): a rich bar per layer optimised, steps and time left;
        None with --quiet."""
        if self.quiet:
            yield None
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("synthesizing {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("steps"), TimeRemainingColumn(), console=Console(stderr=True),
                      redirect_stdout=sys.stdout.isatty()) as progress:
            def start(layer: str, steps: int):
                task = progress.add_task(layer, total=steps)
                return lambda done: progress.advance(task, done)

            yield start


def format_predictions(predictions) -> list[str]:
    """`1. golden_retriever  86.55%`, one line per class, ranks, names and percentages aligned."""
    width = max(len(name) for name, _ in predictions)
    percents = [f"{probability * 100:.2f}%" for _, probability in predictions]
    percent_width, rank_width = max(map(len, percents)), len(str(len(predictions)))
    return [
        f"{rank:>{rank_width}}. {name:<{width}}  {percent:>{percent_width}}"
        for rank, ((name, _), percent) in enumerate(zip(predictions, percents), start=1)
    ]
