#!/usr/bin/env python3
"""deepviz: show what a convolutional network sees in a photo.

Loads a network (InceptionV3 with ImageNet weights by default; any model of the
MODELS table, or a saved Keras model), runs the photo through it once, prints the
top predictions and writes a figure: the photo titled with them, then a grid of
feature maps for each chosen layer.

The pipeline, in the order it runs:
    load_image -> preprocess -> build_feature_model -> run_forward_pass
    -> summarize_layer (statistics, channel ranking) -> draw_figure -> save_figure
`main(argv)` is a thin command line on top; every step is importable.

TensorFlow, Keras and Matplotlib are imported only when a step needs them, so
`--help`, `--version` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import functools
import itertools
import json
import logging
import math
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__version__ = "0.1.0"

# --- Settings ----------------------------------------------------------------
DEFAULT_MODEL = "inception_v3"
DEFAULT_PREPROCESS = "inception"  # for a saved model of the user's own
OWN_MODEL_INPUT_SIZE = (224, 224)  # when a saved model accepts any size
OWN_MODEL_DEFAULT_LAYER_COUNT = 5
OUTPUT_KEY = "__output__"  # the model's own output, among the feature model's outputs
DEFAULT_MAX_MAPS = 64
DEFAULT_TOP = 3
DEFAULT_BATCH_SIZE = 8
DEFAULT_DPI = 100
DEFAULT_CMAP = "viridis"
DEFAULT_OUT_DIR = Path("result")
FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WEIGHTS_SUFFIXES = (".weights.h5", ".h5")
MODEL_SUFFIXES = (".keras", ".h5")
NUM_CLASSES = 1000
DOWNLOAD_TIMEOUT_SECONDS = 30  # per socket operation, so a dead network fails fast

HERE = Path(__file__).resolve().parent
CLASS_INDEX_PATH = HERE / "deepviz_data" / "imagenet_class_index.json"
SAMPLE_IMAGE_NAME = "grace_hopper.jpg"
SAMPLE_IMAGE_DIRS = (HERE / "images", HERE / "deepviz_data" / "images")  # checkout, installed

FIGURE_WIDTH_INCHES = 12.0
COLORBAR_WIDTH_RATIO = 0.02
PANEL_WIDTH_INCHES = FIGURE_WIDTH_INCHES * (1 - COLORBAR_WIDTH_RATIO) - 1.0  # about, after margins
MOSAIC_ASPECT = 4.0  # a layer's grid of tiles aims to be this many times wider than tall
TILE_GAP = 1  # pixels of background between tiles
MIN_LABEL_TILE_PIXELS = 24  # a tile's channel-index label is drawn on at least this many pixels
PHOTO_MAX_HEIGHT_INCHES = 5.0
PHOTO_DISPLAY_MAX_PIXELS = 1600  # longest side of the photo as drawn in the figure


class DeepvizError(Exception):
    """A failure to report as one message on stderr; `exit_status` 1 means runtime."""

    exit_status = 1


class UsageError(DeepvizError):
    """The command line asked for something impossible (exit status 2)."""

    exit_status = 2


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A keras.applications ImageNet classifier: what deepviz needs to run and draw it."""

    builder: str  # its constructor in keras.applications
    module: str  # the keras.applications submodule with its preprocess_input
    input_size: int  # side of its square input, in pixels
    default_layers: tuple[str, ...]  # a spread from early to late layers
    block_pattern: str  # regular expression of its block outputs, marked by --list-layers


MODELS = {
    "inception_v3": ModelSpec("InceptionV3", "inception_v3", 299,
                              ("conv2d_1", "mixed0", "mixed3", "mixed7", "mixed10"), r"mixed\d+"),
    "vgg16": ModelSpec("VGG16", "vgg16", 224,
                       ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"),
                       r"block\d_pool"),
    "vgg19": ModelSpec("VGG19", "vgg19", 224,
                       ("block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4"),
                       r"block\d_pool"),
    "resnet50": ModelSpec("ResNet50", "resnet50", 224,
                          ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out",
                           "conv5_block3_out"), r"conv\d_block\d+_out"),
    "resnet50_v2": ModelSpec("ResNet50V2", "resnet_v2", 224,
                             ("conv1_conv", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out",
                              "post_relu"), r"conv\d_block\d+_out|post_relu"),
    "xception": ModelSpec("Xception", "xception", 299,
                          ("block1_conv2_act", "add", "add_2", "add_10", "block14_sepconv2_act"),
                          r"add(_\d+)?|block14_sepconv2_act"),
    "mobilenet_v2": ModelSpec("MobileNetV2", "mobilenet_v2", 224,
                              ("Conv1_relu", "block_2_add", "block_5_add", "block_12_add", "out_relu"),
                              r"block_\d+_add|out_relu"),
    "densenet121": ModelSpec("DenseNet121", "densenet", 224,
                             ("conv1_relu", "pool2_relu", "pool3_relu", "pool4_relu", "relu"), r"pool\d_relu|relu"),
    "efficientnet_b0": ModelSpec("EfficientNetB0", "efficientnet", 224,
                                 ("stem_activation", "block2b_add", "block3b_add", "block5c_add",
                                  "top_activation"), r"block\d[a-z]_add|top_activation"),
    "convnext_tiny": ModelSpec("ConvNeXtTiny", "convnext", 224,
                               ("convnext_tiny_stem", "convnext_tiny_downsampling_block_0",
                                "convnext_tiny_downsampling_block_1", "convnext_tiny_downsampling_block_2",
                                "convnext_tiny_stage_3_block_2_gelu"),
                               r"convnext_tiny_(stem|downsampling_block_\d)"),
}


# --- Load image ---------------------------------------------------------------
def load_image(path: Path) -> Image.Image:
    """Read any image Pillow can, apply its EXIF orientation and return it as RGB.

    Animated and multi-page files give their first frame. Pillow's pixel limit
    (Image.MAX_IMAGE_PIXELS) is enforced before decoding, so a decompression bomb
    is refused without using its memory.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
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
        raise DeepvizError(
            f"{path}: refused before decoding: {error} "
            f"Shrink the image below {Image.MAX_IMAGE_PIXELS:,} pixels first."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise DeepvizError(f"{path}: not a readable image ({error})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is laid over white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = np.asarray(image, dtype=np.float64)  # 16/32-bit or float grey
        top = 255.0 if grey.max(initial=0) <= 255 else 65535.0 if grey.max() <= 65535 else grey.max()
        grey8 = np.clip(grey * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey8, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def preprocess(photo: Image.Image, network: Network) -> np.ndarray:
    """Squash the whole photo to the network's input size and scale its pixels for it.

    No cropping: a non-square photo is resized without keeping its aspect ratio, as
    keras.utils.load_img(target_size=...) does.
    """
    height, width = network.input_size
    resized = photo.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32).copy()  # (H, W, 3), a copy: preprocessing may work in place
    return np.asarray(network.preprocess(pixels), dtype=np.float32)


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


# --- Build the network --------------------------------------------------------
def import_keras():
    """Import Keras, with TensorFlow's C++ start-up logging kept off the terminal."""
    if "keras" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with file_descriptor_silenced(2):  # absl logs before TF_CPP_MIN_LOG_LEVEL applies
            import keras  # noqa: F401
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # no retracing warnings
    import keras

    return keras


@contextlib.contextmanager
def file_descriptor_silenced(descriptor: int):
    """Send what C code writes to `descriptor` to /dev/null for the duration."""
    sys.stderr.flush()
    saved = os.dup(descriptor)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
        yield
    finally:
        os.dup2(saved, descriptor)
        os.close(saved)
        os.close(devnull)


