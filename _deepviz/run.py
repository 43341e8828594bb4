"""The command line's run: arguments in, each photo's lines on stdout and its files out, errors as one line.

Everything here goes through the Visualizer that `deepviz.main` hands over, the same object
notebook users hold; this module adds batching over many photos, printing and progress.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import dataclasses
import gc
import itertools
import os
import select
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable, Sequence


from .analysis import Analysis, PhotoResult
from .backend import check_backend, keep_jax_compilations
from .cli import Reporter, check_cmap, format_predictions, warn
from .errors import DeepvizError, Terminated, UsageError
from .explain import nothing_to_explain
from .figure import FigureStyle, display_photo, photo_title
from .images import as_seen, expand_inputs, figures_drawn, load_image, sample_image
from .layers import describe_layers
from .models import (DEFAULT_WEIGHTS, MODELS, OWN_WEIGHTS_LABEL, NetworkChoice, check_choice, headless_reason,
                     weights_have_classifier)
from .output import (arrays_write, check_out_path, figure_paths, json_write, library_versions, named_paths,
                     run_record, save_figure, synthesis_record, write_in_turn)
from .stats import format_layer_line
from .synthesis import DEFAULT_MAX_MAPS as SYNTHESIS_MAX_MAPS
from .synthesis import (cache_directory, check_synthesis_layer, layer_patterns, pattern_arrays,
                        synthesis_settings)
from .synthesis_figure import draw_synthesis_figure
from .workers import DrawJob, DrawingPool, DrawReport, default_workers

CTRL_C_REDELIVERY_SECONDS = 0.05
STDOUT_CLOSED_STATUS = 141  # stopped quietly when stdout's reader goes away, as SIGPIPE ends a tool: 128 + 13
TERMINATED_STATUS = 143  # 128 + 15 (SIGTERM), where SIGTERM's own handler did not end the process


def run_guarded(command: Callable[[], int], debug: bool) -> int:
    """Run `command`; every failure becomes one line on stderr and an exit status, never a traceback.

    With `debug`, an unexpected exception shows its full traceback instead. SIGTERM stops the
    command as Ctrl-C does; then it goes on to the handler that was there before, which as a
    rule ends the process (a notebook's kernel, told to stop, stops).
    """
    previous_hook = sys.unraisablehook
    sys.unraisablehook = redelivery = CtrlCRedelivery(previous_hook)
    sigterm_received = []  # the interruption may reach here as a plain KeyboardInterrupt (redelivered, re-raised)
    try:
        with stdout_takes_any_file_name(), sigterm_raising_terminated(sigterm_received):
            status = command()
        sys.stdout.flush()  # here, where a reader gone away (BrokenPipeError) is caught, not as Python exits
        if redelivery.cancel():  # Ctrl-C dropped as the command ended, not yet delivered again
            raise KeyboardInterrupt
        return status
    except DeepvizError as error:
        print(f"deepviz: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt as interruption:
        if not (isinstance(interruption, Terminated) or sigterm_received):
            print("interrupted", file=sys.stderr)
            return 130
        print("terminated", file=sys.stderr)
        with contextlib.suppress(OSError):
            sys.stdout.flush()
        signal.raise_signal(signal.SIGTERM)  # to the handler that was there: as a rule, the process ends here
        return TERMINATED_STATUS
    except MemoryError:
        print("deepviz: error: out of memory; draw fewer layers, lower --max-maps or --batch-size", file=sys.stderr)
        return 1
    except Exception as error:  # a bug, or a library failing in a way deepviz does not know
        if isinstance(error, BrokenPipeError) and stdout_reader_gone():
            discard_stdout()
            return STDOUT_CLOSED_STATUS
        if debug:
            traceback.print_exc()
        else:
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            print(f"deepviz: internal error: {type(error).__name__}: {message}\n"
                  "Rerun with --debug (or DEEPVIZ_DEBUG=1) for the full traceback, and report it.", file=sys.stderr)
        return 1
    finally:
        redelivery.cancel()
        sys.unraisablehook = previous_hook


@contextlib.contextmanager
def stdout_takes_any_file_name():
    """stdout writes the bytes of a file name that are not UTF-8 as they are, where it would fail on them
    (Python keeps them as lone surrogates); stderr shows them escaped, as it always does."""
    errors = getattr(sys.stdout, "errors", None)
    try:
        sys.stdout.reconfigure(errors="surrogateescape")
    except (AttributeError, ValueError):  # not a text file Python made (a notebook's, a test's)
        errors = None
    try:
        yield
    finally:
        if errors is not None:
            with contextlib.suppress(AttributeError, ValueError):
                sys.stdout.reconfigure(errors=errors)


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader went away (`deepviz PHOTOS | head`): one that polls as an error or
    hung up. Where poll is missing (Windows), no."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll, or stdout is not a file
        return False


def discard_stdout() -> None:
    """Send stdout to /dev/null from now on, so that Python's last flush of it, as it exits, cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class CtrlCRedelivery:
    """An unraisable hook for Ctrl-C that lands in a finalizer or a garbage-collection callback
    (JAX has one), where Python prints it as "Exception ignored" and goes on: delivered again to
    the main thread a moment later, once that callback is over. Anything else goes to `previous_hook`."""

    def __init__(self, previous_hook: Callable):
        self.previous_hook = previous_hook
        self.timers: list[threading.Timer] = []

    def __call__(self, unraisable) -> None:
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            self.previous_hook(unraisable)
            return
        timer = threading.Timer(CTRL_C_REDELIVERY_SECONDS, interrupt_main_thread)
        timer.daemon = True  # never holds the process open
        self.timers.append(timer)
        timer.start()

    def cancel(self) -> bool:
        """Stop the deliveries not yet made; whether there were any."""
        pending = [timer for timer in self.timers if not timer.finished.is_set()]
        for timer in pending:
            timer.cancel()
        return bool(pending)


@contextlib.contextmanager
def sigterm_raising_terminated(received: list):
    """SIGTERM raises Terminated in the main thread while the block runs, noted in `received`. Elsewhere,
    where SIGTERM is ignored, or where its handler was set outside Python (and so could not be put back),
    it is left as it is."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) in (None, signal.SIG_IGN)):
        yield
        return

    def raise_terminated(signum, frame):
        received.append(signum)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupt_main_thread() -> None:
    """Ctrl-C's signal to the main thread, which cuts short what it waits on (a sleep, a queue)."""
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    else:  # Windows: raised when the main thread next runs Python
        _thread.interrupt_main()


def run_command(args: argparse.Namespace, make_visualizer: Callable) -> int:
    """What the parsed command line asks for; `make_visualizer(model, weights=, preprocess=, labels=)`: Visualizer."""
    reporter = Reporter(args.quiet)
    if args.list_models:
        return list_models()
    keep_jax_compilations(cache_directory() / "jax")  # before Keras is imported
    if args.list_layers:
        return list_layers(args, reporter, make_visualizer)
    check_mode_options(args)
    check_cmap(args.cmap)
    check_out_path(args.out)  # last: it tries making a file there
    if args.exemplars:
        from .run_exemplars import run_exemplars  # it imports this module

        return run_exemplars(args, reporter, make_visualizer)
    if args.synthesize and not given(args, "max_maps"):
        args.max_maps = SYNTHESIS_MAX_MAPS
    if args.synthesize and not args.images:
        return draw_patterns_only(args, reporter, make_visualizer)
    return visualize(args, reporter, make_visualizer)


def check_mode_options(args) -> None:
    """Options are refused where their mode does not use them, rather than silently ignored."""
    if args.channels is not None and given(args, "max_maps"):
        raise UsageError("--channels draws exactly the channels listed and --max-maps the top-ranked ones; "
                         "pass one of them")
    if args.cam_layer is not None and not args.cam:
        raise UsageError(f"--cam-layer {args.cam_layer} picks the layer --cam explains; add --cam, or leave "
                         "--cam-layer out")
    if not args.synthesize:
        refuse_with([(f"--{option}", given(args, option)) for option in ("steps", "size", "seed")],
                    "sets up --synthesize; add --synthesize, or leave it out")
    if args.exemplars:
        one_photos = [("--cam", args.cam), ("--summary", args.summary), ("--save-arrays", args.save_arrays),
                      ("--synthesize", args.synthesize), ("--top", given(args, "top")), ("--norm", given(args, "norm")),
                      ("--workers", args.workers)]
        refuse_with(one_photos, "belongs to one photo's figure and does not apply to --exemplars; leave it out")
    else:
        exemplar_options = [("--per-channel", given(args, "per_channel")), ("--engine", given(args, "engine")),
                            ("--ray-address", args.ray_address)]
        refuse_with(exemplar_options, "sets up --exemplars; add --exemplars PHOTO ..., or leave it out")
    if args.ray_address is not None and args.engine != "ray":
        raise UsageError(f"--ray-address {args.ray_address} joins a Ray cluster: add --engine ray")
    if args.synthesize:
        refuse_with([("--cam", args.cam), ("--summary", args.summary)],
                    "is not drawn with --synthesize, whose figure pairs each channel's map with its pattern; "
                    "leave one of them out")
        if args.workers is not None:
            raise UsageError(f"--workers {args.workers}: --synthesize draws in this process, where the network "
                             "makes the patterns; leave --workers out")
    if args.synthesize and not args.images and not args.exemplars:
        photo_options = [("--top", given(args, "top")), ("--norm", given(args, "norm")), ("--rank", args.rank),
                         ("--batch-size", given(args, "batch_size"))]
        refuse_with(photo_options, "applies to photos, and --synthesize without IMAGE draws the patterns alone; "
                    "add an IMAGE, or leave it out")


def given(args, option: str) -> bool:
    """Whether the command line gave `option` (one stored with cli.StoreGiven), whatever its value."""
    return getattr(args, f"{option}_given", False)


def refuse_with(options, reason: str) -> None:
    """A UsageError for the first (flag, given) pair that was given: "FLAG REASON"."""
    for flag, was_given in options:
        if was_given:
            raise UsageError(f"{flag} {reason}")


def check_model_options(args, for_listing: bool = False) -> str | None:
    """The weights to build with, its files and the Keras backend checked before Keras is imported; listing
    layers needs no download, so no ImageNet weights."""
    if args.model not in MODELS:
        weights = None
    else:
        weights = args.weights or DEFAULT_WEIGHTS
        weights = "none" if for_listing and weights == DEFAULT_WEIGHTS else weights
    check_choice(NetworkChoice(args.model, weights or DEFAULT_WEIGHTS, args.preprocess, args.labels),
                 weights_given=args.weights is not None)
    if not for_listing and args.cam and weights not in (None, DEFAULT_WEIGHTS, "none") and not weights_have_classifier(
            Path(weights)):  # as explain.check_cam would refuse it, once the network is built
        raise nothing_to_explain(headless_reason(Path(weights).name), built_in=True)
    check_backend()
    return weights


def build_visualizer(args, reporter: Reporter, make_visualizer: Callable):
    """The Visualizer the command line asks for, announced on stderr as it is built."""
    weights = check_model_options(args)
    reporter.status(f"building {args.model} (weights: {weights or OWN_WEIGHTS_LABEL})")
    with reporter.quieted():  # Keras's download progress of the ImageNet weights too
        return visualizer_for(args, weights, make_visualizer)


def visualizer_for(args, weights: str | None, make_visualizer: Callable):
    """The Visualizer of args.model; weights passed only for a built-in model (None: a model of one's own, whose
    Visualizer takes none, and refuses any passed, even its default)."""
    options = {"preprocess": args.preprocess, "labels": args.labels}
    if weights is not None:
        options["weights"] = weights
    return make_visualizer(args.model, **options)


def list_models() -> int:
    for name, spec in MODELS.items():
        size = f"{spec.input_size}x{spec.input_size}"
        print(f"{name:<16} {spec.builder:<15} {size:<8} {' '.join(spec.default_layers)}")
    return 0


def listed_photos(inputs: Sequence[str], recursive: bool, reporter: Reporter) -> list[Path]:
    """The photos named and in the folders named; the figures deepviz drew among them left out, and said so."""
    figures: list[Path] = []
    paths = expand_inputs(inputs, recursive, figures)
    if figures:
        shown = ", ".join(str(figure) for figure in figures[:3])
        shown += f" and {len(figures) - 3} more" if len(figures) > 3 else ""
        reporter.status(f"left out {figures_drawn(len(figures))}: {shown}")
    return paths


def list_layers(args, reporter: Reporter, make_visualizer: Callable) -> int:
    weights = check_model_options(args, for_listing=True)
    reporter.status(f"building {args.model}")
    visualizer = visualizer_for(args, weights, make_visualizer)
    for line in describe_layers(visualizer.network):
        print(line)
    return 0


def visualize(args, reporter: Reporter, make_visualizer: Callable) -> int:
    image_paths = listed_photos(args.images, args.recursive, reporter) if args.images else [sample_image()]
    beside = [suffix for suffix, written in ((".json", args.json), (".npz", args.save_arrays)) if written]
    out_paths = figure_paths(image_paths, args.out, beside)
    batch_size = min(args.batch_size, len(image_paths))
    failures = FailureLog(several=len(image_paths) > 1, debug=args.debug)
    batches = load_batches(image_paths, batch_size, failures)
    read_ahead = read_until_a_photo(batches)  # before the network is built: a bad photo fails at once
    if not any(photos for _, photos in read_ahead):  # every one failed, each reported: nothing to build for
        return report_totals(image_paths, failures)
    # --synthesize draws in this process: the patterns are made here, one layer at a time, with the network
    workers = 1 if args.synthesize else args.workers or default_workers(len(image_paths))
    pool = DrawingPool(workers, reporter.warn)  # starts while the network is built
    try:
        visualizer = build_visualizer(args, reporter, make_visualizer)
        analysis = Analysis(
            layers=tuple(args.layers or visualizer.default_layers), top=args.top, max_maps=args.max_maps,
            rank=args.rank or "mean", channels=args.channels, summary=args.summary, cam=args.cam,
            cam_layer=args.cam_layer, keep_arrays=args.save_arrays,
        )
        versions = library_versions() if args.json else None  # imports Keras: once, here, never in a worker
        visualizer.prepare(analysis)  # every layer name checked, the models built, before the first photo
        gc.freeze()  # the network and its models live as long as the run: garbage collections skip them
        if args.synthesize:
            for layer in analysis.layers:
                check_synthesis_layer(visualizer.network, layer)
    except BaseException:
        pool.close()
        raise
    style = FigureStyle("", args.norm, args.cmap, args.dpi)
    # --synthesize shows its own bar per layer; rich shows one live display at a time
    with reporter.progress(0 if args.synthesize else len(image_paths)) as progress, pool:
        task = progress.add_task("drawing", total=len(image_paths)) if progress else None

        def show(tag, report: DrawReport) -> None:
            path, lines = tag
            print_report(path, lines, report, failures)
            if progress:
                progress.advance(task)

        try:
            for positions, photos in itertools.chain(read_ahead, batches):
                if photos:
                    results = visualizer.analyse([photo for _, photo in photos], analysis, batch_size)
                    for (index, photo), result in zip(photos, results):
                        path = image_paths[index]
                        lines = report_lines(path, visualizer.network, result, failures.several)
                        job = draw_job(path, photo, visualizer, result, out_paths[index], analysis, style, args,
                                       versions)
                        if args.synthesize:
                            job, pattern_lines = with_patterns(job, visualizer.network, args)
                            lines += pattern_lines
                        pool.submit(job, (path, lines), show)
                if progress:
                    progress.advance(task, len(positions) - len(photos))  # the unreadable ones
            pool.finish(show)
        except (KeyboardInterrupt, DeepvizError):
            pool.stop(show)  # what the workers wrote before they stopped is reported, as --workers 1 does
            raise
    return report_totals(image_paths, failures)


def read_until_a_photo(batches) -> list:
    """The batches up to and including the first with a readable photo (all of them if none has one)."""
    read = []
    for batch in batches:
        read.append(batch)
        if batch[1]:
            break
    return read


def report_totals(image_paths: Sequence[Path], failures: FailureLog) -> int:
    """With several images, how many were drawn and which failed; the exit status either way."""
    if failures.several:
        drawn = len(image_paths) - len(failures.paths)
        position = {path: index for index, path in reversed(list(enumerate(image_paths)))}
        in_order = sorted(failures.paths, key=position.__getitem__)  # failed reading, or drawing: found apart
        failed = f"; failed: {', '.join(map(str, in_order))}" if failures.paths else ""
        print(f"{drawn} of {len(image_paths)} images drawn{failed}")
    return 1 if failures.paths else 0


class FailureLog:
    """Images that failed: with several images each is reported and the run goes on; with one, it stops."""

    def __init__(self, several: bool, debug: bool = False):
        self.several = several
        self.debug = debug
        self.paths: list[Path] = []

    def attempt(self, path: Path, step, *step_args):
        try:
            return step(*step_args)
        except DeepvizError as error:
            self.record(path, error)
            return None

    def record(self, path: Path, error: DeepvizError) -> None:
        if not self.several:
            raise error
        self.paths.append(path)
        print(f"deepviz: error: {error}", file=sys.stderr, flush=True)

    def read(self, path: Path):
        """The photo at `path`, or None when it failed; its reading warnings as one line on stderr."""
        notes = None if self.debug else []
        photo = self.attempt(path, load_image, path, notes)
        if notes:
            more = f" (and {len(notes) - 1} more)" if len(notes) > 1 else ""
            warn(f"{path}: {notes[0]}{more}")
        return photo


def load_batches(image_paths: Sequence[Path], batch_size: int, failures: FailureLog):
    """Yield (positions, [(position, photo)]) per batch; unreadable images are left out."""
    for start in range(0, len(image_paths), batch_size):
        positions = range(start, min(start + batch_size, len(image_paths)))
        photos = [(i, failures.read(image_paths[i])) for i in positions]
        yield positions, [(i, photo) for i, photo in photos if photo is not None]


def report_lines(path: Path, network, result: PhotoResult, several: bool) -> list[str]:
    """One image's block on stdout, before its files: its predictions and layer statistics."""
    lines = [f"== {path}"] if several else []
    if network.class_names is None:
        lines.append(f"predictions unavailable: {network.no_predictions_reason}")
    else:
        if not network.trained:
            lines.append("untrained network (--weights none): these predictions are meaningless")
        lines += format_predictions(result.predictions)
    return lines + [format_layer_line(layer) for layer in result.layers]


def draw_job(path: Path, photo, visualizer, result: PhotoResult, out_path: Path, analysis: Analysis,
             style: FigureStyle, args, versions: dict | None) -> DrawJob:
    """What a worker needs to draw and write one image: the photo as shown, the reduced layers, the JSON text."""
    network = visualizer.network
    pipeline = visualizer.prepare(analysis)
    title = photo_title(path.name, photo, network, result.predictions, style.dpi)
    style = dataclasses.replace(style, photo_title=title, cam_layer=pipeline.cam_layer or "",
                                cam_scores=pipeline.cam_scores)
    record = (run_record(path, network, result.predictions, result.classes, result.layers, analysis, style, versions)
              if args.json else None)
    return DrawJob(display_photo(as_seen(photo, network)), result.layers, result.cams, style, out_path, record,
                   result.arrays)


def print_report(path: Path, lines: list[str], report: DrawReport, failures: FailureLog) -> None:
    """One image's block, whole: its lines, each file written, and the failure if one was not."""
    block = lines + [f"wrote {target}" for target in report.written]
    if block:
        print("\n".join(block), flush=True)
    if report.error:
        failures.record(path, DeepvizError(report.error))


def with_patterns(job: DrawJob, network, args) -> tuple[DrawJob, list[str]]:
    """The job drawn as pairs (map on the photo | pattern) of its drawn channels, and a line per layer."""
    settings = synthesis_settings(network, args.steps, args.size, args.seed)
    chosen = [(layer.name, list(layer.channels)) for layer in job.layers]
    with Reporter(args.quiet).synthesis_progress() as progress:
        patterns = layer_patterns(network, chosen, settings, progress)
    lines = [f"{layer} patterns (channel: mean activation): "
             + ", ".join(f"{channel}: {pattern.activation:.4g}" for channel, pattern in by_channel.items())
             for layer, by_channel in patterns.items()]
    arrays = None if job.arrays is None else {**job.arrays, **pattern_arrays(patterns)}
    record = None if job.record is None else {**job.record, "synthesis": synthesis_record(settings, patterns)}
    return dataclasses.replace(job, patterns=patterns, arrays=arrays, record=record), lines


def write_all(writes) -> None:
    """Each (path, write(), what) in turn, announced on stdout; a failure is a DeepvizError naming the file."""
    failure = write_in_turn(writes, lambda target: print(f"wrote {target}", flush=True))
    if failure:
        raise DeepvizError(failure)


def draw_patterns_only(args, reporter: Reporter, make_visualizer: Callable) -> int:
    """--synthesize without IMAGE: the patterns of --channels of each layer, in one figure."""
    if args.channels is None:
        raise UsageError("--synthesize without IMAGE draws the patterns of chosen channels; pass --channels I,J,... "
                         "(for example --layers mixed4 --channels 97,12) or an image to take its top channels from")
    visualizer = build_visualizer(args, reporter, make_visualizer)
    network = visualizer.network
    layers = list(dict.fromkeys(args.layers or visualizer.default_layers))
    settings = synthesis_settings(network, args.steps, args.size, args.seed)
    chosen = [(layer, list(args.channels)) for layer in layers]
    with reporter.synthesis_progress() as progress:
        patterns = layer_patterns(network, chosen, settings, progress)
    for layer, by_channel in patterns.items():
        for channel, pattern in by_channel.items():
            print(f"{layer} channel {channel}: mean activation {pattern.activation:.4g} on its pattern")
    out_path = named_paths(["synthesis"], args.out)[0]
    title = f"{network.label} ({network.weights_label})"
    figure = draw_synthesis_figure(None, title, chosen, patterns, cmap=args.cmap)
    writes = [(out_path, lambda: save_figure(figure, out_path, args.dpi), "the figure")]
    if args.json:
        writes.append(json_write(out_path, {"model": network.label, "weights": network.weights_label,
                                            "versions": library_versions(),
                                            "synthesis": synthesis_record(settings, patterns)}))
    if args.save_arrays:
        writes.append(arrays_write(out_path, pattern_arrays(patterns)))
    write_all(writes)
    return 0
