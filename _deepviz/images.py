"""Photos in: read one from a file (or take one from memory) as RGB, and scale its pixels for a network."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from .backend import file_descriptor_silenced, import_keras
from .errors import DeepvizError, UsageError
from .output import drawn_by_deepviz

# What a directory gives (an image named on its own may have any suffix Pillow reads)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm",
                  ".pbm", ".pnm")
HERE = Path(__file__).resolve().parent.parent
SAMPLE_IMAGE_NAME = "grace_hopper.jpg"
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # grey from R, G, B
SAMPLE_IMAGE_DIRS = (HERE / "images", HERE / "deepviz_data" / "images")  # checkout, installed


def load_image(path: Path, notes: list[str] | None = None) -> Image.Image:
    """Read any image Pillow can, apply its EXIF orientation and return it as RGB.

    Animated and multi-page files give their first frame. Pillow's pixel limit
    (Image.MAX_IMAGE_PIXELS) is enforced before decoding, so a decompression bomb
    is refused without using its memory. Whatever else reading or decoding raises is
    this photo's failure, a DeepvizError. When `notes` is a list, the warnings that
    reading gave are added to it, and what C libraries (libtiff) write to stderr
    meanwhile is kept off the terminal; with `notes` None, both go through.
    """
    path = Path(path)
    capture = notes is not None
    caught = None  # until catch_warnings has begun: Ctrl-C may come before
    try:
        with warnings.catch_warnings(record=capture) as caught:
            warnings.simplefilter("always" if capture else "default")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with file_descriptor_silenced(2) if capture else contextlib.nullcontext():
                photo = decode_image(path)
    finally:
        if capture:
            notes.extend(str(warning.message) for warning in caught or [])
    return photo


def decode_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)  # also loads the first frame
            return to_rgb(image)
    except FileNotFoundError:
        raise DeepvizError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise DeepvizError(f"{path}: is a directory, expected an image file") from None
    except PermissionError:
        raise DeepvizError(f"{path}: permission denied; make the file readable (chmod +r)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        found = re.search(r"\((\d+) pixels\)", str(error))  # Pillow's "Image size (N pixels) exceeds ..."
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise DeepvizError(
            f"{path}: {size}, over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} (its guard against decompression "
            "bombs); refused before decoding. Shrink the image below that first."
        ) from None
    except MemoryError:
        raise
    except Exception as error:  # Pillow's plugins raise many kinds (NotImplementedError for some DDS files)
        reason = str(error) or type(error).__name__
        raise DeepvizError(f"{path}: not a readable image ({reason})") from None


IMAGE_EXPECTED = ("image: expected a path, a PIL.Image.Image or a uint8 array of shape (H, W, 3), (H, W, 4), "
                  "(H, W, 1) or (H, W)")


def as_photo(image) -> Image.Image:
    """An RGB photo from a path, a PIL image or a (H, W, 3), (H, W, 4) (RGBA), (H, W, 1) or (H, W) uint8 array."""
    if isinstance(image, (str, Path)):
        return load_image(Path(image))
    if isinstance(image, Image.Image):
        photo = to_rgb(ImageOps.exif_transpose(image))
    elif isinstance(image, np.ndarray) and image.dtype == np.uint8 and (
            image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3, 4))):
        photo = to_rgb(Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image))
    else:
        raise UsageError(f"{IMAGE_EXPECTED}; received {received_image(image)}")
    if not photo.width or not photo.height:
        raise UsageError(f"image: expected at least one pixel, received an image of {photo.width}x{photo.height}")
    return photo


def received_image(image) -> str:
    """What an image argument that as_photo cannot take is, and how to make one it can."""
    if not isinstance(image, np.ndarray):
        return type(image).__name__ + (". Pass several images as a list" if isinstance(image, tuple) else "")
    hint = ""
    if np.issubdtype(image.dtype, np.floating):
        finite = image[np.isfinite(image)]
        hint = (" Convert a float array in 0 to 255 with array.clip(0, 255).astype('uint8')."
                if finite.size and finite.max() > 1 else " Convert a float array in [0, 1] with "
                "(array * 255).astype('uint8').")
    if image.ndim == 4:
        hint += " Pass a batch as a list of images: list(batch)."
    return f"an array of shape {image.shape} and dtype {image.dtype}.{hint}"


GREY_RANGES = (255, 1023, 4095, 16383, 65535)  # the largest value of 8, 10, 12, 14 and 16 bits


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is laid over white.

    Grey of more than 8 bits is scaled from the range it fits: [0, 1] for floats that do, else the
    smallest of GREY_RANGES (a 12-bit scan in a 16-bit file fills the photo's range, not a 16th of it).
    """
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = np.asarray(image, dtype=np.float64)  # 16/32-bit or float grey
        peak = grey.max(initial=0)
        top = 1.0 if image.mode == "F" and peak <= 1 else next((bound for bound in GREY_RANGES if peak <= bound), peak)
        grey8 = np.clip(grey * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey8, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def preprocess(photo: Image.Image, network) -> np.ndarray:
    """Squash the whole photo to the network's input size and scale its pixels for it.

    No cropping: a non-square photo is resized without keeping its aspect ratio, as
    keras.utils.load_img(target_size=..., interpolation="bilinear") does, with the same filter.
    """
    height, width = network.input_size
    resized = photo.resize((width, height), Image.Resampling.BILINEAR)
    return network_input(np.asarray(resized, dtype=np.float32), network)


def as_seen(photo: Image.Image, network) -> Image.Image:
    """The photo as the figure shows it: in grey where the network takes greyscale images."""
    return in_grey(photo) if network.input_channels == 1 else photo


def in_grey(photo: Image.Image) -> Image.Image:
    return photo.convert("L").convert("RGB")


def network_input(pixels: np.ndarray, network) -> np.ndarray:
    """RGB pixels (..., 3) in [0, 255] as the network takes them: in greyscale (..., 1) where its
    input has one channel (ITU-R 601 luma, as Pillow's "L"), then scaled by its preprocessing."""
    if network.input_channels == 1:
        pixels = pixels @ LUMA_WEIGHTS[:, None]
    return np.asarray(network.preprocess(pixels.copy()), dtype=np.float32)  # a copy: preprocessing may work in place


def scale_like_inception(pixels: np.ndarray) -> np.ndarray:
    return pixels / 127.5 - 1.0  # [-1, 1]


def scale_like_caffe(pixels: np.ndarray) -> np.ndarray:
    return import_keras().applications.imagenet_utils.preprocess_input(pixels, mode="caffe")  # BGR, mean removed


def scale_like_torch(pixels: np.ndarray) -> np.ndarray:
    return import_keras().applications.imagenet_utils.preprocess_input(pixels, mode="torch")  # [0, 1], standardised


def scale_to_unit(pixels: np.ndarray) -> np.ndarray:
    return pixels / 255.0  # [0, 1]


def keep_pixels(pixels: np.ndarray) -> np.ndarray:
    return pixels  # [0, 255]: the model scales them itself


PREPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "inception": scale_like_inception,
    "caffe": scale_like_caffe,
    "torch": scale_like_torch,
    "unit": scale_to_unit,
    "none": keep_pixels,
}