@dataclasses.dataclass
class Network:
    """A Keras model and what deepviz needs to know to run and describe it."""

    model: object  # keras.Model
    label: str  # what to call it: "InceptionV3", "my_model.keras"
    weights_label: str  # "imagenet", "untrained", a file name
    input_size: tuple[int, int]  # (height, width)
    preprocess: Callable[[np.ndarray], np.ndarray]
    class_names: list[str] | None  # None: no predictions, for the reason below
    no_predictions_reason: str = ""
    trained: bool = True
    default_layers: tuple[str, ...] = ()
    block_pattern: str = ""  # regular expression of the layer paths --list-layers marks


@dataclasses.dataclass(frozen=True)
class NetworkChoice:
    """What the command line asked for: a built-in model name or a saved model's path, and so on."""

    model: str = DEFAULT_MODEL
    weights: str = "imagenet"
    preprocess: str | None = None  # a key of PREPROCESSING; None: the built-in model's own
    labels: str | None = None  # a file of class names, one per line


def build_network(choice: NetworkChoice = NetworkChoice()) -> Network:
    """The network `choice` names, built once per process for each choice (files reloaded if changed)."""
    stamps = tuple(Path(p).stat().st_mtime_ns for p in (choice.model, choice.weights, choice.labels or "")
                   if Path(p).is_file())
    return build_network_once(choice, stamps)


@functools.lru_cache(maxsize=4)
def build_network_once(choice: NetworkChoice, stamps: tuple) -> Network:
    if choice.model in MODELS:
        return build_application(choice)
    return load_own_model(choice)


def build_application(choice: NetworkChoice) -> Network:
    """A keras.applications model with ImageNet, random or file weights."""
    spec = MODELS[choice.model]
    keras = import_keras()
    preprocess = (PREPROCESSING[choice.preprocess] if choice.preprocess
                  else getattr(keras.applications, spec.module).preprocess_input)
    if choice.weights == "imagenet":
        model, include_top, trained, label = build_imagenet_model(spec), True, True, "imagenet"
    elif choice.weights == "none":
        model, include_top, trained, label = build_model(spec, include_top=True), True, False, "untrained"
    else:
        model, include_top = build_model_from_file(spec, Path(choice.weights))
        trained, label = True, Path(choice.weights).name
    return Network(
        model=model,
        label=spec.builder,
        weights_label=label,
        input_size=(spec.input_size, spec.input_size),
        preprocess=preprocess,
        class_names=load_class_names() if include_top else None,
        no_predictions_reason="" if include_top else f"weights {label} have no classifier head",
        trained=trained,
        default_layers=spec.default_layers,
        block_pattern=spec.block_pattern,
    )


def build_model(spec: ModelSpec, include_top: bool, weights=None):
    """Keras 3 numbers layer names per process, so each build clears the session first:
    layer names are those of a first build (conv2d, conv2d_1, ...), whatever came before.
    """
    keras = import_keras()
    keras.backend.clear_session()
    builder = getattr(keras.applications, spec.builder)
    return builder(weights=weights, include_top=include_top, input_shape=(spec.input_size, spec.input_size, 3))


def build_imagenet_model(spec: ModelSpec):
    """Keras's own download and cache of the ImageNet weights; a clear error offline."""
    import socket

    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras prints download progress
            return build_model(spec, include_top=True, weights="imagenet")
    except Exception as error:  # Keras raises a bare Exception for a failed fetch
        if "URL fetch failure" not in str(error) and not isinstance(error, OSError):
            raise
        raise DeepvizError(download_failure_message(spec, error)) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def download_failure_message(spec: ModelSpec, error: Exception) -> str:
    found = re.search(r"https?://\S+?(?=:?\s|$)", str(error))
    url = found.group(0).rstrip(":") if found else f"the {spec.builder} ImageNet weights"
    reason = str(error.__context__ or error).strip()
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    return (
        f"could not download the ImageNet weights from {url} ({reason}).\n"
        f"Keras caches them in {cache} once fetched. Connect to the internet and retry, "
        f"or pass a local weights file: --weights PATH (.h5 or .weights.h5)."
    )


def build_model_from_file(spec: ModelSpec, path: Path):
    """(model, has classifier head) from a Keras weights file, with the head or without it."""
    check_weights_file(path)
    include_top = weights_have_classifier(path)
    model = build_model(spec, include_top=include_top)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns about each skipped sub-container
            model.load_weights(str(path))
    except (ValueError, KeyError, TypeError, OSError) as error:
        head = "with" if include_top else "without"
        reason = str(error).strip().splitlines()[0]
        raise DeepvizError(
            f"{path}: not {spec.builder} weights; Keras could not load it into {spec.builder} {head} the "
            f"classifier head ({reason}). Pass weights saved from keras.applications.{spec.builder}, "
            f"or --weights imagenet."
        ) from None
    return model, include_top


def weights_have_classifier(path: Path) -> bool:
    """Whether a Keras weights file holds an ImageNet classifier head (a Dense layer, "predictions")."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            if "layers" in file:  # Keras 3 .weights.h5: one group per layer, named after its class
                return "dense" in file["layers"]
            group = file["model_weights"] if "model_weights" in file else file  # legacy .h5: layer names
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("layer_names", [])]
            return "predictions" in names
    except OSError as error:
        raise DeepvizError(f"--weights {path}: unreadable HDF5 file ({error})") from None


def check_weights_file(path: Path) -> None:
    import h5py

    if not path.name.endswith(WEIGHTS_SUFFIXES):
        raise UsageError(
            f"--weights {path}: expected 'imagenet', 'none' or a Keras weights file "
            f"ending in {' or '.join(WEIGHTS_SUFFIXES)}"
        )
    check_readable_file(path, "--weights")
    if not h5py.is_hdf5(path):
        raise DeepvizError(
            f"--weights {path}: not an HDF5 file, so not Keras weights; "
            f"pass a .h5 or .weights.h5 file saved by Keras"
        )


def check_readable_file(path: Path, option: str) -> None:
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "no such file"
        raise DeepvizError(f"{option} {path}: {reason}; check the path")
    if not os.access(path, os.R_OK):
        raise DeepvizError(f"{option} {path}: permission denied; make the file readable")


def load_own_model(choice: NetworkChoice) -> Network:
    """A saved Keras model (.keras, or a full-model .h5) with the user's preprocessing and labels."""
    path = Path(choice.model)
    check_readable_file(path, "--model")
    keras = import_keras()
    keras.backend.clear_session()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a file it cannot read
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DeepvizError(f"--model {path}: Keras could not load it as a saved model ({reason})") from None
    input_size = own_model_input_size(model, path)
    class_names, reason = own_model_classes(model, path, choice.labels)
    paths = layer_paths(model)
    spatial = [p for p, layer in paths.items() if len(output_shape(layer)) == 3 and not is_input_layer(layer)]
    picks = np.linspace(0, len(spatial) - 1, min(OWN_MODEL_DEFAULT_LAYER_COUNT, len(spatial))).round()
    return Network(
        model=model,
        label=path.name,
        weights_label=path.name,
        input_size=input_size,
        preprocess=PREPROCESSING[choice.preprocess or DEFAULT_PREPROCESS],
        class_names=class_names,
        no_predictions_reason=reason,
        default_layers=tuple(dict.fromkeys(spatial[int(i)] for i in picks)),
    )


def own_model_input_size(model, path: Path) -> tuple[int, int]:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise DeepvizError(f"--model {path}: expected one image input and one output, "
                           f"found {len(model.inputs)} inputs and {len(model.outputs)} outputs")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise DeepvizError(f"--model {path}: expected an input of RGB images (batch, height, width, 3), "
                           f"found {shape}")
    height, width = shape[1:3]
    return (height, width) if height and width else OWN_MODEL_INPUT_SIZE


