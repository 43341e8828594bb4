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
MIN_LABEL_PIXELS = 7  # a smaller label cannot be read: tiles too small for one are left unlabelled
LABEL_BACKGROUND = (0, 0, 0, 140)  # a translucent box under each label, so it reads on any colour
LABEL_AREA_MAX = 0.15  # of its tile a label's box may cover: more would hide the map (its corner's peaks)


@dataclasses.dataclass
class ScaledTiles:
    tiles: np.ndarray  # (H, W, n), ready for imshow with vmin/vmax below
    vmin: float
    vmax: float
    colorbar_label: str
    colorbar_ticks: dict  # {value: label}; empty for a plain numeric colour bar


def scale_each_channel(maps: np.ndarray, layer: LayerSummary) -> ScaledTiles:
    """Each tile from its own minimum (0) to its own maximum (1); a constant tile is 0.

    A tile with inf or NaN values (a model whose values overflowed) comes out NaN, drawn in the colour map's
    colour for bad values, without NumPy's warnings.
    """
    with np.errstate(invalid="ignore"):
        low = maps.min(axis=(0, 1), keepdims=True)
        span = maps.max(axis=(0, 1), keepdims=True) - low
        tiles = (maps - low) / np.where(span > 0, span, 1.0)
    return ScaledTiles(tiles, 0.0, 1.0, "each tile: its own min to max", {0.0: "tile min", 1.0: "tile max"})


