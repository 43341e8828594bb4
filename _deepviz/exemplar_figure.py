"""Draw a layer's dataset exemplars: one row per channel, each photo cropped around its strongest position.

The crop of an exemplar: the channel's map grid is stretched over the whole photo (the
network sees the photo squashed to its input, so each grid cell covers width/columns by
height/rows photo pixels); the crop is the square centred on the strongest cell with a
side of CROP_CELLS cells (the longer cell side) or MIN_CROP_FRACTION of the photo's
shorter side, whichever is larger, at most the shorter side, moved inside the photo.
The channel's map is laid over it lightly, stretched the same way; a thin box marks the cell.
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from .errors import DeepvizError
from .exemplars import Exemplar
from .images import in_grey, load_image
from .titles import shorten, wrap

CROP_CELLS = 3  # the crop's side, in grid cells, at least
MIN_CROP_FRACTION = 1 / 3  # ... and at least this fraction of the photo's shorter side
CROP_PIXELS = 128  # longest side of a crop as stored in the figure: keeps files small
MAP_ALPHA = 0.35  # the channel's map over the crop, lightly
TILE_INCHES = 1.35
TITLE_POINTS = 9
LABEL_POINTS = 7
TEXT_MARGIN_POINTS = 4  # kept free at each end of a title or label
ROWS_MAX = 64  # channels drawn in one figure (all are printed and in --json): 64 rows are about 11,000 pixels tall
BOX_LINE_POINTS = 0.6  # the box around the strongest cell


def crop_box(photo_size: tuple[int, int], position: tuple[int, int], grid: tuple[int, int]) -> tuple[int, ...]:
    """(left, top, right, bottom) in photo pixels: the square around the grid cell at `position`.

    `photo_size` is (width, height); `position` (row, column) of a `grid` of (rows, columns).
    """
    width, height = photo_size
    (row, column), (rows, columns) = position, grid
    cell_width, cell_height = width / columns, height / rows
    shorter = min(width, height)
    side = min(shorter, max(CROP_CELLS * max(cell_width, cell_height), MIN_CROP_FRACTION * shorter))
    centre_x, centre_y = (column + 0.5) * cell_width, (row + 0.5) * cell_height
    left = min(max(centre_x - side / 2, 0), width - side)
    top = min(max(centre_y - side / 2, 0), height - side)
    return round(left), round(top), round(left + side), round(top + side)


def synthesized_patterns(network, layer: str, channels: Sequence[int]) -> dict[int, np.ndarray]:
    """The channels' synthesized patterns already cached by the synthesis stage; {} without it."""
    try:
        from .synthesis import cached_patterns
    except ImportError:  # the feature-visualisation stage is not part of this installation
        return {}
    return cached_patterns(network, layer, channels)


def distinct_names(paths: Iterable[Path]) -> dict[Path, str]:
    """Each path's file name, with as many of its folders as tell it from other paths of the same name.

    ["a/cat/001.jpg", "b/dog/001.jpg", "c/x.jpg"] -> "cat/001.jpg", "dog/001.jpg", "x.jpg".
    """
    paths = list(dict.fromkeys(paths))
    names = {path: path.name for path in paths}
    depth = 1
    while True:
        counts = collections.Counter(names.values())
        clashing = [path for path in paths if counts[names[path]] > 1 and depth < len(path.parts)]
        if not clashing:
            return names
        depth += 1
        for path in clashing:
            names[path] = Path(*path.parts[-depth:]).as_posix()  # at full depth, the path as given