def own_model_classes(model, path: Path, labels: str | None):
    """(class names or None, why there are no predictions) for a saved model's output."""
    shape = tuple(model.outputs[0].shape[1:])
    names = read_labels(Path(labels)) if labels else None
    if len(shape) != 1 or shape[0] < 2:
        return None, f"the output of {path.name}, shape {shape}, is not a class vector"
    if names is not None:
        if len(names) != shape[0]:
            raise DeepvizError(f"--labels {labels}: {len(names)} names, but {path.name} has {shape[0]} classes; "
                               "give one name per class, one per line")
        return names, ""
    if getattr(getattr(model.layers[-1], "activation", None), "__name__", "") != "softmax":
        return None, (f"the output of {path.name}, shape {shape}, does not end in a softmax; "
                      "pass --labels FILE if it is a class vector")
    return [f"class_{i}" for i in range(shape[0])], ""


def read_labels(path: Path) -> list[str]:
    check_readable_file(path, "--labels")
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    return [line for line in lines if line]


# --- Choose layers --------------------------------------------------------------
def layer_paths(model, prefix: str = "") -> dict:
    """Every layer by path, in order; layers inside a nested model are "outer/inner"."""
    keras = import_keras()
    paths = {}
    for layer in model.layers:
        paths[prefix + layer.name] = layer
        if isinstance(layer, keras.Model):
            paths.update(layer_paths(layer, f"{prefix}{layer.name}/"))
    return paths


def output_shape(layer) -> tuple:
    """A layer's output shape without the batch axis, () if it has no single output."""
    try:
        return tuple(layer.output.shape[1:])
    except (AttributeError, ValueError):  # a layer used in several places has no single output
        return ()


def is_input_layer(layer) -> bool:
    return type(layer).__name__ == "InputLayer"


def check_layer_names(network: Network, names: Sequence[str]) -> list[str]:
    """Return `names` without repeats, or raise UsageError for the first unknown one."""
    known = list(layer_paths(network.model))
    for name in names:
        if name not in known:
            raise UsageError(unknown_layer_message(network, name, known))
    return list(dict.fromkeys(names))


def unknown_layer_message(network: Network, name: str, known: Sequence[str]) -> str:
    by_case = [layer for layer in known if layer.lower() == name.lower()]
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
    suggestions = list(dict.fromkeys(by_case + close))
    message = f"{network.label} has no layer {name!r}"
    if suggestions:
        message += "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
    if Path(name).exists():
        message += f" ({name!r} is a file: put images before --layers, or end the layer list with --)"
    return message + f" Run `deepviz --list-layers` to see all {len(known)} layers."


def describe_layers(network: Network) -> list[str]:
    """One line per layer: index, path, type, output shape; block outputs marked."""
    paths = layer_paths(network.model)
    width = max(26, *map(len, paths))
    lines = []
    for index, (path, layer) in enumerate(paths.items()):
        marked = network.block_pattern and re.fullmatch(network.block_pattern, path)
        mark = "  <- block output" if marked else ""
        lines.append(f"{index:4d}  {path:<{width}} {type(layer).__name__:<24} {output_shape(layer)}{mark}")
    return lines


# --- One forward pass -----------------------------------------------------------
def build_feature_model(network: Network, paths: Sequence[str]):
    """One Keras model whose outputs are {layer path: maps, OUTPUT_KEY: the model's output}."""
    return feature_model_for(network.model, paths)


def feature_model_for(model, paths: Sequence[str]):
    """A model with `model`'s input and outputs {path: maps, OUTPUT_KEY: `model`'s output}.

    A layer inside a nested model ("outer/inner") lives in the nested model's own graph,
    so it cannot simply be an output of the outer one ("Graph disconnected"). The model
    is re-traced instead, its layers (and so their weights) reused, nested models inlined:
    every map then comes from one graph and the same single forward pass.
    """
    keras = import_keras()
    if not any("/" in path for path in paths) and not isinstance(model, keras.Sequential):
        outputs = {path: model.get_layer(path).output for path in paths}
        outputs[OUTPUT_KEY] = model.output
        return keras.Model(model.input, outputs)
    inputs = keras.Input(shape=model.input_shape[1:])
    recorded = {}
    result = trace_layers(model, inputs, set(paths), recorded)
    outputs = {path: recorded.get(path, inputs) for path in paths}  # input layers are never called
    outputs[OUTPUT_KEY] = result
    return keras.Model(inputs, outputs)


def trace_layers(model, inputs, wanted: set, recorded: dict, prefix: str = ""):
    """Call `model`'s layers on `inputs`, inlining nested models; record the `wanted` paths' outputs."""
    keras = import_keras()

    def call_layer(layer, *args, **kwargs):
        path = prefix + layer.name
        if isinstance(layer, keras.Model) and any(w.startswith(path + "/") for w in wanted):
            result = trace_layers(layer, args[0], wanted, recorded, path + "/")
        else:
            result = layer(*args, **kwargs)
        if path in wanted:
            recorded[path] = result
        return result

    if isinstance(model, keras.Sequential):  # its layers, one after another
        result = inputs
        for layer in model.layers:
            result = call_layer(layer, result)
        return result
    clone = keras.models.clone_model(
        model, input_tensors=inputs, clone_function=lambda layer: layer, call_function=call_layer
    )
    return clone.output


def run_forward_pass(feature_model, batch: np.ndarray, compiled: bool = False) -> dict[str, np.ndarray]:
    """Maps of every chosen layer (and the model's output) for a batch, as NumPy arrays.

    `compiled` runs Keras's predict step (a traced graph on TensorFlow, jit-compiled on JAX):
    faster and leaner for batches than calling the model eagerly.
    """
    if compiled:
        return feature_model.predict_on_batch(batch)
    keras = import_keras()
    outputs = feature_model(batch, training=False)
    return {name: keras.ops.convert_to_numpy(maps) for name, maps in outputs.items()}


# --- Grad-CAM -------------------------------------------------------------------
def build_cam_head(network: Network, path: str):
    """A model from the maps of layer `path` to the network's output, for Grad-CAM's gradients."""
    keras = import_keras()
    feature_model = feature_model_for(network.model, [path])
    try:
        return keras.Model(feature_model.output[path], feature_model.output[OUTPUT_KEY])
    except ValueError:
        raise UsageError(
            f"--cam-layer {path}: the output does not depend on this layer alone (a connection "
            f"goes around it); choose a block output, such as {network.default_layers[-1]}"
        ) from None


