"""Draw synthesised patterns: per layer a row of pairs (the channel's map on the photo | its pattern).

Without a photo, only the patterns are drawn, one row of them per layer.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from .figure import heat_over_grey, notebook_figure_class, stretched_to
from .stats import LayerSummary

FIGURE_WIDTH_INCHES = 12.0
PAIRS_PER_ROW = 4  # (map | pattern) pairs in one row of the figure
PATTERNS_PER_ROW = 8  # without a photo
MAP_ALPHA = 0.85  # opacity of a map's highest value over the grey photo
MAX_CELL_INCHES = 3.0  # a panel's side when there are few: the figure keeps its width, the panels centred
PHOTO_HEIGHT_INCHES = 3.0
TITLE_INCHES = 0.45
PHOTO_DISPLAY_MAX_PIXELS = 1200  # longest side of the photo as drawn


def draw_synthesis_figure(photo: Image.Image | None, photo_title: str, layers: Sequence[tuple[str, Sequence[int]]],
                          patterns: dict, summaries: dict[str, LayerSummary] | None = None, cmap: str = "viridis"):
    """A Matplotlib Figure. `layers`: [(layer, channels)]; `patterns`: {layer: {channel: Pattern}};
    `summaries`: {layer: LayerSummary} of the photo, whose drawn channels include `channels`."""
    if photo is not None:
        photo = photo.copy()
        photo.thumbnail((PHOTO_DISPLAY_MAX_PIXELS, PHOTO_DISPLAY_MAX_PIXELS))
    most = max([len(channels) for _, channels in layers] + [1])
    per_row = min(PAIRS_PER_ROW if photo is not None else PATTERNS_PER_ROW, most)
    columns = 2 * per_row if photo is not None else per_row
    rows_per_layer = [math.ceil(len(channels) / per_row) for _, channels in layers]
    cell = min(FIGURE_WIDTH_INCHES / columns, MAX_CELL_INCHES)
    margin = (FIGURE_WIDTH_INCHES - cell * columns) / 2  # each side of the panels, when few are wide enough
    heights = [PHOTO_HEIGHT_INCHES + TITLE_INCHES] if photo is not None else []
    for count in rows_per_layer:
        heights += [TITLE_INCHES * 0.7] + [cell + TITLE_INCHES] * count
    suptitle = TITLE_INCHES if photo is None and photo_title else 0.0  # over the grid, not in it
    figure = notebook_figure_class()(figsize=(FIGURE_WIDTH_INCHES, sum(heights) + suptitle), layout="constrained")
    has_margins = margin > 1e-6
    widths = [margin, *[cell] * columns, margin] if has_margins else [cell] * columns
    grid = figure.add_gridspec(len(heights), len(widths), height_ratios=heights, width_ratios=widths)
    first = 1 if has_margins else 0  # the grid's first column of panels
    panels = slice(first, first + columns)
    row = 0
    if photo is None and photo_title:
        figure.suptitle(photo_title, fontsize=11, parse_math=False)
    if photo is not None:
        axes = figure.add_subplot(grid[0, :])
        axes.imshow(np.asarray(photo), aspect="equal")
        axes.set_title(photo_title, fontsize=11, parse_math=False)
        axes.set_axis_off()
        row = 1
    for (layer, channels), count in zip(layers, rows_per_layer):
        heading = figure.add_subplot(grid[row, panels])
        heading.set_axis_off()
        size = patterns[layer][channels[0]].image.shape[0] if channels else 0
        text = heading.text(0.5, 0.0, layer_heading(layer, photo is not None, size), fontsize=10, ha="center",
                            va="bottom", transform=heading.transAxes, parse_math=False)  # just over its panels' titles
        text.set_in_layout(False)  # wider than a few panels: it may run past them, not squeeze them
        row += 1
        for slot, channel in enumerate(channels):
            line, place = divmod(slot, per_row)
            pattern = patterns[layer][channel]
            if photo is not None:
                summary = summaries[layer]
                draw_map_on_photo(figure.add_subplot(grid[row + line, first + 2 * place]), photo, summary, channel,
                                  cmap)
                photo_mean = float(summary.channel_means[list(summary.channels).index(channel)])
                draw_pattern(figure.add_subplot(grid[row + line, first + 2 * place + 1]), pattern, photo_mean)
            else:
                draw_pattern(figure.add_subplot(grid[row + line, first + place]), pattern, None, channel)
        row += count
    return figure


def layer_heading(layer: str, with_photo: bool, size: int) -> str:
    """A layer's heading; `size`: the patterns' side, at which they are fed (the photo is fed at the network's)."""
    if with_photo:
        return (f"{layer}: each channel's map on the photo, then the pattern made to excite it "
                f"(mean activation: photo | pattern, fed at its own {size} px)")
    return f"{layer}: images optimised to excite each channel (mean activation on the image, fed at its {size} px)"


def draw_map_on_photo(axes, photo: Image.Image, summary: LayerSummary, channel: int, cmap: str) -> None:
    """The photo in grey with one channel's map over it in colour, its opacity rising with the value
    (the map's own range), stretched to the photo's size: where the channel is silent, the grey photo."""
    import matplotlib

    index = list(summary.channels).index(channel)
    channel_map = summary.maps[:, :, index].astype(np.float32)
    low, high = float(channel_map.min()), float(channel_map.max())
    scaled = (channel_map - low) / (high - low) if high > low else np.zeros_like(channel_map)
    grey = np.asarray(photo.convert("L"), dtype=np.float32)
    heat = stretched_to(scaled, grey.shape)
    axes.imshow(heat_over_grey(grey, heat, matplotlib.colormaps[cmap], MAP_ALPHA), aspect="equal")
    axes.set_title(f"{channel}: photo {summary.channel_means[index]:.3g}", fontsize=8)
    axes.set_axis_off()


def draw_pattern(axes, pattern, photo_mean: float | None, channel: int | None = None) -> None:
    axes.imshow(pattern.image, aspect="equal")
    if photo_mean is not None:
        times = f" ({times_label(pattern.activation / photo_mean)})" if photo_mean > 0 else ""
        axes.set_title(f"pattern {pattern.activation:.3g}{times}", fontsize=8)
    else:
        axes.set_title(f"{channel}: {pattern.activation:.3g}", fontsize=8)
    axes.set_axis_off()


def times_label(ratio: float) -> str:
    """How many times the photo's activation the pattern's is: "1.4×", "12×"."""
    return f"{ratio:.1f}×" if ratio < 9.95 else f"{ratio:.0f}×"
