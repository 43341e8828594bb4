"""Build the network: a built-in keras.applications classifier, or the user's own model, saved or in memory."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import difflib
import functools
import json
import os
import random
import re
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .backend import import_keras
from .errors import DeepvizError, UsageError
from .images import HERE, PREPROCESSING
from .layers import SCALING_LAYERS, has_own_maps, layer_paths, model_steps, passes_photo_on

DEFAULT_MODEL = "inception_v3"
DEFAULT_WEIGHTS = "imagenet"
DEFAULT_PREPROCESS = "inception"  # for a model of the user's own
OWN_MODEL_INPUT_SIZE = (224, 224)  # when the user's model accepts any size
OWN_MODEL_DEFAULT_LAYER_COUNT = 5
# Layers and operations that scale a model's pixels first thing: it takes them as they are
PIXEL_SCALING_STEPS = SCALING_LAYERS + ("TrueDivide", "Divide", "Multiply", "Subtract", "Add")
SCALED_PIXELS_RANGE_MAX = 10.0  # how far apart such a step puts black and white: [0, 1], [-1, 1], standardised
OWN_WEIGHTS_LABEL = "its own weights"  # a saved or in-memory model carries them
WEIGHTS_SUFFIXES = (".weights.h5", ".h5")
MODEL_SUFFIXES = (".keras", ".h5")
NUM_CLASSES = 1000
DOWNLOAD_TIMEOUT_SECONDS = 30  # per socket operation, so a dead network fails fast
CLASS_INDEX_PATH = HERE / "deepviz_data" / "imagenet_class_index.json"
RANDOM_WEIGHTS_SEED = 0  # --weights none: the same random network on every build


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A keras.applications ImageNet classifier: what deepviz needs to run and draw it."""

    builder: str  # its constructor in keras.applications
    module: str  # the keras.applications submodule with its preprocess_input
    input_size: int  # side of its square input, in pixels
    default_layers: tuple[str, ...]  # a spread from early to late layers
    block_pattern: str  # regular expression of its block outputs, marked by --list-layers
    cam_layer: str = ""  # the layer --cam explains, where it is not the last default layer

    @property
    def explained_layer(self) -> str:
        """The layer --cam explains by default."""
        return self.cam_layer or self.default_layers[-1]


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
                               r"convnext_tiny_(stem|downsampling_block_\d)",
                               # the last layer that every path to the output passes through: the
                               # residual additions after it are not layers, and cannot be explained
                               cam_layer="convnext_tiny_downsampling_block_2"),
}


@dataclasses.dataclass
class Network:
    """A Keras model and what deepviz needs to know to run and describe it."""

    model: object  # keras.Model
    label: str  # what to call it: "InceptionV3", "my_model.keras"
    weights_label: str  # "imagenet", "untrained", a file name
    input_size: tuple[int, int]  # (height, width)
    preprocess: Callable[[np.ndarray], np.ndarray]
    preprocess_name: str  # a key of PREPROCESSING, or the keras.applications function the model comes with
    class_names: list[str] | None  # None: no predictions, for the reason below
    no_predictions_reason: str = ""
    trained: bool = True
    default_layers: tuple[str, ...] = ()
    block_pattern: str = ""  # regular expression of the layer paths --list-layers marks
    cam_layer: str = ""  # the layer --cam explains by default; "": found when asked (explain.default_cam_layer)
    input_channels: int = 3  # 3: RGB; 1: the photo in greyscale
    logits: bool = False  # the output is class scores before a softmax: predictions are their softmax


@dataclasses.dataclass(frozen=True)
class NetworkChoice:
    """What the command line asked for: a built-in model name or a saved model's path, and so on."""

    model: str = DEFAULT_MODEL
    weights: str = "imagenet"
    preprocess: str | None = None  # a key of PREPROCESSING; None: the built-in model's own
    labels: str | tuple[str, ...] | None = None  # a file of class names, one per line, or the names


@contextlib.contextmanager
def random_weights_seeded():
    """Python's `random` seeded while a network with random weights is built, then as it was.

    Keras draws each initializer's seed from it, so every build, in the command line, the
    API or a Ray worker, is the same network, and a user's own random sequence goes on
    untouched. Not keras.utils.set_random_seed: it imports TensorFlow on every backend.
    """
    state = random.getstate()
    random.seed(RANDOM_WEIGHTS_SEED)
    try:
        yield
    finally:
        random.setstate(state)