def input_gradient(model, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Gradient of sum(model(inputs) * weights) with respect to `inputs`.

    The one place where each Keras backend needs its own few lines.
    """
    keras = import_keras()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            score = keras.ops.sum(model(tensor, training=False) * weights)
        return keras.ops.convert_to_numpy(tape.gradient(score, tensor))
    if backend == "torch":
        import torch

        tensor = torch.tensor(inputs, requires_grad=True)
        keras.ops.sum(model(tensor, training=False) * torch.as_tensor(weights)).backward()
        return tensor.grad.numpy()
    if backend == "jax":
        import jax

        values = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])

        def score(tensor):
            outputs, _ = model.stateless_call(*values, tensor, training=False)
            return keras.ops.sum(outputs * weights)

        return np.asarray(jax.grad(score)(inputs))
    raise DeepvizError(f"--cam: no gradient code for the Keras backend {backend!r}; use tensorflow, jax or torch")


def grad_cam(head, maps: np.ndarray, class_indices: Sequence[int]) -> np.ndarray:
    """Grad-CAM heatmaps (K, h, w) in [0, 1] of one photo's maps (h, w, k), one per class.

    The classes go through the head together, as one batch: one backward pass for all.
    """
    batch = np.repeat(maps[None].astype(np.float32), len(class_indices), axis=0)  # (K, h, w, k)
    output_size = head.output.shape[-1]
    one_hot = np.eye(output_size, dtype=np.float32)[list(class_indices)]  # (K, classes)
    gradients = input_gradient(head, batch, one_hot)  # (K, h, w, k)
    channel_weights = gradients.mean(axis=(1, 2))  # (K, k): how much each channel matters to each class
    heatmaps = np.maximum(np.einsum("hwk,ck->chw", maps, channel_weights), 0)
    peaks = heatmaps.max(axis=(1, 2), keepdims=True)
    return heatmaps / np.where(peaks > 0, peaks, 1.0)


# --- Predictions ----------------------------------------------------------------
def load_class_names(path: Path = CLASS_INDEX_PATH) -> list[str]:
    """ImageNet class names by index, from the class index shipped with deepviz."""
    index = json.loads(path.read_text(encoding="utf-8"))
    return [index[str(i)][1] for i in range(len(index))]


def top_classes(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k most probable classes, most probable first."""
    return np.argsort(-probabilities, kind="stable")[:k]


def top_predictions(probabilities: np.ndarray, class_names: Sequence[str], k: int):
    """[(class name, probability)] for the k most probable classes, most probable first."""
    return [(class_names[i], float(probabilities[i])) for i in top_classes(probabilities, k)]


def format_predictions(predictions) -> list[str]:
    """`1. golden_retriever  86.55%`, one line per class, names and percentages aligned."""
    width = max(len(name) for name, _ in predictions)
    percents = [f"{probability * 100:.2f}%" for _, probability in predictions]
    percent_width = max(map(len, percents))
    return [
        f"{rank}. {name:<{width}}  {percent:>{percent_width}}"
        for rank, ((name, _), percent) in enumerate(zip(predictions, percents), start=1)
    ]


# --- Rank channels and summarise a layer ----------------------------------------
def rank_by_mean(maps: np.ndarray) -> np.ndarray:
    return np.argsort(-maps.mean(axis=(0, 1)), kind="stable")


def rank_by_max(maps: np.ndarray) -> np.ndarray:
    return np.argsort(-maps.max(axis=(0, 1)), kind="stable")


def rank_by_index(maps: np.ndarray) -> np.ndarray:
    return np.arange(maps.shape[-1])


RANKINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": rank_by_mean,
    "max": rank_by_max,
    "index": rank_by_index,
}
RANKING_PHRASES = {
    "mean": "ranked by mean activation",
    "max": "ranked by max activation",
    "index": "in index order",
    "chosen": "as chosen with --channels",
}


@dataclasses.dataclass
class LayerSummary:
    """What is printed and drawn for one layer of one image."""

    name: str
    shape: tuple  # per image, e.g. (17, 17, 768) or (2048,)
    minimum: float
    mean: float
    maximum: float
    zeros: float  # fraction of exactly-zero activations
    dead: int  # channels constant over the whole map (spatial layers only)
    channels: np.ndarray  # indices drawn, in drawing order
    maps: np.ndarray  # (H, W, len(channels)) maps drawn, or (C,) values of a vector layer
    ranking: str  # a key of RANKING_PHRASES
    channel_means: np.ndarray  # of the drawn channels, in drawing order
    channel_maxima: np.ndarray
    summary_image: np.ndarray | None = None  # (H, W, 3) in [0, 1]: the whole layer at a glance

    @property
    def is_spatial(self) -> bool:
        return len(self.shape) == 3


def summarize_layer(name: str, maps: np.ndarray, max_maps: int | None, ranking: str,
                    chosen: Sequence[int] | None = None, summary: str | None = None) -> LayerSummary:
    """Statistics of one image's layer output and the channels to draw, in rank order.

    `maps` is (H, W, C) for a convolutional layer or (C,) for a vector layer. `chosen`
    channels, when given, are drawn in their order instead of ranked ones. Only the drawn
    channels are kept, so memory does not grow with the layer size.
    """
    maps = np.asarray(maps, dtype=np.float32)
    spatial = maps.ndim == 3
    if spatial:
        flat = maps.reshape(-1, maps.shape[-1])
        dead = int(np.count_nonzero(flat.max(axis=0) == flat.min(axis=0)))
        if chosen is not None:
            channels, ranking = np.asarray(chosen), "chosen"
        else:
            order = RANKINGS[ranking](maps)
            channels = order if max_maps is None else order[:max_maps]
        kept = maps[:, :, channels]  # (H, W, n)
        means, maxima = kept.mean(axis=(0, 1)), kept.max(axis=(0, 1))
    else:
        dead = 0
        channels = np.arange(maps.shape[-1])
        kept = means = maxima = maps
    return LayerSummary(
        name=name,
        shape=tuple(maps.shape),
        minimum=float(maps.min()),
        mean=float(maps.mean(dtype=np.float64)),
        maximum=float(maps.max()),
        zeros=float(np.count_nonzero(maps == 0) / maps.size),
        dead=dead,
        channels=np.asarray(channels),
        maps=kept,
        ranking=ranking,
        channel_means=means,
        channel_maxima=maxima,
        summary_image=SUMMARIES[summary](maps) if summary and spatial else None,
    )


def principal_components_image(maps: np.ndarray) -> np.ndarray:
    """(H, W, 3) in [0, 1]: each pixel's first three principal components over the channels.

    A pixel's colour says which mixture of channels fires there. Each component is
    scaled to [0, 1] on its own; its sign is fixed so that its largest loading is positive.
    """
    height, width, channels = maps.shape
    pixels = maps.reshape(-1, channels).astype(np.float64)
    pixels -= pixels.mean(axis=0)
    components = np.zeros((pixels.shape[0], 3))
    if np.any(pixels):
        left, strengths, loadings = np.linalg.svd(pixels, full_matrices=False)  # loadings: (k, C)
        count = min(3, int(np.count_nonzero(strengths > 1e-6 * strengths[0])))  # no components of mere noise
        signs = np.sign(loadings[np.arange(count), np.abs(loadings[:count]).argmax(axis=1)])
        components[:, :count] = left[:, :count] * strengths[:count] * signs
    low, high = components.min(axis=0), components.max(axis=0)
    scaled = (components - low) / np.where(high > low, high - low, 1.0)
    return scaled.reshape(height, width, 3)


SUMMARIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"pca": principal_components_image}


def format_layer_line(summary: LayerSummary) -> str:
    line = (
        f"{summary.name} {summary.shape}: min {summary.minimum:.4g} mean {summary.mean:.4g} "
        f"max {summary.maximum:.4g} zeros {summary.zeros * 100:.1f}%"
    )
    return line + (f" dead {summary.dead}" if summary.is_spatial else "")


def channel_phrase(summary: LayerSummary) -> str:
    total = summary.shape[-1]
    drawn = len(summary.channels)
    if drawn == total and summary.ranking == "index":
        return f"all {total} channels"
    if drawn == total:
        return f"all {total} channels, {RANKING_PHRASES[summary.ranking]}"
    return f"{drawn} of {total} channels, {RANKING_PHRASES[summary.ranking]}"


# --- Scale tiles ----------------------------------------------------------------
@dataclasses.dataclass
class ScaledTiles:
    tiles: np.ndarray  # (H, W, n), ready for imshow with vmin/vmax below
    vmin: float
    vmax: float
    colorbar_label: str
    colorbar_ticks: dict  # {value: label}; empty for a plain numeric colour bar


