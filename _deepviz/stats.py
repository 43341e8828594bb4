"""A layer of one photo reduced to numbers: statistics, the channels ranked, a PCA summary."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from .errors import DeepvizError


DEFAULT_MAX_MAPS = 64
DEFAULT_TOP = 3


def channel_means(maps: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (C,) float32: each channel's mean, summed in float64 (float32's running sum over a
    1024 x 1024 map drifts by 1%)."""
    return maps.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)


def nan_as_lowest(scores: np.ndarray) -> np.ndarray:
    """`scores` with NaN (a model whose values overflowed) as -inf, below every other score; inf stays inf."""
    return np.where(np.isnan(scores), -np.inf, scores)


def descending(scores: np.ndarray) -> np.ndarray:
    """Channel indices, highest score first; equal scores in index order; NaN last, as -inf."""
    return np.argsort(-nan_as_lowest(scores), kind="stable")


def rank_by_mean(maps: np.ndarray) -> np.ndarray:
    return descending(channel_means(maps))


def rank_by_max(maps: np.ndarray) -> np.ndarray:
    return descending(maps.max(axis=(0, 1)))


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


@np.errstate(invalid="ignore", over="ignore")  # inf and NaN maps (a model whose values overflowed) say so themselves
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
        means, maxima = channel_means(kept), kept.max(axis=(0, 1))
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
        summary_image=layer_summary_image(name, maps, summary) if summary and spatial else None,
    )


def layer_summary_image(name: str, maps: np.ndarray, summary: str) -> np.ndarray:
    """The layer at a glance (SUMMARIES), or DeepvizError where its maps are not all finite numbers."""
    unfinished = maps.size - np.count_nonzero(np.isfinite(maps))
    if unfinished:
        raise DeepvizError(f"layer {name}: {unfinished:,} of its values are not finite (inf or NaN), and --summary "
                           f"{summary} needs finite ones; leave --summary out, or look at the layers before it")
    return SUMMARIES[summary](maps)


def summary_from_reduced(name: str, reduced: dict, channel_count: int, ranking: str,
                         chosen: Sequence[int] | None = None) -> LayerSummary:
    """One image's LayerSummary of a spatial layer, from its reduction on the model's device.

    `reduced` is one photo's part of reduction.reduce_maps's outputs: its statistics, the
    drawn channels (k) and their (H, W, k) maps. The result is what summarize_layer makes of
    the layer's full maps (H, W, `channel_count`), the statistics to float32 rounding.
    """
    maps = np.asarray(reduced["maps"], dtype=np.float32)  # (H, W, k)
    shape = (*maps.shape[:2], channel_count)
    return LayerSummary(
        name=name,
        shape=shape,
        minimum=float(reduced["minimum"]),
        mean=float(reduced["mean"]),
        maximum=float(reduced["maximum"]),
        zeros=int(reduced["zeros"]) / int(np.prod(shape)),
        dead=int(reduced["dead"]),
        channels=np.asarray(reduced["channels"], dtype=np.intp),
        maps=maps,
        ranking="chosen" if chosen is not None else ranking,
        channel_means=np.asarray(reduced["channel_means"], dtype=np.float32),
        channel_maxima=np.asarray(reduced["channel_maxima"], dtype=np.float32),
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