def draw_exemplars(layer: str, rows: dict[int, list[Exemplar]], channel_means: dict[int, float],
                   patterns: dict[int, np.ndarray], title: str, cmap: str = "viridis", dpi: int = 100,
                   names: dict[Path, str] | None = None, grey: bool = False):
    """A Matplotlib Figure: per channel, its synthesized pattern (when given) then its exemplars' crops.

    The first ROWS_MAX channels; the title should say so where there are more. `names`: what to
    call each photo (default: distinct_names of the photos the rows show). `grey`: the crops in
    grey, as a network that takes greyscale images sees them.
    """
    from matplotlib.figure import Figure

    rows = dict(list(rows.items())[:ROWS_MAX])

    per_row = max((len(exemplars) for exemplars in rows.values()), default=1)
    pattern_column = 1 if any(channel in patterns for channel in rows) else 0
    columns = max(per_row + pattern_column, 1)
    figure = Figure(figsize=(columns * TILE_INCHES, max(len(rows), 1) * (TILE_INCHES + 0.35) + 0.6),
                    dpi=dpi, layout="constrained")
    title_width = columns * TILE_INCHES * 72 - 2 * TEXT_MARGIN_POINTS
    figure.suptitle("\n".join(wrap(title.split(" "), " ", TITLE_POINTS, dpi, title_width)), fontsize=TITLE_POINTS,
                    parse_math=False)
    grid = figure.add_gridspec(max(len(rows), 1), columns)
    names = names or distinct_names(exemplar.path for exemplars in rows.values() for exemplar in exemplars)
    read_photo = functools.lru_cache(maxsize=8)(read_or_none)
    for row, (channel, exemplars) in enumerate(rows.items()):
        tiles = [figure.add_subplot(grid[row, column]) for column in range(columns)]
        for axes in tiles:
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_frame_on(False)
        tiles[0].set_ylabel(f"{layer}\nchannel {channel}\nmean {channel_means.get(channel, float('nan')):.3g}",
                            fontsize=7, parse_math=False)
        if pattern_column and channel in patterns:
            tiles[0].imshow(patterns[channel], interpolation="antialiased")
            tiles[0].set_title("synthesized", fontsize=7)
        for axes, exemplar in zip(tiles[pattern_column:], exemplars):
            photo = read_photo(exemplar.path)
            draw_crop(axes, exemplar, names[exemplar.path], in_grey(photo) if grey and photo else photo, cmap)
    return figure


def read_or_none(path: Path) -> Image.Image | None:
    try:
        return load_image(path, notes=[])
    except DeepvizError:  # gone or changed since it was read: its tile says so
        return None


def draw_crop(axes, exemplar: Exemplar, name: str, photo: Image.Image | None, cmap: str) -> None:
    """The exemplar's crop with the channel's map over it, labelled with its `name` and activation."""
    from matplotlib.patches import Rectangle
    from matplotlib.patheffects import withStroke

    label = shorten(name, LABEL_POINTS, axes.figure.dpi, TILE_INCHES * 72 - 2 * TEXT_MARGIN_POINTS)
    axes.set_title(f"{label}\n{exemplar.activation:.4g}", fontsize=LABEL_POINTS, parse_math=False)  # as printed
    if photo is None:
        axes.text(0.5, 0.5, "unreadable now", ha="center", va="center", fontsize=7, transform=axes.transAxes)
        return
    left, top, right, bottom = crop_box(photo.size, exemplar.position, exemplar.grid)
    crop = photo.crop((left, top, right, bottom))
    crop.thumbnail((CROP_PIXELS, CROP_PIXELS))
    axes.imshow(np.asarray(crop), extent=(left, right, bottom, top), interpolation="antialiased")
    width, height = photo.size
    axes.imshow(exemplar.map, extent=(0, width, height, 0), cmap=cmap, alpha=MAP_ALPHA, interpolation="bilinear")
    (row, column), (rows, columns) = exemplar.position, exemplar.grid
    cell_width, cell_height = width / columns, height / rows
    # the cell, within the crop: a panorama's cells are wider than a crop as tall as the photo
    cell_left, cell_right = max(column * cell_width, left), min((column + 1) * cell_width, right)
    cell_top, cell_bottom = max(row * cell_height, top), min((row + 1) * cell_height, bottom)
    if np.ptp(exemplar.map) > 0:  # a map that is the same everywhere (a silent channel) has no strongest cell
        # white edged in black, to show on any photo, and at the photo's edge against the figure's white
        axes.add_patch(Rectangle((cell_left, cell_top), cell_right - cell_left, cell_bottom - cell_top, fill=False,
                                 edgecolor="white", linewidth=BOX_LINE_POINTS,
                                 path_effects=[withStroke(linewidth=3 * BOX_LINE_POINTS, foreground="black")],
                                 clip_on=False))  # whole at the photo's edge too
    axes.set_xlim(left, right)
    axes.set_ylim(bottom, top)