def build_network(choice: NetworkChoice = NetworkChoice()) -> Network:
    """The network `choice` names (checked with check_choice), built once per process for each choice (files
    reloaded if changed)."""
    labels_file = choice.labels if isinstance(choice.labels, str) else ""
    stamps = tuple(Path(p).stat().st_mtime_ns for p in (choice.model, choice.weights, labels_file)
                   if Path(p).is_file())
    return build_network_once(choice, stamps)


def check_choice(choice: NetworkChoice, weights_given: bool = False) -> None:
    """All that can be checked of a choice before Keras is imported: the names, suffixes and files it gives.

    `weights_given`: whether weights were asked for, not left at their default (a saved model takes none).
    """
    check_preprocess(choice.preprocess)
    if choice.model in MODELS:
        if choice.labels is not None:
            raise UsageError(f"--labels names the classes of a model of your own (--model FILE); {choice.model} "
                             f"predicts the {NUM_CLASSES:,} ImageNet classes, whose names deepviz has: leave it out")
        if choice.weights not in ("imagenet", "none"):
            check_weights_file(Path(choice.weights))
        return
    if not choice.model.endswith(MODEL_SUFFIXES):
        close = difflib.get_close_matches(choice.model, list(MODELS), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else "."
        raise UsageError(f"--model {choice.model}: not a built-in model{hint} Expected one of "
                         f"{', '.join(MODELS)} (see --list-models) or a saved model ending in "
                         f"{' or '.join(MODEL_SUFFIXES)}")
    if choice.model.endswith(WEIGHTS_SUFFIXES[0]):
        raise UsageError(weights_not_model_message(choice.model))
    if weights_given:
        raise UsageError(f"--weights applies to the built-in models; {choice.model} carries its own weights")
    check_readable_file(Path(choice.model), "--model")
    if isinstance(choice.labels, str):
        check_readable_file(Path(choice.labels), "--labels")


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
    preprocess_name = choice.preprocess or f"keras.applications.{spec.module}.preprocess_input"
    if choice.weights == "imagenet":
        model, include_top, trained, label = build_imagenet_model(spec), True, True, "imagenet"
    elif choice.weights == "none":
        with random_weights_seeded():
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
        preprocess_name=preprocess_name,
        class_names=load_class_names() if include_top else None,
        no_predictions_reason="" if include_top else headless_reason(label),
        trained=trained,
        default_layers=spec.default_layers,
        block_pattern=spec.block_pattern,
        cam_layer=spec.explained_layer,
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
    """(model, has classifier head) from a Keras weights file (checked by check_choice), with the head or without it."""
    include_top = weights_have_classifier(path)
    model = build_model(spec, include_top=include_top)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns about each skipped sub-container
            model.load_weights(str(path))
    except (ValueError, KeyError, TypeError, OSError) as error:
        head = "with" if include_top else "without"
        reason = keras_load_reason(error)
        raise DeepvizError(
            f"--weights {path}: not {spec.builder} weights; Keras could not load it into {spec.builder} {head} the "
            f"classifier head ({reason}). Pass weights saved from keras.applications.{spec.builder}, "
            f"or --weights imagenet."
        ) from None
    return model, include_top


def keras_load_reason(error: Exception) -> str:
    """Why Keras could not load a file, in one line: how many layers did not fit, and why the first did not."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    not_loaded = re.match(r"A total of (\d+) objects could not be loaded", lines[0])
    if not_loaded and len(lines) > 1:
        return f"the weights of {not_loaded.group(1)} layers did not fit; the first: {lines[1].rstrip('.')}"
    return lines[0]


def headless_reason(weights_label: str) -> str:
    """Why a built-in model has no predictions: weights without the classifier head."""
    return f"weights {weights_label} have no classifier head"


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
    if not path.exists() or path.is_dir():  # a pipe (--labels <(...)) is not a regular file, and is read all the same
        reason = "is a directory" if path.is_dir() else "no such file"
        raise DeepvizError(f"{option} {path}: {reason}; check the path")
    if not os.access(path, os.R_OK):
        raise DeepvizError(f"{option} {path}: permission denied; make the file readable")


def check_preprocess(preprocess: str | None) -> None:
    if preprocess is not None and preprocess not in PREPROCESSING:
        raise UsageError(f"--preprocess {preprocess}: expected one of {', '.join(PREPROCESSING)}")


def load_own_model(choice: NetworkChoice) -> Network:
    """A saved Keras model (.keras, or a full-model .h5) with the user's preprocessing and labels."""
    path = Path(choice.model)
    keras = import_keras()
    keras.backend.clear_session()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a file it cannot read
        if "No model config found" in str(error):  # a legacy .h5 of weights alone
            raise DeepvizError(weights_not_model_message(path)) from None
        reason = keras_load_reason(error)
        raise DeepvizError(f"--model {path}: Keras could not load it as a saved model ({reason})") from None
    return network_from_model(model, path.name, f"--model {path}", choice.preprocess, choice.labels)


def network_from_model(model, label: str, source: str, preprocess: str | None = None,
                       labels: str | Sequence[str] | None = None) -> Network:
    """The user's own model, saved or in memory; `source` names it in errors ("--model my.keras").

    A built-in architecture in it that takes the photo as the model does lends its own
    preprocessing; one that is the whole model, ending in a softmax over the 1,000 ImageNet
    classes, lends their names too (`keras.applications.ResNet50()` held in memory).
    """
    check_preprocess(preprocess)
    input_size, input_channels = own_model_input(model, source)
    if input_channels == 1 and preprocess in ("caffe", "torch"):
        raise UsageError(f"--preprocess {preprocess}: scales each colour of RGB its own way, but {label} "
                         "takes greyscale images; expected one of inception, unit, none")
    built_in = built_in_within(model)
    prefix, spec = built_in or ("", None)
    lender = spec if spec and input_channels == 3 and photo_reaches(model, prefix) else None
    scale, preprocess_name = own_model_preprocessing(model, lender, preprocess)
    activation = output_activation(model)
    imagenet = (lender is not None and not prefix and labels is None and activation == "softmax"
                and tuple(model.outputs[0].shape[1:]) == (NUM_CLASSES,))  # the whole model, with its own head
    class_names, reason = ((load_class_names(), "") if imagenet
                           else own_model_classes(model, label, labels, activation))
    # named classes of an output with no activation (Dense(10)) are logits, shown as their softmax; an output
    # whose activation cannot be told (a Lambda) is shown as it is
    logits = class_names is not None and activation == "linear"
    default_layers, block_pattern, cam_layer = own_model_layers(model, built_in)
    return Network(
        model=model,
        label=label,
        weights_label=OWN_WEIGHTS_LABEL,
        input_size=input_size,
        preprocess=scale,
        preprocess_name=preprocess_name,
        class_names=class_names,
        no_predictions_reason=reason,
        default_layers=default_layers,
        block_pattern=block_pattern,
        cam_layer=cam_layer,
        input_channels=input_channels,
        logits=logits,
    )


def own_model_preprocessing(model, lender: ModelSpec | None, preprocess: str | None) -> tuple[Callable, str]:
    """(function, name) of the user's model's preprocessing: `preprocess` where given, else the
    built-in architecture's own that takes the photo, else "none" for a model that scales its pixels
    itself, else DEFAULT_PREPROCESS."""
    if preprocess is None and lender is not None:
        module = getattr(import_keras().applications, lender.module)
        return module.preprocess_input, f"keras.applications.{lender.module}.preprocess_input"
    if preprocess is None and scales_own_pixels(model):
        preprocess = "none"
    return PREPROCESSING[preprocess or DEFAULT_PREPROCESS], preprocess or DEFAULT_PREPROCESS


def scales_own_pixels(model) -> bool:
    """Whether the model's first step, past augmentations and resizing (in a nested model too), is a
    Rescaling or Normalization layer or arithmetic (`inputs / 127.5 - 1`) that brings pixels of 0 to 255
    down to a few units, as Keras's guides build models: it takes pixels as they are. Tried on a black
    and a white image, so a Rescaling(2, offset=-1) of pixels in [0, 1] does not count."""
    keras = import_keras()
    first = next((step for step in model_steps(model) if not passes_photo_on(step)), None)
    if isinstance(first, keras.Model):
        return scales_own_pixels(first)
    if type(first).__name__ not in PIXEL_SCALING_STEPS:
        return False
    try:
        probe = keras.Model(model.inputs[0], first.output)
    except (AttributeError, ValueError):  # a layer used in several places has no single output
        return False
    pixels = np.zeros((2, *(size or 32 for size in model.inputs[0].shape[1:])), np.float32)
    pixels[1] = 255.0
    scaled = keras.ops.convert_to_numpy(probe(pixels, training=False))
    return float(np.abs(scaled[1] - scaled[0]).max()) <= SCALED_PIXELS_RANGE_MAX


def own_model_layers(model, built_in: tuple[str, ModelSpec] | None) -> tuple[tuple[str, ...], str, str]:
    """(default layers, block-output pattern, Grad-CAM layer or "") of the user's model.

    A built-in architecture in it (`built_in`: the backbone of transfer learning, or the
    whole model, see built_in_within) lends its own: `base/mixed3` rather than whichever
    layers an even spread lands on. Otherwise the layers with maps of their own
    (layers.has_own_maps) are spread from early to late.
    """
    if built_in is not None:
        prefix, spec = built_in
        return (tuple(prefix + name for name in spec.default_layers),
                re.escape(prefix) + f"(?:{spec.block_pattern})", prefix + spec.explained_layer)
    spatial = [path for path, layer in layer_paths(model).items() if has_own_maps(layer)]
    picks = np.linspace(0, len(spatial) - 1, min(OWN_MODEL_DEFAULT_LAYER_COUNT, len(spatial))).round()
    return tuple(dict.fromkeys(spatial[int(i)] for i in picks)), "", ""


def built_in_within(model) -> tuple[str, ModelSpec] | None:
    """(path prefix, spec) of the first built-in architecture in `model`: "" where it is the model itself,
    "base/" where it is the nested model `base`; None where there is none."""
    keras = import_keras()
    for prefix, inner in [("", model)] + [(path + "/", layer) for path, layer in layer_paths(model).items()
                                          if isinstance(layer, keras.Model)]:
        spec = built_in_architecture(inner)
        if spec is not None:
            return prefix, spec
    return None


def photo_reaches(model, prefix: str) -> bool:
    """Whether the nested model at `prefix` ("" for the model itself) comes first in each model around it,
    so it takes the photo as the model does: no layer (Rescaling, Lambda) nor operation (`inputs / 255`) before
    it, augmentations aside (layers.passes_photo_on)."""
    outer = model
    for name in prefix.rstrip("/").split("/") if prefix else []:
        inner = outer.get_layer(name)
        steps = model_steps(outer)
        if not all(passes_photo_on(step) for step in steps[:steps.index(inner)]):
            return False
        outer = inner
    return True


def built_in_architecture(model) -> ModelSpec | None:
    """The built-in model `model` is built as, known by its layer names, or None; its default and
    Grad-CAM layers named as in `model` (layer_as_built).

    Where several fit (a VGG19 has every default layer of a VGG16 too), the one whose last
    default layer comes latest, so the deepest of its kind: VGG19's block5_conv4, not block5_conv3.
    """
    order = {layer.name: position for position, layer in enumerate(model.layers)}
    as_built = names_as_built(model)
    fitting = [spec for spec in (spec_as_built(as_built, spec) for spec in MODELS.values()) if spec is not None]
    return max(fitting, key=lambda spec: order[spec.default_layers[-1]], default=None)


def spec_as_built(as_built: dict[str, str], spec: ModelSpec) -> ModelSpec | None:
    """`spec` with its layers named as in the model (`as_built`: names_as_built), or None where one is missing."""
    named = [as_built.get(name) for name in (*spec.default_layers, spec.explained_layer)]
    if None in named:
        return None
    *default_layers, cam_layer = named
    if tuple(default_layers) == spec.default_layers:
        return spec
    return dataclasses.replace(spec, default_layers=tuple(default_layers), cam_layer=cam_layer)


def names_as_built(model) -> dict[str, str]:
    """{the name build_model gives a layer: its name in `model`}.

    Keras numbers the layers it names itself (conv2d, conv2d_1, ...) on from those built
    before in the process, so InceptionV3 built a second time in a notebook has conv2d_95
    where the first had conv2d_1: such a name stands for the layer of its kind as many
    along, by Keras's numbers (layers of that kind built into `model` before the architecture
    would be counted in). A name of the model's own (mixed3) stands for itself.
    """
    kin = collections.defaultdict(list)  # {kind: [(Keras's number, name)]} of the layers Keras named
    for layer in model.layers:
        kind, number = numbered(layer.name)
        if kind == keras_default_name(layer):
            kin[kind].append((number, layer.name))
    names = {layer.name: layer.name for layer in model.layers if numbered(layer.name)[0] not in kin}
    for kind, layers in kin.items():
        for place, (_, name) in enumerate(sorted(layers)):  # as a first build numbers them: conv2d, conv2d_1, ...
            names[kind if place == 0 else f"{kind}_{place}"] = name
    return names


def numbered(name: str) -> tuple[str, int]:
    """("conv2d", 1) of "conv2d_1"; ("conv2d", 0) of "conv2d"."""
    stem, _, number = re.fullmatch(r"(.*?)(_(\d+))?", name).groups()
    return stem, int(number or 0)


def keras_default_name(layer) -> str:
    """The name Keras gives a layer of its class before numbering it: snake case (Conv2D: conv2d)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", type(layer).__name__)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def own_model_input(model, source: str) -> tuple[tuple[int, int], int]:
    """((height, width), channels: 3 or 1) of the images the user's model takes, or UsageError."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError:  # a subclassed model, or a Sequential model without an input shape
        inputs = outputs = None
    if not inputs or not outputs:
        received = ("a Sequential model without one" if isinstance(model, import_keras().Sequential)
                    else f"a subclassed model ({type(model).__name__}), whose layers' outputs Keras does not record")
        raise UsageError(f"{source}: expected a functional or Sequential model whose input shape is known, "
                         f"so that its layers' outputs can be read; received {received}. Start a Sequential "
                         "model with keras.Input(shape=(height, width, 3)), or build your layers as a functional "
                         "keras.Model(inputs, outputs)")
    if len(inputs) != 1 or len(outputs) != 1:
        raise UsageError(f"{source}: expected one image input and one output, received {len(inputs)} inputs "
                         f"and {len(outputs)} outputs; wrap the part that takes the image in a model of its "
                         "own, keras.Model(image_input, output)")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise UsageError(f"{source}: expected an input of images, (batch, height, width, 3) for RGB or "
                         f"(batch, height, width, 1) for greyscale; received {shape}")
    height, width = shape[1:3]
    return ((height, width) if height and width else OWN_MODEL_INPUT_SIZE), shape[-1]


def own_model_classes(model, label: str, labels: str | Sequence[str] | None, activation: str):
    """(class names or None, why there are no predictions) for the user's model's output, which comes
    out of `activation` (output_activation)."""
    shape = tuple(model.outputs[0].shape[1:])
    names = read_labels(Path(labels)) if isinstance(labels, (str, Path)) else labels
    if len(shape) != 1 or shape[0] < 2:
        return None, f"the output of {label}, shape {shape}, is not a class vector"
    if names is not None:
        if len(names) != shape[0]:
            given, how = ((f"--labels {labels}", "one name per class, one per line")
                          if isinstance(labels, (str, Path)) else ("labels", "one name per class"))
            raise UsageError(f"{given}: {len(names)} names, but {label} has {shape[0]} classes; give {how}")
        return list(names), ""
    if activation == "sigmoid":
        return None, (f"the output of {label}, shape {shape}, ends in a sigmoid (a probability per class) "
                      "whose classes have no names; pass --labels FILE")
    if activation != "softmax":
        return None, (f"the output of {label}, shape {shape}, does not end in a softmax; "
                      "pass --labels FILE if it is a class vector")
    return [f"class_{i}" for i in range(shape[0])], ""


def output_activation(model) -> str:
    """The name of the activation the model's output comes out of: "softmax" for a Softmax layer or
    keras.ops.softmax (and "sigmoid" likewise), a layer's own activation (Dense, Conv, Activation: "linear"
    where it has none), a nested model's own; "" where it cannot be told (a Lambda)."""
    keras = import_keras()
    step = output_step(model)
    if isinstance(step, keras.Model):
        return output_activation(step)
    return step_activation(step)


ACTIVATION_STEPS = ("Softmax", "Sigmoid")  # the layer keras.layers.Softmax, or the ops keras.ops.softmax, sigmoid


def step_activation(step) -> str:
    """The name of the activation a layer or operation ends in, as output_activation says; "" where none can be told."""
    if type(step).__name__ in ACTIVATION_STEPS:
        return type(step).__name__.lower()
    return getattr(getattr(step, "activation", None), "__name__", "")


def is_activation_only(step) -> bool:
    """Whether a layer or operation is its activation and nothing else (Softmax, keras.ops.sigmoid, Activation)."""
    return type(step).__name__ in ACTIVATION_STEPS or isinstance(step, import_keras().layers.Activation)


def output_step(model):
    """The layer or operation whose output is the model's output (a nested model's own tensors are its own)."""
    steps = model_steps(model)
    for step in reversed(steps):
        with contextlib.suppress(AttributeError, ValueError):  # a shared layer has no single output
            if step.output is model.outputs[0]:
                return step
    return steps[-1]


def read_labels(path: Path) -> list[str]:
    check_readable_file(path, "--labels")
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    return [line for line in lines if line]


def load_class_names(path: Path = CLASS_INDEX_PATH) -> list[str]:
    """ImageNet class names by index, from the class index shipped with deepviz."""
    index = json.loads(path.read_text(encoding="utf-8"))
    return [index[str(i)][1] for i in range(len(index))]


def weights_not_model_message(path) -> str:
    return (f"--model {path}: a file of weights alone, not a saved model; pass it as --weights {path} with the "
            "built-in --model it was saved from, or save your whole model with model.save('my_model.keras')")
