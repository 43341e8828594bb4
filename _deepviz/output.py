"""What a run writes, and where: figures, JSON records and arrays, each written atomically."""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import __version__
from .backend import import_keras
from .errors import DeepvizError, UsageError
from .png import encode_png
from .stats import LayerSummary
from .titles import missing_glyphs_quiet


FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")
DEFAULT_OUT_DIR = Path("result")
TEMPORARY_STEM_CHARACTERS = 40  # of a file's stem in its temporary name: at most 160 bytes, with 15 more
TEMPORARY_SUFFIX = ".part"


def save_figure(figure, path: Path, dpi: int) -> None:
    file_format = path.suffix.lower().lstrip(".")
    with missing_glyphs_quiet():
        if file_format == "png":
            write_atomically(path, lambda stream: write_png(figure, stream, dpi))
        else:
            write_atomically(path, lambda stream: figure.savefig(stream, format=file_format, dpi=dpi))


def write_png(figure, stream, dpi: int) -> None:
    """The figure as `savefig` draws it, rendered once and encoded by `png.encode_png`.

    `savefig` renders a figure with a layout engine twice (once to lay it out, once to
    draw it), resampling every image both times, and writes RGBA at zlib level 6; an
    opaque figure's pixels fit in RGB.
    """
    import matplotlib

    software = f"deepviz {__version__}, Matplotlib version{matplotlib.__version__}, https://matplotlib.org/"
    stream.write(encode_png(render_figure(figure, dpi), dpi, {"Software": software}))


def is_a_figure(path: Path) -> bool:
    """Whether `path` is a PNG figure, which a new run may replace: one deepviz wrote, or Matplotlib
    (as deepviz's figures before it named itself), by its Software text; not a photo."""
    return "Matplotlib version" in png_software(path)


def drawn_by_deepviz(path: Path) -> bool:
    """Whether `path` is a PNG that deepviz wrote, by its Software text (not any Matplotlib image)."""
    return png_software(path).startswith("deepviz ")


def png_software(path: Path) -> str:
    """The Software text of the PNG at `path`; "" for any other file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return str(image.info.get("Software", ""))
    except Exception:  # not an image Pillow reads, or not readable
        return ""


def render_figure(figure, dpi: int) -> np.ndarray:
    """The figure's pixels at `dpi`: (H, W, 3) uint8 if it is opaque, (H, W, 4) otherwise."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas, figure_dpi = figure.canvas, figure.dpi
    try:
        figure.dpi = dpi
        agg = FigureCanvasAgg(figure)
        agg.draw()
        rgba = np.asarray(agg.buffer_rgba())  # (height, width, 4)
        return np.ascontiguousarray(rgba[..., :3]) if rgba[..., 3].min() == 255 else rgba.copy()
    finally:
        figure.dpi = figure_dpi
        figure.set_canvas(canvas)


def json_path(figure_path: Path) -> Path:
    return figure_path.with_suffix(".json")


def arrays_path(figure_path: Path) -> Path:
    return figure_path.with_suffix(".npz")


def json_write(figure_path: Path, record: dict) -> tuple:
    """(path, write(), what) for a list of writes: `record` as the figure's <stem>.json, written atomically."""
    path = json_path(figure_path)
    text = json.dumps(finite_or_null(record), indent=2, allow_nan=False).encode("utf-8")
    return path, lambda: write_atomically(path, lambda stream: stream.write(text)), "the JSON"


def finite_or_null(value):
    """`value` with every float that is inf or NaN made None: JSON has no such numbers (null stands for them)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def arrays_write(figure_path: Path, arrays: dict) -> tuple:
    """(path, write(), what) for a list of writes: `arrays` as the figure's <stem>.npz, written atomically."""
    path = arrays_path(figure_path)
    return path, lambda: write_atomically(path, lambda stream: np.savez_compressed(stream, **arrays)), "the arrays"


def write_in_turn(writes, written: Callable[[Path], None]) -> str | None:
    """Each (path, write(), what) in turn, `written(path)` after each; at the first that fails, why, and no more."""
    for target, write, what in writes:
        try:
            write()
        except OSError as error:
            return f"could not write {what} {target}: {error.strerror or error}"
        except Exception as error:  # not the file system's doing: a bug, or a library's failure deepviz does not know
            return f"could not make {what} {target}: {type(error).__name__}: {error}; please report it, with the image"
        written(target)
    return None