def scale_each_channel(maps: np.ndarray, layer: LayerSummary) -> ScaledTiles:
    """Each tile from its own minimum (0) to its own maximum (1); a constant tile is 0."""
    low = maps.min(axis=(0, 1), keepdims=True)
    span = maps.max(axis=(0, 1), keepdims=True) - low
    tiles = (maps - low) / np.where(span > 0, span, 1.0)
    return ScaledTiles(tiles, 0.0, 1.0, "each tile: its own min to max", {0.0: "tile min", 1.0: "tile max"})


def scale_whole_layer(maps: np.ndarray, layer: LayerSummary) -> ScaledTiles:
    """All tiles on one scale: the layer's minimum to maximum activation."""
    vmax = layer.maximum if layer.maximum > layer.minimum else layer.minimum + 1.0
    return ScaledTiles(maps, layer.minimum, vmax, "activation (one scale for the layer)", {})


NORMALISATIONS: dict[str, Callable[[np.ndarray, LayerSummary], ScaledTiles]] = {
    "channel": scale_each_channel,
    "layer": scale_whole_layer,
}
NORMALISATION_PHRASES = {"channel": "each tile scaled to its own range", "layer": "one scale for the layer"}


def compose_mosaic(tiles: np.ndarray, columns: int) -> np.ma.MaskedArray:
    """Lay (H, W, n) tiles out row by row in one 2-D array; gaps and empty slots masked."""
    height, width, count = tiles.shape
    rows = math.ceil(count / columns)
    slots = np.zeros((rows * columns, height + TILE_GAP, width + TILE_GAP), dtype=np.float32)
    empty = np.ones_like(slots, dtype=bool)
    slots[:count, :height, :width] = np.moveaxis(tiles, -1, 0)
    empty[:count, :height, :width] = False
    # (rows, columns, H+gap, W+gap) -> (rows, H+gap, columns, W+gap) -> one image
    shape = (rows * (height + TILE_GAP), columns * (width + TILE_GAP))
    mosaic = slots.reshape(rows, columns, height + TILE_GAP, width + TILE_GAP).transpose(0, 2, 1, 3)
    mask = empty.reshape(rows, columns, height + TILE_GAP, width + TILE_GAP).transpose(0, 2, 1, 3)
    cropped = (slice(0, shape[0] - TILE_GAP), slice(0, shape[1] - TILE_GAP))
    return np.ma.MaskedArray(mosaic.reshape(shape)[cropped], mask=mask.reshape(shape)[cropped])


def mosaic_columns(count: int, height: int, width: int) -> int:
    """Columns that make the grid about MOSAIC_ASPECT times wider than tall."""
    columns = max(1, math.ceil(math.sqrt(count * MOSAIC_ASPECT * height / width)))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    return math.ceil(count / rows)


# --- Draw -------------------------------------------------------------------------
@dataclasses.dataclass
class FigureStyle:
    """What the figure looks like, beyond the layers it shows."""

    photo_title: str
    norm: str  # a key of NORMALISATIONS
    cmap: str
    dpi: int
    cam_layer: str = ""


def photo_title(image_name: str, photo: Image.Image, network: Network, predictions) -> str:
    size = f"{image_name} ({photo.width}×{photo.height})"
    if network.class_names is None:
        return f"{size}\npredictions unavailable: {network.no_predictions_reason}"
    ranked = "   ".join(f"{rank}. {name} {p * 100:.1f}%" for rank, (name, p) in enumerate(predictions, 1))
    if not network.trained:
        return f"{size}\nuntrained network (random weights): {ranked}"
    return f"{size}\n{ranked}"


def draw_figure(photo: Image.Image, layers: Sequence[LayerSummary], style: FigureStyle, cams=None):
    """A Matplotlib Figure: the photo on top, its Grad-CAM heatmaps if any, then one panel per layer.

    `cams` is a list of (class name, probability, heatmap in [0, 1]).
    """
    from matplotlib.figure import Figure

    display = photo.copy()
    display.thumbnail((PHOTO_DISPLAY_MAX_PIXELS, PHOTO_DISPLAY_MAX_PIXELS))
    photo_height = min(PHOTO_MAX_HEIGHT_INCHES, PANEL_WIDTH_INCHES * display.height / display.width)
    mosaics = [layer_mosaic(layer, style.norm) for layer in layers]
    heights = [max(photo_height, 0.3) + 0.8] + [panel_height(m) for m in mosaics]
    if cams:
        cam_height = min(PHOTO_MAX_HEIGHT_INCHES, PANEL_WIDTH_INCHES / len(cams) * display.height / display.width)
        heights.insert(1, max(cam_height, 0.3) + 0.6)

    figure = Figure(figsize=(FIGURE_WIDTH_INCHES, sum(heights)), layout="constrained")
    grid = figure.add_gridspec(
        len(heights), 2, height_ratios=heights, width_ratios=[1 - COLORBAR_WIDTH_RATIO, COLORBAR_WIDTH_RATIO]
    )
    photo_axes = figure.add_subplot(grid[0, :])
    photo_axes.imshow(np.asarray(display), aspect="equal", interpolation="antialiased")
    photo_axes.set_title(style.photo_title, fontsize=11)
    photo_axes.set_axis_off()
    if cams:
        cam_grid = grid[1, :].subgridspec(1, len(cams))
        for column, cam in enumerate(cams):
            draw_cam(figure.add_subplot(cam_grid[0, column]), display, cam, style.cam_layer)
    for row, (layer, mosaic) in enumerate(zip(layers, mosaics), start=2 if cams else 1):
        axes, colorbar_axes = figure.add_subplot(grid[row, 0]), figure.add_subplot(grid[row, 1])
        if layer.is_spatial:
            draw_tiles(figure, axes, colorbar_axes, layer, mosaic, style)
        else:
            draw_vector(axes, colorbar_axes, layer)
    return figure


def draw_cam(axes, display: Image.Image, cam, layer: str) -> None:
    """The photo with one class's Grad-CAM heatmap over it, stretched to the photo's size."""
    name, probability, heatmap = cam
    stretched = Image.fromarray(heatmap.astype(np.float32), mode="F").resize(display.size, Image.Resampling.BILINEAR)
    axes.imshow(np.asarray(display), aspect="equal")
    axes.imshow(np.asarray(stretched), cmap="jet", alpha=0.45, vmin=0, vmax=1, aspect="equal",
                extent=(-0.5, display.width - 0.5, display.height - 0.5, -0.5))
    axes.set_title(f"Grad-CAM ({layer}): {name} {probability * 100:.1f}%", fontsize=9)
    axes.set_axis_off()


def layer_mosaic(layer: LayerSummary, norm: str):
    """(mosaic, scaled tiles, columns) for a spatial layer; None for a vector layer."""
    if not layer.is_spatial:
        return None
    scaled = NORMALISATIONS[norm](layer.maps, layer)
    tiles = scaled.tiles
    if layer.summary_image is not None:  # an empty first slot, where the summary is laid
        tiles = np.concatenate([np.full(tiles.shape[:2] + (1,), scaled.vmin, tiles.dtype), tiles], axis=-1)
    height, width, count = tiles.shape
    columns = mosaic_columns(count, height, width)
    return compose_mosaic(tiles, columns), scaled, columns


def panel_height(mosaic) -> float:
    """Inches for a layer's panel: its mosaic at the panel's width, plus the title."""
    title_space = 0.75
    if mosaic is None:
        return 2.2 + title_space
    image = mosaic[0]
    return PANEL_WIDTH_INCHES * image.shape[0] / image.shape[1] + title_space