def scale_whole_layer(maps: np.ndarray, layer: LayerSummary) -> ScaledTiles:
    """All tiles on one scale: the layer's minimum to maximum activation.

    Where those are not finite (a model whose values overflowed), the finite values drawn set the
    scale instead, and the others are drawn as bad values: a NaN range would leave every tile blank.
    """
    low, high = layer.minimum, layer.maximum
    if not (np.isfinite(low) and np.isfinite(high)):
        finite = maps[np.isfinite(maps)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    vmax = high if high > low else low + 1.0
    return ScaledTiles(maps, low, vmax, "activation (one scale for the layer)", {})


NORMALISATIONS: dict[str, Callable[[np.ndarray, LayerSummary], ScaledTiles]] = {
    "channel": scale_each_channel,
    "layer": scale_whole_layer,
}


NORMALISATION_PHRASES = {"channel": "each tile scaled to its own range", "layer": "one scale for the layer"}


def compose_mosaic(tiles: np.ndarray, columns: int, gap: int = TILE_GAP) -> np.ma.MaskedArray:
    """Lay (H, W, n) tiles out row by row in one 2-D array, `gap` pixels apart; gaps and empty slots masked."""
    height, width, count = tiles.shape
    rows = math.ceil(count / columns)
    slots = np.zeros((rows * columns, height + gap, width + gap), dtype=np.float32)
    empty = np.ones_like(slots, dtype=bool)
    slots[:count, :height, :width] = np.moveaxis(tiles, -1, 0)
    empty[:count, :height, :width] = False
    # (rows, columns, H+gap, W+gap) -> (rows, H+gap, columns, W+gap) -> one image, less the last gaps
    padded = (rows * (height + gap), columns * (width + gap))
    mosaic = slots.reshape(rows, columns, height + gap, width + gap).transpose(0, 2, 1, 3)
    mask = empty.reshape(rows, columns, height + gap, width + gap).transpose(0, 2, 1, 3)
    cropped = (slice(0, padded[0] - gap), slice(0, padded[1] - gap))
    return np.ma.MaskedArray(mosaic.reshape(padded)[cropped], mask=mask.reshape(padded)[cropped])


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """Where a layer's tiles are drawn, in whole pixels: every tile the same size, every gap the same."""

    columns: int
    rows: int
    tile_width: int
    tile_height: int
    gap: int
    width: int  # the whole mosaic's, tiles and any pixels left over on the right

    @property
    def height(self) -> int:
        return self.rows * (self.tile_height + self.gap) - self.gap

    def corner(self, slot: int) -> tuple[int, int]:
        """(x, y) of a slot's top-left pixel."""
        row, column = divmod(slot, self.columns)
        return column * (self.tile_width + self.gap), row * (self.tile_height + self.gap)


def tile_grid(count: int, tile_shape: tuple, width: int) -> TileGrid:
    """`count` tiles of `tile_shape` (H, W) map pixels laid out in `width` drawn pixels.

    The gap is one map pixel at the tiles' scale, at least one drawn pixel; tiles keep
    their maps' aspect ratio; the pixels that do not divide evenly are left on the right.
    """
    map_height, map_width = tile_shape
    columns = mosaic_columns(count, map_height, map_width)
    scale = width / (columns * (map_width + TILE_GAP) - TILE_GAP)  # drawn pixels per map pixel
    gap = max(1, round(TILE_GAP * scale))
    columns = min(columns, max(1, (width + gap) // (1 + gap)))  # every tile at least one pixel: more rows
    tile_width = max(1, (width - gap * (columns - 1)) // columns)
    tile_height = max(1, round(tile_width * map_height / map_width))
    return TileGrid(columns, math.ceil(count / columns), tile_width, tile_height, gap, width)


def mosaic_columns(count: int, height: int, width: int) -> int:
    """Columns that make the grid about MOSAIC_ASPECT times wider than tall."""
    columns = max(1, math.ceil(math.sqrt(count * MOSAIC_ASPECT * height / width)))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    return math.ceil(count / rows)


def paint_mosaic(scaled: ScaledTiles, grid: TileGrid, colormap, labels: Sequence[str], label_pixels: int | None,
                 summary_image: np.ndarray | None = None) -> np.ndarray:
    """The tiles as one RGBA image (grid.height, grid.width): resized to the grid's tiles, coloured, labelled.

    `label_pixels` is label_font_pixels(labels, grid, dpi); None leaves the tiles unlabelled.

    Painted at the size the figure shows it, so Matplotlib draws it 1:1 without resampling.
    A tile drawn larger than its map shows each map cell as a flat block (nearest
    neighbour); one drawn smaller shows each drawn pixel as the mean of the cells it
    covers, so no row or column of a map is dropped. With a `summary_image` (H, W, 3) in
    [0, 1], the first slot holds it in its own colours and `labels` name it first.
    """
    tiles = scaled.tiles
    if summary_image is not None:  # an empty first slot, where the summary is laid
        tiles = np.concatenate([np.full(tiles.shape[:2] + (1,), scaled.vmin, tiles.dtype), tiles], axis=-1)
    drawn = resized_tiles(tiles, grid.tile_height, grid.tile_width)  # (tile height, tile width, n)
    canvas = np.full((grid.height, grid.width), np.nan, np.float32)  # NaN: gaps, empty slots, leftover pixels
    laid = compose_mosaic(drawn, grid.columns, grid.gap).filled(np.nan)
    canvas[:, :laid.shape[1]] = laid
    canvas[np.isinf(canvas)] = np.nan  # a value that overflowed: drawn as NaN is, not as the scale's top or bottom
    colours = colormap.with_extremes(bad=GAP_COLOUR)((canvas - scaled.vmin) / (scaled.vmax - scaled.vmin), bytes=True)
    if summary_image is not None:
        summary = resized_tiles(summary_image, grid.tile_height, grid.tile_width)  # (tile height, tile width, 3)
        colours[:grid.tile_height, :grid.tile_width, :3] = np.round(summary * 255)
    image = Image.fromarray(np.ascontiguousarray(colours[..., :3]))
    if label_pixels is not None:
        label_tiles(image, labels, grid, label_pixels)
    return np.asarray(image.convert("RGBA"))  # (height, width, 4) uint8, opaque


def resized_tiles(tiles: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, n) tiles resized to (height, width, n), one axis at a time.

    Enlarging, each drawn pixel takes its nearest map pixel; shrinking, the mean of the map
    pixels it covers, each by the length it covers.
    """
    return resized_along(resized_along(tiles, 0, height), 1, width)


def resized_along(tiles: np.ndarray, axis: int, target: int) -> np.ndarray:
    source = tiles.shape[axis]
    if target >= source:
        nearest = ((np.arange(target) + 0.5) * source / target).astype(int)
        return np.take(tiles, nearest, axis=axis)
    finite = np.isfinite(tiles)
    if not finite.all():  # inf or NaN (a model whose values overflowed) is NaN where drawn, and only there:
        # in the running sum below it would spread along the rest of its row or column
        means = resized_along(np.where(finite, tiles, 0.0).astype(np.float32), axis, target)
        covered = resized_along(finite.astype(np.float32), axis, target)  # the fraction of finite values
        return np.where(covered > 1 - 1e-4, means, np.nan).astype(np.float32)
    # The mean over [a, b) is (I(b) - I(a)) / (b - a), I the running sum, linear between map pixels.
    # (Elementwise, not a matrix product: BLAS threads would spin on a worker's neighbour's core.)
    edges = np.arange(target + 1) * source / target  # drawn pixel i covers [edges[i], edges[i + 1])
    running = np.cumsum(tiles, axis=axis, dtype=np.float64)
    running = np.concatenate([np.zeros_like(np.take(running, [0], axis=axis)), running], axis=axis)  # I(0..source)
    below = np.minimum(edges.astype(int), source - 1)
    fraction = (edges - below).reshape([-1 if a == axis else 1 for a in range(tiles.ndim)])
    at_edges = np.take(running, below, axis=axis) * (1 - fraction) + np.take(running, below + 1, axis=axis) * fraction
    return (np.diff(at_edges, axis=axis) * (target / source)).astype(np.float32)


def label_tiles(image: Image.Image, labels: Sequence[str], grid: TileGrid, size: int) -> None:
    """Write each tile's label (its channel index) in its top-left corner, white on a dark box, `size` pixels.

    Thousands of labels take milliseconds this way, where as many Matplotlib Texts take seconds.
    """
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA colours blend over the RGB tiles
    for slot, label in enumerate(labels):
        corner = grid.corner(slot)
        box = draw.textbbox(corner, label, font=font, anchor="lt")
        draw.rectangle((corner[0], corner[1], box[2] + 1, box[3] + 1), fill=LABEL_BACKGROUND)
        draw.text((corner[0] + 1, corner[1] + 1), label, font=font, fill=(255, 255, 255, 255), anchor="lt")


def label_font_pixels(labels: Sequence[str], grid: TileGrid, dpi: int = 100) -> int | None:
    """The labels' font size: a fifth of a tile's width, 9 to 18 pixels at dpi 100 (6.5 to 13
    points, scaled with the dpi like the rest of the text), smaller (down to MIN_LABEL_PIXELS)
    where the longest label's box would be wider than a tile, taller than half of one or cover
    more than LABEL_AREA_MAX of it; None where even that does not fit."""
    longest = max(labels, key=len, default="")
    scale = dpi / 100
    low, high = max(MIN_LABEL_PIXELS, round(9 * scale)), max(MIN_LABEL_PIXELS, round(18 * scale))
    largest = int(np.clip(round(grid.tile_width * 0.2), low, high))
    for size in range(largest, MIN_LABEL_PIXELS - 1, -1):
        _, _, right, bottom = ImageFont.load_default(size=size).getbbox(longest, anchor="lt")
        box_width, box_height = right + 2, bottom + 2
        if (box_width <= grid.tile_width and box_height <= grid.tile_height / 2
                and box_width * box_height <= LABEL_AREA_MAX * grid.tile_width * grid.tile_height):
            return size
    return None
