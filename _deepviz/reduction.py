"""A layer's maps reduced on the model's device: its statistics and the channels drawn, nothing more.

A spatial layer's full maps are large (about 6 MB a photo over InceptionV3's default
layers) and most of their channels are never drawn. The reduction is added to the feature
model's graph with keras.ops only, so it runs where the model runs (a traced graph on
TensorFlow, jit-compiled on JAX, PyTorch's device, a GPU where there is one) and only a
few numbers and the drawn channels' maps are copied to the host. `stats.summary_from_reduced`
makes of one photo's reduction the LayerSummary that `stats.summarize_layer` makes of its
full maps: the same channels, maps and statistics, up to float32 rounding.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np

from .backend import import_keras


@dataclasses.dataclass(frozen=True)
class Reduction:
    """How each drawn layer is reduced: the options of an Analysis that choose its channels."""

    max_maps: int | None  # None: every channel
    rank: str  # a key of DEVICE_RANKINGS
    channels: tuple[int, ...] | None = None  # drawn in this order instead of the top-ranked ones


def argsort_descending(scores):
    """(N, C) scores -> (N, C) channel indices, highest first; equal scores in index order.

    As stats.descending: keras.ops.argsort is stable on PyTorch and JAX, and on TensorFlow it
    is top_k, which puts the lower index first; NaN is -inf there too (top_k's comparisons
    with NaN would scramble the other channels' order).
    """
    ops = import_keras().ops
    scores = ops.where(ops.isnan(scores), float("-inf"), scores)
    return ops.argsort(ops.negative(scores), axis=-1)


def order_by_mean(channel_means, channel_maxima):
    return argsort_descending(channel_means)


def order_by_max(channel_means, channel_maxima):
    return argsort_descending(channel_maxima)


def order_by_index(channel_means, channel_maxima):
    return fixed_order(channel_means, range(channel_means.shape[-1]))


# The device's twins of stats.RANKINGS, by the same names.
DEVICE_RANKINGS: dict[str, Callable] = {
    "mean": order_by_mean,
    "max": order_by_max,
    "index": order_by_index,
}


def fixed_order(channel_means, channels):
    """(N, k) int32: the same `channels` for every photo of the batch."""
    ops = import_keras().ops
    per_photo = ops.zeros_like(channel_means[:, :1], dtype="int32")  # (N, 1)
    return per_photo + ops.convert_to_tensor(np.asarray(channels, np.int32))  # (N, k)


def drawing_order(channel_means, channel_maxima, reduction: Reduction):
    """(N, k) int32: the channels drawn, in drawing order, chosen or the `max_maps` top-ranked."""
    if reduction.channels is not None:
        return fixed_order(channel_means, reduction.channels)
    order = DEVICE_RANKINGS[reduction.rank](channel_means, channel_maxima)  # (N, C)
    return order if reduction.max_maps is None else order[:, : reduction.max_maps]


def gather_channels(maps, order):
    """(N, H, W, C) maps, (N, k) channel indices -> (N, H, W, k): each photo's own channels.

    Each photo's channel maps become rows of one (N * C, H * W) array and one plain gather
    picks the rows: on a CPU two to three times faster than take_along_axis, which builds an
    index per value (N, H, W, k), for InceptionV3's conv2d_1 (all 32 channels of 147x147 drawn).
    """
    ops = import_keras().ops
    count, height, width, channels = ops.shape(maps)
    drawn = order.shape[-1]
    rows = ops.reshape(ops.transpose(maps, (0, 3, 1, 2)), (-1, height * width))  # (N * C, H * W)
    first_rows = ops.expand_dims(ops.arange(count, dtype="int32") * channels, -1)  # (N, 1)
    picked = ops.take(rows, ops.reshape(order + first_rows, (-1,)), axis=0)  # (N * k, H * W)
    return ops.transpose(ops.reshape(picked, (-1, drawn, height, width)), (0, 2, 3, 1))  # (N, H, W, k)


def reduce_maps(maps, reduction: Reduction) -> dict:
    """A spatial layer's maps (N, H, W, C) reduced, per photo, to what is printed and drawn.

    {"minimum", "mean", "maximum": (N,); "zeros": (N,) count of exact zeros; "dead": (N,)
    channels constant over their map; "channels": (N, k) int32, in drawing order; "maps":
    (N, H, W, k) those channels' maps; "channel_means", "channel_maxima": (N, k)}.
    All in float32: the layer's mean is the mean of its channel means, where the host
    (stats.summarize_layer) sums in float64; the two agree to float32 rounding.
    """
    ops = import_keras().ops
    maps = ops.cast(maps, "float32")  # (N, H, W, C)
    # a row's mean, then the rows': TensorFlow's one running float32 sum over a 1024 x 1024 map drifts by 1%
    channel_means = ops.mean(ops.mean(maps, axis=2), axis=1)  # (N, C)
    channel_maxima = ops.max(maps, axis=(1, 2))
    channel_minima = ops.min(maps, axis=(1, 2))
    order = drawing_order(channel_means, channel_maxima, reduction)  # (N, k)
    return {
        "minimum": ops.min(channel_minima, axis=-1),  # (N,)
        "mean": ops.mean(channel_means, axis=-1),
        "maximum": ops.max(channel_maxima, axis=-1),
        "zeros": ops.sum(ops.cast(ops.equal(maps, 0), "int32"), axis=(1, 2, 3)),
        "dead": ops.sum(ops.cast(ops.equal(channel_maxima, channel_minima), "int32"), axis=-1),
        "channels": order,
        "maps": gather_channels(maps, order),  # (N, H, W, k)
        "channel_means": ops.take_along_axis(channel_means, order, axis=-1),  # (N, k)
        "channel_maxima": ops.take_along_axis(channel_maxima, order, axis=-1),
    }


@functools.cache
def reduction_layer_class():
    """The Keras layer that runs reduce_maps in a model's graph; made on first use, as Keras is imported late."""
    keras = import_keras()

    class ReduceMaps(keras.layers.Layer):
        """Maps (N, H, W, C) -> reduce_maps's {field: array}; a layer, so its call sees the batch's shape."""

        def __init__(self, reduction: Reduction, **kwargs):
            super().__init__(**kwargs)
            self.reduction = reduction

        def call(self, maps):
            return reduce_maps(maps, self.reduction)

    return ReduceMaps


def reduction_layer(reduction: Reduction):
    return reduction_layer_class()(reduction)


def with_layers_reduced(feature_model, names, reduction: Reduction, unread=()):
    """`feature_model` with its outputs `names` (spatial maps) replaced by their reductions, `unread` left out.

    The new model shares the feature model's layers and weights; its outputs are
    {name: {field: array}} for the layers reduced, the others as they were.
    """
    keras = import_keras()
    outputs = {key: value for key, value in feature_model.output.items() if key not in unread}
    for name in names:
        outputs[name] = reduction_layer(reduction)(outputs[name])
    return keras.Model(feature_model.input, outputs)


def is_spatial(maps) -> bool:
    """Whether a symbolic output has maps (N, H, W, C), rather than a vector per photo."""
    return len(maps.shape) == 4
