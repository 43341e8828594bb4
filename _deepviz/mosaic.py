"""A layer's tiles scaled (each its own range, or one for the layer) and laid out as one image."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from .stats import LayerSummary


MOSAIC_ASPECT = 4.0  # a layer's grid of tiles aims to be this many times wider than tall
TILE_GAP = 1  # pixels of background between tiles


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