def draw_tiles(figure, axes, colorbar_axes, layer: LayerSummary, mosaic, style: FigureStyle) -> None:
    """The layer's tiles as one image, each tile labelled with its channel index."""
    import matplotlib

    image, scaled, columns = mosaic
    colormap = matplotlib.colormaps[style.cmap].with_extremes(bad="white")
    artist = axes.imshow(
        image, cmap=colormap, vmin=scaled.vmin, vmax=scaled.vmax, aspect="equal", interpolation="nearest"
    )
    axes.set_axis_off()
    labels = [str(channel) for channel in layer.channels]
    summary_note = ""
    if layer.summary_image is not None:
        draw_summary_tile(axes, artist, layer.summary_image, image.shape)
        labels.insert(0, "PCA")
        summary_note = "\nfirst tile: the first 3 principal components of all channels, as red, green, blue"
    axes.set_title(
        f"{layer.name} {layer.shape}: {channel_phrase(layer)}; "
        f"{NORMALISATION_PHRASES[style.norm]}; {layer.dead} dead (constant) channels{summary_note}",
        fontsize=10,
    )
    tile_pixels = PANEL_WIDTH_INCHES * style.dpi / columns  # about how wide a tile comes out
    label_tiles(axes, artist, labels, columns, scaled.tiles.shape[:2], tile_pixels)
    colorbar = figure.colorbar(artist, cax=colorbar_axes)
    colorbar.set_label(scaled.colorbar_label, fontsize=8)
    if scaled.colorbar_ticks:
        colorbar.set_ticks(list(scaled.colorbar_ticks), labels=list(scaled.colorbar_ticks.values()))
    colorbar.ax.tick_params(labelsize=7)


def draw_summary_tile(axes, image, summary_image: np.ndarray, mosaic_shape: tuple) -> None:
    """Lay the (H, W, 3) summary over the mosaic's first slot, in its own colours."""
    height, width, _ = summary_image.shape
    overlay = np.zeros(mosaic_shape + (4,))
    overlay[:height, :width, :3] = summary_image
    overlay[:height, :width, 3] = 1.0
    axes.imshow(overlay, extent=image.get_extent(), interpolation="nearest", zorder=image.get_zorder() + 0.5)


def label_tiles(axes, image, channels: Sequence, columns: int, tile_shape: tuple, tile_pixels: float) -> None:
    """Mark each tile with its channel index: one RGBA label layer drawn over the tiles.

    Thousands of Matplotlib Text objects take seconds to render; the labels are drawn
    with Pillow into one image instead, at about the tiles' output resolution, and laid
    over the mosaic with the same extent.
    """
    labels = render_tile_labels(channels, columns, tile_shape, tile_pixels)
    axes.imshow(labels, extent=image.get_extent(), interpolation="antialiased", zorder=image.get_zorder() + 1)


def render_tile_labels(channels: Sequence, columns: int, tile_shape: tuple, tile_pixels: float) -> np.ndarray:
    """RGBA labels, (rows*(H+gap)-gap)*scale x (columns*(W+gap)-gap)*scale, transparent elsewhere."""
    from PIL import ImageDraw, ImageFont

    height, width = tile_shape
    scale = max(1, math.ceil(max(tile_pixels, MIN_LABEL_TILE_PIXELS) / width))  # label pixels per map pixel
    rows = math.ceil(len(channels) / columns)
    size = (columns * (width + TILE_GAP) - TILE_GAP) * scale, (rows * (height + TILE_GAP) - TILE_GAP) * scale
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=int(np.clip(width * scale * 0.2, 9, 18)))
    for slot, channel in enumerate(channels):
        row, column = divmod(slot, columns)
        corner = (column * (width + TILE_GAP) * scale, row * (height + TILE_GAP) * scale)
        box = draw.textbbox(corner, str(channel), font=font, anchor="lt")
        draw.rectangle((corner[0], corner[1], box[2] + 1, box[3] + 1), fill=(0, 0, 0, 140))
        draw.text((corner[0] + 1, corner[1] + 1), str(channel), font=font, fill=(255, 255, 255, 255), anchor="lt")
    return np.asarray(canvas)