def expand_inputs(inputs: Sequence[str], recursive: bool, figures_left_out: list[Path] | None = None) -> list[Path]:
    """Image paths from files and directories (a directory gives its images, sorted).

    A directory's images are its files with an image suffix (IMAGE_SUFFIXES); hidden files and
    folders (".name", such as macOS's "._IMG_1.jpg" or ".git") are left out, and so are the
    figures deepviz drew (output.drawn_by_deepviz), added to `figures_left_out` if given: a run
    with --out the photos' own folder, run again, draws the photos, not its figures. A broken
    link is kept, to fail as a missing photo. A file named on its own is kept, whatever it is.
    """
    paths = []
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            paths.append(path)
            continue
        found, figures = [], []
        for image in directory_images(path, recursive):
            (figures if image.suffix.lower() == ".png" and drawn_by_deepviz(image) else found).append(image)
        if figures_left_out is not None:
            figures_left_out.extend(figures)
        if not found:
            nested = not recursive and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
            hint = "; it has subdirectories: add --recursive to look in them" if nested else ""
            held = f" (only {figures_drawn(len(figures))})" if figures else ""
            raise DeepvizError(f"{path}: directory holds no images{held} ({', '.join(IMAGE_SUFFIXES)}){hint}")
        paths.extend(found)
    return paths


def figures_drawn(count: int) -> str:
    return f"{count} figure{'s' if count > 1 else ''} deepviz drew"


def directory_images(folder: Path, recursive: bool) -> list[Path]:
    """The folder's files with an image suffix, sorted, and its subfolders' if `recursive`; hidden ones left out."""
    found = []
    for root, folders, names in os.walk(folder):  # links to folders are not followed
        folders[:] = [name for name in folders if not name.startswith(".")] if recursive else []
        for name in names:
            path = Path(root, name)
            if (not name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
                    and (path.is_file() or not path.exists())):  # a broken link does not exist
                found.append(path)
    return sorted(found)


def sample_image() -> Path:
    for folder in SAMPLE_IMAGE_DIRS:
        if (folder / SAMPLE_IMAGE_NAME).is_file():
            return folder / SAMPLE_IMAGE_NAME
    raise UsageError(f"no IMAGE given and the sample photo {SAMPLE_IMAGE_NAME} is missing; pass an image path")
