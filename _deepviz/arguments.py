"""The Python API's arguments checked, as the command line's parser and run.check_mode_options check its flags."""

from __future__ import annotations

from pathlib import Path

from .backend import import_keras
from .defaults import said
from .errors import UsageError
from .models import DEFAULT_MODEL


def check_model(model) -> None:
    """UsageError unless `model` is a built-in name, a saved model's path or a keras.Model."""
    if not isinstance(model, (str, Path)) and not is_keras_model(model):
        raise UsageError(f"model: expected a built-in name such as {DEFAULT_MODEL!r}, a saved model's path or a "
                         f"keras.Model, received {type(model).__name__}")


def is_keras_model(model) -> bool:
    """Whether `model` is a keras.Model, without importing Keras for a value that is plainly not one."""
    if not any(cls.__module__.split(".")[0] == "keras" for cls in type(model).__mro__):
        return False
    return isinstance(model, import_keras().Model)


def is_listing(value) -> bool:
    """Whether `value` lists values (a list, a tuple, a range, an array): iterable, and no text or mapping."""
    return hasattr(value, "__iter__") and not isinstance(value, (str, bytes, dict))


def layer_tuple(layers) -> tuple[str, ...]:
    """One layer name or a list of them as a tuple, or UsageError (None, the default layers, is the caller's)."""
    if isinstance(layers, str):
        return (layers,)
    expected = "layers: expected a layer name or a list of them, or None for the default layers; received"
    if not is_listing(layers):
        raise UsageError(f"{expected} {layers!r}")
    names = tuple(layers)
    if not names:
        raise UsageError(f"{expected} an empty list")
    if not all(isinstance(name, str) for name in names):
        raise UsageError(f"{expected} {list(names)!r}")
    return names


def check_one_layer(layer) -> None:
    if not isinstance(layer, str):
        raise UsageError(f"layer: expected one layer's name, received {layer!r}; call exemplars once per layer")


def channel_tuple(channels) -> tuple | None:
    """`channels` as a tuple (checked further with the layers), or UsageError where it is no list of them."""
    if channels is None:
        return None
    if not is_listing(channels):
        raise UsageError(f"channels: expected a list of channel indices, received {channels!r}")
    return tuple(channels)


def photo_paths(images) -> list:
    """exemplars' `images` as a list of paths, or UsageError: the photos are streamed from their files."""
    listed = [images] if isinstance(images, (str, Path)) else images
    if isinstance(listed, (list, tuple)) and all(isinstance(item, (str, Path)) for item in listed):
        return list(listed)
    received = type(images).__name__
    if isinstance(listed, (list, tuple)):
        received += f" of {', '.join(sorted({type(item).__name__ for item in listed}))}"
    raise UsageError(f"images: expected photo paths or directories (a path or a list of them), received {received}")


def max_maps_unless_channels(max_maps, channels):
    """`max_maps`, its default as a plain int; refused where `channels` are named too, as on the command line."""
    if channels is not None and said(max_maps):
        raise UsageError("channels draws exactly the channels listed and max_maps the top-ranked ones; "
                         f"received channels={channels!r} and max_maps={max_maps!r}: pass one of them")
    return max_maps if said(max_maps) else int(max_maps)  # the default as the plain int it stands for


def check_figure_options(cam: bool, cam_layer, summary, synthesize: bool, steps, size, seed) -> None:
    """UsageError for an option `figure` would ignore, as the command line refuses its flag."""
    if cam_layer is not None and not cam:
        raise UsageError(f"cam_layer {cam_layer!r} picks the layer cam=True explains; add cam=True, or leave "
                         "cam_layer out")
    if not synthesize:
        given = [f"{name}={value!r}" for name, value, was_given in (
            ("steps", steps, said(steps)), ("size", size, size is not None), ("seed", seed, said(seed))) if was_given]
        if given:
            one = len(given) == 1
            raise UsageError(f"{', '.join(given)}: {'shapes' if one else 'shape'} the patterns of synthesize=True; "
                             f"add it, or leave {'it' if one else 'them'} out")
    elif cam or summary is not None:
        raise UsageError(f"{'cam=True' if cam else f'summary={summary!r}'} is not drawn with synthesize=True, whose "
                         "figure pairs maps and patterns; pass one of them")
