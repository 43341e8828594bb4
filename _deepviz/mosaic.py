"""A layer's tiles scaled (each its own range, or one for the layer), laid out, coloured and labelled as one image."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .stats import LayerSummary


MOSAIC_ASPECT = 4.0  # a layer's grid of tiles aims to be this many times wider than tall
TILE_GAP = 1  # pixels of background between tiles
GAP_COLOUR = "white"  # gaps and empty slots: the figure's background
MIN_LABEL_TILE_PIXELS = 24  # labels are sized as on a tile at least this wide, then scaled with the tile
LABEL_BACKGROUND = (0, 0, 0, 140)  # a translucent box under each label, so it reads on any colour


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
    shape = mosaic_shape(count, (height, width), columns)
    slots = np.zeros((rows * columns, height + TILE_GAP, width + TILE_GAP), dtype=np.float32)
    empty = np.ones_like(slots, dtype=bool)
    slots[:count, :height, :width] = np.moveaxis(tiles, -1, 0)
    empty[:count, :height, :width] = False
    # (rows, columns, H+gap, W+gap) -> (rows, H+gap, columns, W+gap) -> one image, less the last gaps
    padded = (rows * (height + TILE_GAP), columns * (width + TILE_GAP))
    mosaic = slots.reshape(rows, columns, height + TILE_GAP, width + TILE_GAP).transpose(0, 2, 1, 3)
    mask = empty.reshape(rows, columns, height + TILE_GAP, width + TILE_GAP).transpose(0, 2, 1, 3)
    cropped = (slice(0, shape[0]), slice(0, shape[1]))
    return np.ma.MaskedArray(mosaic.reshape(padded)[cropped], mask=mask.reshape(padded)[cropped])


def mosaic_shape(count: int, tile_shape: tuple, columns: int) -> tuple[int, int]:
    """(height, width) in map pixels of `count` tiles laid out in `columns`, a gap between neighbours."""
    height, width = tile_shape
    rows = math.ceil(count / columns)
    return rows * (height + TILE_GAP) - TILE_GAP, columns * (width + TILE_GAP) - TILE_GAP


def mosaic_columns(count: int, height: int, width: int) -> int:
    """Columns that make the grid about MOSAIC_ASPECT times wider than tall."""
    columns = max(1, math.ceil(math.sqrt(count * MOSAIC_ASPECT * height / width)))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    return math.ceil(count / rows)


def paint_mosaic(scaled: ScaledTiles, columns: int, colormap, size: tuple[int, int], labels: Sequence[str],
                 summary_image: np.ndarray | None = None) -> np.ndarray:
    """The tiles as one RGBA image of `size` (width, height) pixels: coloured, enlarged, each tile labelled.

    Painted at the size the figure shows it, so Matplotlib draws it 1:1 without resampling.
    Tiles are enlarged by nearest neighbour (every map cell stays a flat block). With a
    `summary_image` (H, W, 3) in [0, 1], the first slot holds it in its own colours and
    `labels` name it first.
    """
    tiles = scaled.tiles
    if summary_image is not None:  # an empty first slot, where the summary is laid
        tiles = np.concatenate([np.full(tiles.shape[:2] + (1,), scaled.vmin, tiles.dtype), tiles], axis=-1)
    laid = compose_mosaic(tiles, columns)  # (rows*(H+gap)-gap, columns*(W+gap)-gap), gaps masked
    colours = colormap.with_extremes(bad=GAP_COLOUR)((laid - scaled.vmin) / (scaled.vmax - scaled.vmin), bytes=True)
    if summary_image is not None:
        height, width, _ = summary_image.shape
        colours[:height, :width, :3] = np.round(summary_image * 255)
    image = Image.fromarray(np.ascontiguousarray(colours[..., :3])).resize(size, Image.Resampling.NEAREST)
    label_tiles(image, labels, columns, tiles.shape[:2], laid.shape)
    return np.asarray(image.convert("RGBA"))  # (height, width, 4) uint8, opaque


def label_tiles(image: Image.Image, labels: Sequence[str], columns: int, tile_shape: tuple, mosaic_shape: tuple):
    """Write each tile's label (its channel index) in its top-left corner, white on a dark box.

    `image` is the mosaic of `mosaic_shape` map pixels enlarged to its size; thousands of
    labels take milliseconds this way, where as many Matplotlib Texts take seconds.
    """
    height, width = tile_shape
    scale_x, scale_y = image.width / mosaic_shape[1], image.height / mosaic_shape[0]  # image pixels per map pixel
    font = ImageFont.load_default(size=label_font_pixels(width, width * scale_x))
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA colours blend over the RGB tiles
    for slot, label in enumerate(labels):
        row, column = divmod(slot, columns)
        corner = (round(column * (width + TILE_GAP) * scale_x), round(row * (height + TILE_GAP) * scale_y))
        box = draw.textbbox(corner, label, font=font, anchor="lt")
        draw.rectangle((corner[0], corner[1], box[2] + 1, box[3] + 1), fill=LABEL_BACKGROUND)
        draw.text((corner[0] + 1, corner[1] + 1), label, font=font, fill=(255, 255, 255, 255), anchor="lt")


def label_font_pixels(width: int, tile_pixels: float) -> int:
    """A label's font size on a tile drawn `tile_pixels` wide: a fifth of the tile, from 9 to 18 pixels.

    The size is chosen on the tile enlarged by a whole factor to at least
    MIN_LABEL_TILE_PIXELS (and at least its map's width), then scaled to `tile_pixels`:
    on tiny tiles the label shrinks with the tile rather than covering it.
    """
    whole_tile = width * max(1, math.ceil(max(tile_pixels, MIN_LABEL_TILE_PIXELS) / width))
    return max(1, round(np.clip(whole_tile * 0.2, 9, 18) * tile_pixels / whole_tile))