def write_atomically(path: Path, write: Callable) -> None:
    """Call write(binary stream) on a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def temporaries_of(path: Path) -> list[Path]:
    """The temporary files that write_atomically makes for `path` (or for another file of its stem) and has
    not yet renamed: those of a write in progress, or left by a process killed as it wrote."""
    return list(path.parent.glob(f"{glob.escape(temporary_prefix(path))}*{TEMPORARY_SUFFIX}"))


def temporary_prefix(path: Path) -> str:
    """Hidden, named after the file, shortened: its name may be as long as the system allows, with no room for more."""
    return f".{path.stem[:TEMPORARY_STEM_CHARACTERS]}."


def file_identity(path: Path) -> tuple | None:
    """What tells one file at `path` from another written there later (a rename gives a new inode); None if none."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def current_umask() -> int:
    """The process's umask, from Linux's /proc where it can be: elsewhere it is read by setting it, which
    for that moment would give a file another thread makes (Keras's, JAX's) every permission."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line.split()[1] for line in status if line.startswith("Umask:")), 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def figure_paths(images: Sequence[Path], out: str | None, siblings: Sequence[str] = ()) -> list[Path]:
    """Where each image's figure goes; two images with one stem get distinct names, and no figure
    lands on an image given (`--out` the photos' own folder): it would replace the photo. `siblings`:
    the suffixes of the files written beside each figure (".json", ".npz")."""
    return named_paths([image.stem for image in images], out, {image.resolve() for image in images}, siblings)


def named_paths(stems: Sequence[str], out: str | None, photos: set = frozenset(),
                siblings: Sequence[str] = ()) -> list[Path]:
    """<stem>.png in --out's folder (default result/) for each stem, or --out itself for one.

    Never one of `photos` (resolved paths), which --out naming one refuses; and in a folder, never
    a file that is not a figure (a photo of the same name, not given this run; a link): the name is
    then taken as a second stem's is (<stem>-2.png). A figure of an earlier run is replaced, with
    the files beside it; a file with a `siblings` suffix and no figure beside it is kept. Names are
    told apart whatever their case, as macOS and Windows do.
    """
    if out is not None and not is_directory_target(out):
        if len(stems) > 1:
            raise UsageError(f"--out {out} names one file but {len(stems)} images were given; pass a directory")
        if Path(out).resolve() in photos:
            raise UsageError(f"--out {out} is the image itself, which the figure would replace; "
                             "choose another name or a directory")
        return [Path(out)]
    folder = Path(out) if out is not None else DEFAULT_OUT_DIR
    kept = functools.lru_cache(maxsize=None)(lambda path: path.resolve() in photos or someone_elses(path, siblings))
    paths, taken = [], set()
    for stem in stems:
        name, number = f"{stem}.png", 2
        while name.casefold() in taken or kept(folder / name):
            name, number = f"{stem}-{number}.png", number + 1
        taken.add(name.casefold())
        paths.append(folder / name)
    return paths


def someone_elses(path: Path, siblings: Sequence[str] = ()) -> bool:
    """Whether something is at `path` (a file, a folder, a link, even a broken one) that is not a figure,
    or, where nothing is, beside it with a `siblings` suffix (a JSON of no figure is not deepviz's)."""
    if os.path.lexists(path):
        return path.is_symlink() or not is_a_figure(path)
    return any(os.path.lexists(path.with_suffix(suffix)) for suffix in siblings)


def is_directory_target(out: str) -> bool:
    return Path(out).is_dir() or out.endswith(("/", os.sep)) or not Path(out).suffix


def check_out_path(out: str | None) -> None:
    """--out names a figure file of a format deepviz writes, or a directory, that can be written; checked
    before any work."""
    if out is None:
        check_writable(DEFAULT_OUT_DIR, "the default output folder")
        return
    if not out.strip():
        raise UsageError("--out: expected a figure file or a directory, received an empty path; "
                         f"leave --out out to write into {DEFAULT_OUT_DIR}/")
    blocking = next((folder for folder in Path(out).parents if folder.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UsageError(f"--out {out}: {blocking} is a file, not a directory; choose another path")
    if not is_directory_target(out):
        check_figure_format(Path(out), f"--out {out}")
    check_writable(Path(out), f"--out {out}")


def check_figure_format(path: Path, name: str) -> None:
    """`path` ends in the suffix of a format deepviz writes figures in."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        received = f"'.{suffix}'" if suffix else "none (no suffix)"
        raise UsageError(f"{name}: unsupported figure format {received}; use one of "
                         + ", ".join(f".{f}" for f in FIGURE_FORMATS))


def check_writable(target: Path, name: str) -> None:
    """A file can be made where `target` will be (in its nearest existing folder), so the run's work is not lost.

    Tried with a temporary file, gone at once: permission bits do not tell, for root or a read-only mount.
    """
    folder = next((folder for folder in (target, *target.parents) if folder.is_dir()), None)  # a file's: its own
    if folder is None:  # a relative path, and the working directory is gone
        raise DeepvizError(f"{name}: no folder on the way to {target} exists; choose another --out")
    try:
        try_making_a_file(folder)
    except OSError as error:
        # A folder that exists, yet "no such file": one the system makes no files in, as /proc
        reason = "it takes no new files" if error.errno == errno.ENOENT else error.strerror or error
        raise DeepvizError(f"{name}: cannot write into {folder.resolve()} ({reason}); "
                           "choose another --out") from None


def try_making_a_file(folder: Path) -> None:
    """Make a temporary file in `folder` and remove it; OSError where that cannot be done."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def run_record(path: Path, network, predictions, classes: Sequence[int] | None, layers: Sequence[LayerSummary],
               analysis, style, versions: dict | None = None) -> dict:
    """Everything --json writes about one photo's run; `classes`: the predictions' class indices;
    `versions`: library_versions(), computed once."""
    return {
        "image": str(path),
        "model": network.label,
        "weights": network.weights_label,
        "trained": network.trained,
        "versions": versions or library_versions(),
        "settings": {
            "layers": [layer.name for layer in layers],
            "top": analysis.top,
            "max_maps": analysis.max_maps if analysis.channels is None else None,  # --channels chose them
            "rank": analysis.rank if analysis.channels is None else None,  # as max_maps
            "channels": list(analysis.channels) if analysis.channels else None,
            "norm": style.norm,
            "summary": analysis.summary,
            "cmap": style.cmap,
            "dpi": style.dpi,
            "cam": analysis.cam,  # a Grad-CAM heatmap for each prediction
            "cam_layer": style.cam_layer or None,
            "cam_of": style.cam_scores if analysis.cam else None,  # what Grad-CAM's gradients are of
            "preprocess": network.preprocess_name,
            "input_size": list(network.input_size),
        },
        "predictions": None if predictions is None else [
            {"rank": rank, "class": name, "index": index, "probability": probability}
            for rank, ((name, probability), index) in enumerate(zip(predictions, classes), start=1)
        ],
        "predictions_unavailable": network.no_predictions_reason or None,
        "layers": [layer_record(layer) for layer in layers],
    }


def synthesis_record(settings, patterns: dict) -> dict:
    """What --json says of --synthesize: its settings and each pattern's mean activation of its channel."""
    return {
        "steps": settings.steps, "size": settings.size, "seed": settings.seed,
        "patterns": {layer: {str(channel): pattern.activation for channel, pattern in by_channel.items()}
                     for layer, by_channel in patterns.items()},
    }


def layer_record(layer: LayerSummary) -> dict:
    record = {
        "name": layer.name,
        "shape": list(layer.shape),
        "min": layer.minimum,
        "mean": layer.mean,
        "max": layer.maximum,
        "zeros_percent": layer.zeros * 100,
        "dead_channels": layer.dead if layer.is_spatial else None,
        "ranking": layer.ranking if layer.is_spatial else None,  # a vector layer's values are not ranked
        "channels": None,  # a vector layer's values are all drawn, as bars
    }
    if layer.is_spatial:
        record["channels"] = [
            {"index": int(c), "mean": float(m), "max": float(x)}
            for c, m, x in zip(layer.channels, layer.channel_means, layer.channel_maxima)
        ]
    return record


def library_versions() -> dict:
    import matplotlib
    import PIL

    keras = import_keras()
    return {
        "deepviz": __version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "pillow": PIL.__version__,
        "python": sys.version.split()[0],
    }