def draw_vector(axes, colorbar_axes, layer: LayerSummary) -> None:
    """A layer without spatial maps, shape (C,): one bar per channel value."""
    values = layer.maps
    axes.vlines(np.arange(len(values)), 0, values, linewidth=max(0.2, min(1.5, 300 / len(values))))
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.set_xlim(-0.5, len(values) - 0.5)
    axes.set_xlabel("channel", fontsize=8)
    axes.set_ylabel("activation", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.set_title(f"{layer.name} {layer.shape}: all {len(values)} values (no spatial maps)", fontsize=10)
    colorbar_axes.set_axis_off()


# --- Save -------------------------------------------------------------------------
def save_figure(figure, path: Path, dpi: int) -> None:
    file_format = path.suffix.lower().lstrip(".")
    write_atomically(path, lambda stream: figure.savefig(stream, format=file_format, dpi=dpi))


def write_atomically(path: Path, write: Callable) -> None:
    """Call write(binary stream) on a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
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


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- Inputs and outputs -----------------------------------------------------------
def expand_inputs(inputs: Sequence[str], recursive: bool) -> list[Path]:
    """Image paths from files and directories (a directory gives its images, sorted)."""
    paths = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DeepvizError(f"{path}: directory holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        else:
            paths.append(path)
    return paths


def sample_image() -> Path:
    for folder in SAMPLE_IMAGE_DIRS:
        if (folder / SAMPLE_IMAGE_NAME).is_file():
            return folder / SAMPLE_IMAGE_NAME
    raise UsageError(f"no IMAGE given and the sample photo {SAMPLE_IMAGE_NAME} is missing; pass an image path")


def figure_paths(images: Sequence[Path], out: str | None) -> list[Path]:
    """Where each image's figure goes; two images with one stem get distinct names."""
    if out is not None and not is_directory_target(out):
        if len(images) > 1:
            raise UsageError(f"--out {out} names one file but {len(images)} images were given; pass a directory")
        return [Path(out)]
    folder = Path(out) if out is not None else DEFAULT_OUT_DIR
    paths, taken = [], set()
    for image in images:
        name, number = f"{image.stem}.png", 2
        while name in taken:
            name, number = f"{image.stem}-{number}.png", number + 1
        taken.add(name)
        paths.append(folder / name)
    return paths


def is_directory_target(out: str) -> bool:
    return Path(out).is_dir() or out.endswith(("/", os.sep)) or not Path(out).suffix


def check_out_path(out: str | None) -> None:
    if out is None or is_directory_target(out):
        return
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise UsageError(
            f"--out {out}: unsupported figure format '.{suffix}'; use one of "
            + ", ".join(f".{f}" for f in FIGURE_FORMATS)
        )


# --- Command line -----------------------------------------------------------------
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
    return channels


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it or there is none to say."""

    def _get_help_string(self, action):
        if "(default:" in (action.help or "") or action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepviz",
        description=(
            "Show what a convolutional network (InceptionV3 by default) sees in a photo: print its "
            "top predictions and draw the feature maps of chosen layers, from one forward pass. "
            "Each photo is resized to the network's input size (299x299 for InceptionV3) without "
            "cropping (squashed if it is not square); the figure shows it at its own aspect ratio."
        ),
        epilog="Exit status: 0 done, 1 runtime failure (download, unreadable input, write error), "
        "2 usage error, 130 interrupted.",
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
        f"(default: a built-in model's own; '{DEFAULT_PREPROCESS}' for a saved model)",
    )
    parser.add_argument("--labels", metavar="FILE",
                        help="class names for a saved model's output, one per line (default: class_0, class_1, ...)")
    parser.add_argument("--top", type=positive_int(1, NUM_CLASSES), default=DEFAULT_TOP, metavar="K",
                        help=f"how many predictions to print (1 to {NUM_CLASSES})")
    parser.add_argument("--max-maps", type=max_maps_value, default=DEFAULT_MAX_MAPS, metavar="N|all",
                        help="channels drawn per layer, the highest-ranked first")
    parser.add_argument("--rank", choices=list(RANKINGS), default="mean",
                        help="order of channels: by mean or max activation, or by channel index")
    parser.add_argument("--norm", choices=list(NORMALISATIONS), default="channel",
                        help="tile scaling: 'channel' (each tile its own min to max) or 'layer' (one scale per layer)")
    parser.add_argument("--cmap", default=DEFAULT_CMAP, help="any Matplotlib colormap name")
    parser.add_argument("--dpi", type=positive_int(10, 1200), default=DEFAULT_DPI,
                        help="figure resolution in dots per inch (10 to 1200)")
    parser.add_argument("--out", metavar="PATH",
                        help=f"figure file (.{', .'.join(FIGURE_FORMATS)}) or directory "
                        f"(default: {DEFAULT_OUT_DIR}/<image stem>.png)")
    parser.add_argument("--recursive", action="store_true", help="look for images in subdirectories too")
    parser.add_argument("--batch-size", type=positive_int(1, 1024), default=DEFAULT_BATCH_SIZE, metavar="N",
                        help="images per forward pass")
    parser.add_argument("--channels", type=channel_list, metavar="I,J,...",
                        help="draw exactly these channels, in this order, for every chosen layer "
                        "(instead of the top-ranked ones)")
    parser.add_argument("--summary", choices=list(SUMMARIES),
                        help="show each layer as a whole first: 'pca' colours each pixel by the first three "
                        "principal components of all its channels (default: off)")
    parser.add_argument("--cam", action="store_true",
                        help="Grad-CAM: for each of the top classes, a heatmap of where the photo drives it, "
                        "overlaid on the photo in a row under it")
    parser.add_argument("--cam-layer", metavar="NAME",
                        help="the layer Grad-CAM explains (default: the model's last default layer, "
                        f"{MODELS[DEFAULT_MODEL].default_layers[-1]} for InceptionV3)")
    parser.add_argument("--json", action="store_true",
                        help="also write <figure stem>.json: predictions, model, weights, versions, settings, "
                        "and each layer's statistics and ranked channels")
    parser.add_argument("--save-arrays", action="store_true",
                        help="also write <figure stem>.npz: each chosen layer's maps and the output vector")
    parser.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def check_cmap(parser: argparse.ArgumentParser, name: str) -> None:
    import matplotlib

    if name not in matplotlib.colormaps:
        close = difflib.get_close_matches(name, list(matplotlib.colormaps), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        parser.error(f"argument --cmap: unknown colormap {name!r}{hint} (see matplotlib.colormaps)")


class Reporter:
    """Progress on stderr (silenced by --quiet); results on stdout."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def status(self, message: str) -> None:
        if not self.quiet:
            print(f"deepviz: {message}", file=sys.stderr, flush=True)

    def progress(self, total: int):
        """A rich progress bar over the images, when there is more than one."""
        if self.quiet or total < 2:
            return contextlib.nullcontext(None)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        return Progress(
            TextColumn("drawing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, usage errors
        return int(exit.code or 0)
    reporter = Reporter(args.quiet)
    try:
        if args.list_models:
            return list_models()
        if args.list_layers:
            return list_layers(args, reporter)
        check_out_path(args.out)
        check_cmap(parser, args.cmap)
        return visualize(args, reporter)
    except SystemExit as exit:  # parser.error from a late check
        return int(exit.code or 0)
    except DeepvizError as error:
        print(f"deepviz: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("deepviz: error: out of memory; draw fewer layers, lower --max-maps or --batch-size", file=sys.stderr)
        return 1


def network_choice(args, for_listing: bool = False) -> NetworkChoice:
    """The network the arguments ask for; listing layers needs no download, so no ImageNet weights."""
    if args.model not in MODELS:
        check_model_argument(args)
    weights = args.weights or "imagenet"
    if for_listing and weights == "imagenet":
        weights = "none"
    return NetworkChoice(args.model, weights, args.preprocess, args.labels)


def check_model_argument(args) -> None:
    """A --model that is not a built-in name must be a saved model file, and takes no --weights."""
    if not args.model.endswith(MODEL_SUFFIXES):
        close = difflib.get_close_matches(args.model, list(MODELS), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UsageError(f"--model {args.model}: not a built-in model{hint} Expected one of "
                         f"{', '.join(MODELS)} (see --list-models) or a saved model ending in "
                         f"{' or '.join(MODEL_SUFFIXES)}")
    if args.weights is not None:
        raise UsageError(f"--weights applies to the built-in models; {args.model} carries its own weights")


def list_models() -> int:
    for name, spec in MODELS.items():
        size = f"{spec.input_size}x{spec.input_size}"
        print(f"{name:<16} {spec.builder:<15} {size:<8} {' '.join(spec.default_layers)}")
    return 0


def list_layers(args, reporter: Reporter) -> int:
    choice = network_choice(args, for_listing=True)
    reporter.status(f"building {choice.model}")
    for line in describe_layers(build_network(choice)):
        print(line)
    return 0


def visualize(args, reporter: Reporter) -> int:
    image_paths = expand_inputs(args.images, args.recursive) if args.images else [sample_image()]
    out_paths = figure_paths(image_paths, args.out)
    batch_size = min(args.batch_size, len(image_paths))
    failures = FailureLog(several=len(image_paths) > 1)
    batches = load_batches(image_paths, batch_size, failures)
    first_batch = next(batches)  # read before building the network: a bad photo fails at once

    choice = network_choice(args)
    reporter.status(f"building {choice.model} (weights: {choice.weights})")
    network = build_network(choice)
    layer_names = check_layer_names(network, args.layers or network.default_layers)
    check_channels(network, layer_names, args.channels)
    cam_layer = check_cam(network, args) if args.cam else None
    outputs_needed = layer_names + ([cam_layer] if cam_layer and cam_layer not in layer_names else [])
    feature_model = build_feature_model(network, outputs_needed)
    # TensorFlow traces a graph before its first compiled run (about a second), which pays off
    # only for batches; JAX and PyTorch run compiled faster even once.
    compiled = batch_size > 1 or import_keras().backend.backend() != "tensorflow"
    pipeline = Pipeline(network, feature_model, layer_names, batch_size, compiled, cam_layer,
                        build_cam_head(network, cam_layer) if cam_layer else None)

    with reporter.progress(len(image_paths)) as progress:
        task = progress.add_task("drawing", total=len(image_paths)) if progress else None
        for positions, photos in itertools.chain([first_batch], batches):
            if photos:
                results = analyse_batch(pipeline, [photo for _, photo in photos], args)
                for (index, photo), result in zip(photos, results):
                    path = image_paths[index]
                    failures.attempt(path, report_image, path, photo, pipeline, result, out_paths[index], args,
                                     failures.several)
            if progress:
                progress.advance(task, len(positions))
    if failures.several:
        drawn = len(image_paths) - len(failures.paths)
        failed = f"; failed: {', '.join(map(str, failures.paths))}" if failures.paths else ""
        print(f"{drawn} of {len(image_paths)} images drawn{failed}")
    return 1 if failures.paths else 0


class FailureLog:
    """Images that failed: with several images each is reported and the run goes on; with one, it stops."""

    def __init__(self, several: bool):
        self.several = several
        self.paths: list[Path] = []

    def attempt(self, path: Path, step, *step_args):
        try:
            return step(*step_args)
        except DeepvizError as error:
            if not self.several:
                raise
            self.paths.append(path)
            print(f"deepviz: error: {error}", file=sys.stderr, flush=True)
            return None


def load_batches(image_paths: Sequence[Path], batch_size: int, failures: FailureLog):
    """Yield (positions, [(position, photo)]) per batch; unreadable images are left out."""
    for start in range(0, len(image_paths), batch_size):
        positions = range(start, min(start + batch_size, len(image_paths)))
        photos = [(i, failures.attempt(image_paths[i], load_image, image_paths[i])) for i in positions]
        yield positions, [(i, photo) for i, photo in photos if photo is not None]


@dataclasses.dataclass
class Pipeline:
    """What every batch of a run goes through."""

    network: Network
    feature_model: object  # keras.Model: {layer path: maps, OUTPUT_KEY: output}
    layer_names: list[str]
    batch_size: int
    compiled: bool
    cam_layer: str | None = None
    cam_head: object = None  # keras.Model from the CAM layer's maps to the output


@dataclasses.dataclass
class PhotoResult:
    """What one photo's forward (and backward) pass is reduced to."""

    predictions: list | None  # [(class name, probability)]
    layers: list[LayerSummary]
    arrays: dict | None  # for --save-arrays
    cams: list | None  # [(class name, probability, heatmap)]


def analyse_batch(pipeline: Pipeline, photos, args) -> list[PhotoResult]:
    """One PhotoResult per photo, from one forward pass (and one backward pass per photo for Grad-CAM).

    Each layer is reduced to what is drawn here, so a batch's full maps are freed
    before the next batch runs and memory stays flat however many photos there are.
    """
    network = pipeline.network
    batch = np.stack([preprocess(photo, network) for photo in photos])  # (n, height, width, 3)
    padding = pipeline.batch_size - len(photos)  # pad the last batch: Keras then traces one shape only
    if padding:
        batch = np.concatenate([batch, np.zeros((padding, *batch.shape[1:]), batch.dtype)])
    outputs = run_forward_pass(pipeline.feature_model, batch, pipeline.compiled)
    results = []
    for i in range(len(photos)):
        predictions = cams = None
        if network.class_names is not None:
            predictions = top_predictions(outputs[OUTPUT_KEY][i], network.class_names, args.top)
        if pipeline.cam_head is not None:
            classes = top_classes(outputs[OUTPUT_KEY][i], args.top)
            heatmaps = grad_cam(pipeline.cam_head, outputs[pipeline.cam_layer][i], classes)
            cams = [(name, probability, heatmap) for (name, probability), heatmap in zip(predictions, heatmaps)]
        layers = [summarize_layer(name, outputs[name][i], args.max_maps, args.rank, args.channels, args.summary)
                  for name in pipeline.layer_names]
        arrays = output_arrays(network, outputs, pipeline.layer_names, i, cams) if args.save_arrays else None
        results.append(PhotoResult(predictions, layers, arrays, cams))
    return results


def check_cam(network: Network, args) -> str:
    """The layer Grad-CAM explains; Grad-CAM needs class predictions to explain."""
    if network.class_names is None:
        raise UsageError(f"--cam explains predictions, and there are none: {network.no_predictions_reason}")
    cam_layer = args.cam_layer or network.default_layers[-1]
    check_layer_names(network, [cam_layer])
    if len(output_shape(layer_paths(network.model)[cam_layer])) != 3:
        raise UsageError(f"--cam-layer {cam_layer}: Grad-CAM needs a layer with spatial maps (height, width, "
                         f"channels); choose a convolutional layer such as {network.default_layers[-1]}")
    return cam_layer


def output_arrays(network: Network, outputs: dict, layer_names: Sequence[str], index: int, cams) -> dict:
    """One photo's full maps of every chosen layer, the model's output vector and Grad-CAM heatmaps."""
    arrays = {name: np.array(outputs[name][index]) for name in layer_names}
    output_name = "predictions" if network.class_names is not None else "output"
    arrays.setdefault(output_name, np.array(outputs[OUTPUT_KEY][index]))
    for name, _, heatmap in cams or []:
        arrays[f"cam/{name}"] = heatmap
    return arrays


def check_channels(network: Network, layer_names: Sequence[str], channels: Sequence[int] | None) -> None:
    """Every --channels index must exist in every chosen layer with spatial maps."""
    if channels is None:
        return
    paths = layer_paths(network.model)
    for name in layer_names:
        shape = output_shape(paths[name])
        if len(shape) == 3 and max(channels) >= shape[-1]:
            raise UsageError(f"--channels {max(channels)}: layer {name} has {shape[-1]} channels "
                             f"(0 to {shape[-1] - 1})")


def report_image(path, photo, pipeline: Pipeline, result: PhotoResult, out_path, args, several) -> None:
    """Print one image's predictions and layer statistics, draw its figure and save it (and its numbers)."""
    network, predictions, layers, arrays = pipeline.network, result.predictions, result.layers, result.arrays
    if several:
        print(f"== {path}")
    if network.class_names is None:
        print(f"predictions unavailable: {network.no_predictions_reason}")
    else:
        if not network.trained:
            print("untrained network (--weights none): these predictions are meaningless")
        for line in format_predictions(predictions):
            print(line)
    for layer in layers:
        print(format_layer_line(layer))
    style = FigureStyle(photo_title(path.name, photo, network, predictions), args.norm, args.cmap, args.dpi,
                        pipeline.cam_layer or "")
    figure = draw_figure(photo, layers, style, result.cams)
    writes = [(out_path, lambda: save_figure(figure, out_path, args.dpi), "the figure")]
    if args.json:
        record = run_record(path, network, predictions, layers, args)
        text = json.dumps(record, indent=2).encode("utf-8")
        json_path = out_path.with_suffix(".json")
        writes.append((json_path, lambda: write_atomically(json_path, lambda stream: stream.write(text)), "the JSON"))
    if arrays is not None:
        arrays_path = out_path.with_suffix(".npz")
        writes.append((arrays_path, lambda: write_atomically(arrays_path, lambda s: np.savez_compressed(s, **arrays)),
                       "the arrays"))
    for target, write, what in writes:
        try:
            write()
        except OSError as error:
            raise DeepvizError(f"could not write {what} {target}: {error.strerror or error}") from None
        print(f"wrote {target}", flush=True)


def run_record(path: Path, network: Network, predictions, layers: Sequence[LayerSummary], args) -> dict:
    """Everything --json writes about one photo's run."""
    return {
        "image": str(path),
        "model": network.label,
        "weights": network.weights_label,
        "trained": network.trained,
        "versions": library_versions(),
        "settings": {
            "layers": [layer.name for layer in layers],
            "top": args.top,
            "max_maps": args.max_maps,
            "rank": args.rank,
            "channels": list(args.channels) if args.channels else None,
            "norm": args.norm,
            "summary": args.summary,
            "cmap": args.cmap,
            "dpi": args.dpi,
            "preprocess": args.preprocess,
            "input_size": list(network.input_size),
        },
        "predictions": None if predictions is None else [
            {"rank": rank, "class": name, "probability": probability}
            for rank, (name, probability) in enumerate(predictions, start=1)
        ],
        "predictions_unavailable": network.no_predictions_reason or None,
        "layers": [layer_record(layer) for layer in layers],
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
        "ranking": layer.ranking,
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


if __name__ == "__main__":
    raise SystemExit(main())
