"""A model's layers by path ("outer/inner" inside nested models): list them, check names, describe them."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .backend import import_keras
from .errors import UsageError


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


SCALING_LAYERS = ("Rescaling", "Normalization")  # they scale the pixels: their maps are the photo's
AUGMENTATION_LAYERS = ("RandAugment", "AugMix", "CutMix", "MixUp")  # Keras's, beside its Random... ones
SIZE_ONLY_LAYERS = ("Resizing", "CenterCrop")  # they change the photo's size, not its pixels' values
# Layers that pass their input on unchanged when the model predicts: their maps are the layer's before
TRAINING_ONLY_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                        "GaussianDropout", "AlphaDropout", "ActivityRegularization")


def model_steps(model) -> list:
    """The model's layers and operations in the order they run: a functional model's `operations`
    include the ops written between layers (`inputs / 255`); a Sequential model has layers only."""
    return getattr(model, "operations", model.layers)


def passes_photo_on(step) -> bool:
    """Whether a step leaves the photo's pixel values as they are when the model predicts: an input,
    Keras's augmentations (RandomFlip, RandomZoom, ...: they act in training only), resizing, a
    training-only layer (Dropout), or a model of those."""
    keras = import_keras()
    if isinstance(step, keras.Model):
        return all(passes_photo_on(layer) for layer in step.layers)
    name, keras_own = type(step).__name__, type(step).__module__.startswith("keras.")
    augmentation = keras_own and (name.startswith("Random") or name in AUGMENTATION_LAYERS)
    return is_input_layer(step) or augmentation or name in SIZE_ONLY_LAYERS + TRAINING_ONLY_LAYERS


def has_own_maps(layer) -> bool:
    """Whether a layer has spatial maps of its own to draw or explain by default: not an input, nor
    preprocessing (Rescaling, resizing, augmentations: its maps are the photo), nor a layer that acts
    only in training (Dropout, GaussianNoise, ...: its maps are its input's), nor a nested model (its
    maps are those of one of its own layers, listed after it)."""
    keras = import_keras()
    return (len(output_shape(layer)) == 3 and not isinstance(layer, keras.Model) and not passes_photo_on(layer)
            and type(layer).__name__ not in SCALING_LAYERS)


def check_layer_names(network, names: Sequence[str]) -> list[str]:
    """Return `names` without repeats, or raise UsageError for the first unknown one."""
    known = list(layer_paths(network.model))
    for name in names:
        if name not in known:
            raise UsageError(unknown_layer_message(network, name, known))
    return list(dict.fromkeys(names))


def unknown_layer_message(network, name: str, known: Sequence[str]) -> str:
    by_case = [layer for layer in known if layer.lower() == name.lower()]
    nested = [layer for layer in known if layer.lower().endswith("/" + name.lower())]  # "base/" left out
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
    suggestions = list(dict.fromkeys(by_case + nested + close))
    message = f"{network.label} has no layer {name!r}"
    if suggestions:
        message += "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
    else:
        message += "."
    if Path(name).exists():
        message += f" ({name!r} is a file: put images before --layers, or end the layer list with --)"
    return message + f" See all {len(known)} with `deepviz --list-layers` (in Python: Visualizer.layers())."


def describe_layers(network) -> list[str]:
    """One line per layer: index, path, type, output shape; block outputs marked."""
    paths = layer_paths(network.model)
    width = max(26, *map(len, paths))
    lines = []
    for index, (path, layer) in enumerate(paths.items()):
        marked = network.block_pattern and re.fullmatch(network.block_pattern, path)
        mark = "  <- block output" if marked else ""
        lines.append(f"{index:4d}  {path:<{width}} {type(layer).__name__:<24} {output_shape(layer)}{mark}")
    return lines


def check_channels(network, layer_names: Sequence[str], channels: Sequence[int] | None) -> None:
    """Every --channels index must exist in every chosen layer with spatial maps."""
    if channels is None:
        return
    if not channels or not all(is_index(channel) for channel in channels):
        raise UsageError(f"channels: expected channel indices, whole numbers of 0 or more, received {list(channels)!r}")
    repeated = first_repeated(channels)
    if repeated is not None:
        raise UsageError(f"channels: expected each channel once, received {repeated} twice in {list(channels)}")
    paths = layer_paths(network.model)
    for name in layer_names:
        shape = output_shape(paths[name])
        if len(shape) == 3 and max(channels) >= shape[-1]:
            raise UsageError(f"channel {max(channels)}: layer {name} has {shape[-1]} channels "
                             f"(0 to {shape[-1] - 1})")


def is_whole(value) -> bool:
    """Whether `value` is an int (Python's or NumPy's), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_index(value) -> bool:
    return is_whole(value) and value >= 0


def first_repeated(values: Sequence[int]) -> int | None:
    """The first value listed a second time, or None."""
    seen = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None
