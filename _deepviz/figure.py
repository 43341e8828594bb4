"""Draw one photo's figure: the photo titled with its predictions, Grad-CAM heatmaps, one panel per layer."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import io
import math
from typing import Sequence

import numpy as np
from PIL import Image

from .errors import UsageError
from .mosaic import NORMALISATION_PHRASES, NORMALISATIONS, TILE_GAP, compose_mosaic, mosaic_columns
from .stats import LayerSummary, channel_phrase


DEFAULT_DPI = 100
DEFAULT_CMAP = "viridis"
FIGURE_WIDTH_INCHES = 12.0
COLORBAR_WIDTH_RATIO = 0.02
PANEL_WIDTH_INCHES = FIGURE_WIDTH_INCHES * (1 - COLORBAR_WIDTH_RATIO) - 1.0  # about, after margins
MIN_LABEL_TILE_PIXELS = 24  # a tile's channel-index label is drawn on at least this many pixels
PHOTO_MAX_HEIGHT_INCHES = 5.0
PHOTO_DISPLAY_MAX_PIXELS = 1600  # longest side of the photo as drawn in the figure
CAM_CMAP = "inferno"  # Grad-CAM heat, laid over the photo in grey
CAM_MAX_OPACITY = 0.85  # the heat's opacity where it is largest; 0 where there is none
# Titles of axes drawn without axis (the photo, the tiles) sit on the axes' top edge, where
# Matplotlib would put them; a given height spares it measuring the axes for each title on
# each draw (0.07 s of a default figure's layout and 0.05 s of its building).
TITLE_HEIGHT = 1.0


def check_colormap(name: str) -> None:
    import matplotlib

    if name not in matplotlib.colormaps:
        close = difflib.get_close_matches(name, list(matplotlib.colormaps), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UsageError(f"unknown colormap {name!r}{hint} (see matplotlib.colormaps)")


@dataclasses.dataclass
class FigureStyle:
    """What the figure looks like, beyond the layers it shows."""

    photo_title: str
    norm: str  # a key of NORMALISATIONS
    cmap: str
    dpi: int
    cam_layer: str = ""


def photo_title(image_name: str, photo: Image.Image, network, predictions) -> str:
    size = f"{image_name} ({photo.width}×{photo.height})"
    if network.class_names is None:
        return f"{size}\npredictions unavailable: {network.no_predictions_reason}"
    ranked = "   ".join(f"{rank}. {name} {p * 100:.1f}%" for rank, (name, p) in enumerate(predictions, 1))
    if not network.trained:
        return f"{size}\nuntrained network (random weights): {ranked}"
    return f"{size}\n{ranked}"


def draw_figure(photo: Image.Image, layers: Sequence[LayerSummary], style: FigureStyle, cams=None):
    """A Matplotlib Figure: the photo on top, its Grad-CAM heatmaps if any, then one panel per layer.

    `cams` is a list of (class name, probability, heatmap in [0, 1]).
    """
    display = display_photo(photo)
    photo_height = min(PHOTO_MAX_HEIGHT_INCHES, PANEL_WIDTH_INCHES * display.height / display.width)
    mosaics = [layer_mosaic(layer, style.norm) for layer in layers]
    heights = [max(photo_height, 0.3) + 0.8] + [panel_height(m) for m in mosaics]
    if cams:
        cam_height = min(PHOTO_MAX_HEIGHT_INCHES, PANEL_WIDTH_INCHES / len(cams) * display.height / display.width)
        heights.insert(1, max(cam_height, 0.3) + 0.6)

    figure = notebook_figure_class()(figsize=(FIGURE_WIDTH_INCHES, sum(heights)), dpi=style.dpi, layout="constrained")
    grid = figure.add_gridspec(
        len(heights), 2, height_ratios=heights, width_ratios=[1 - COLORBAR_WIDTH_RATIO, COLORBAR_WIDTH_RATIO]
    )
    photo_axes = figure.add_subplot(grid[0, :])
    shown = shrunk_to(display, PANEL_WIDTH_INCHES * style.dpi, photo_height * style.dpi)
    photo_axes.imshow(np.asarray(shown), aspect="equal", interpolation="antialiased")
    photo_axes.set_title(style.photo_title, fontsize=11, y=TITLE_HEIGHT)
    photo_axes.set_axis_off()
    if cams:
        cam_grid = grid[1, 0].subgridspec(1, len(cams))
        for column, cam in enumerate(cams):
            draw_cam(figure.add_subplot(cam_grid[0, column]), display, cam, style.cam_layer)
        draw_cam_colorbar(figure, figure.add_subplot(grid[1, 1]))
    for row, (layer, mosaic) in enumerate(zip(layers, mosaics), start=2 if cams else 1):
        axes, colorbar_axes = figure.add_subplot(grid[row, 0]), figure.add_subplot(grid[row, 1])
        if layer.is_spatial:
            draw_tiles(figure, axes, colorbar_axes, layer, mosaic, style)
        else:
            draw_vector(axes, colorbar_axes, layer)
    return figure


@functools.cache
def notebook_figure_class():
    """matplotlib's Figure, able to show itself in Jupyter without pyplot (whose global state stays untouched)."""
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png")
            return buffer.getvalue()

    return NotebookFigure
def display_photo(photo: Image.Image) -> Image.Image:
    """The photo as the figure shows it: at most PHOTO_DISPLAY_MAX_PIXELS on its longer side."""
    display = photo.copy()
    display.thumbnail((PHOTO_DISPLAY_MAX_PIXELS, PHOTO_DISPLAY_MAX_PIXELS))
    return display


def shrunk_to(photo: Image.Image, width: float, height: float) -> Image.Image:
    """The photo shrunk to fit width x height pixels, about as the figure draws it.

    Pillow resamples far faster than Matplotlib, which then has little left to do.
    """
    if photo.width <= width and photo.height <= height:
        return photo
    shrunk = photo.copy()
    shrunk.thumbnail((max(1, round(width)), max(1, round(height))), Image.Resampling.LANCZOS)
    return shrunk


def draw_cam(axes, display: Image.Image, cam, layer: str) -> None:
    """One class's Grad-CAM heatmap over the photo in grey: cold areas show the photo, hot ones the heat.

    The heat's opacity rises with its value, so the photo's own colours never pass for heat.
    """
    name, probability, heatmap = cam
    stretched = Image.fromarray(heatmap.astype(np.float32), mode="F").resize(display.size, Image.Resampling.BILINEAR)
    heat = np.clip(np.asarray(stretched), 0.0, 1.0)  # (H, W) at the photo's size
    colours = cam_colormap()(heat)  # (H, W, 4)
    colours[..., 3] = CAM_MAX_OPACITY * heat
    axes.imshow(np.asarray(display.convert("L")), cmap="gray", vmin=0, vmax=255, aspect="equal")
    axes.imshow(colours, aspect="equal", interpolation="antialiased")
    title = f"Grad-CAM ({layer}): {name} {probability * 100:.1f}%"
    if not heatmap.any():
        title = f"{name} {probability * 100:.1f}%: no positive evidence at {layer}"
    axes.set_title(title, fontsize=9)
    axes.set_axis_off()


def draw_cam_colorbar(figure, colorbar_axes) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    colorbar = figure.colorbar(ScalarMappable(Normalize(0, 1), cam_colormap()), cax=colorbar_axes)
    colorbar.set_label("fraction of this class's largest value", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)


def cam_colormap():
    import matplotlib

    return matplotlib.colormaps[CAM_CMAP]


def layer_mosaic(layer: LayerSummary, norm: str):
    """(mosaic, scaled tiles, columns) for a spatial layer; None for a vector layer."""
    if not layer.is_spatial:
        return None
    scaled = NORMALISATIONS[norm](layer.maps, layer)
    tiles = scaled.tiles
    if layer.summary_image is not None:  # an empty first slot, where the summary is laid
        tiles = np.concatenate([np.full(tiles.shape[:2] + (1,), scaled.vmin, tiles.dtype), tiles], axis=-1)
    height, width, count = tiles.shape
    columns = mosaic_columns(count, height, width)
    return compose_mosaic(tiles, columns), scaled, columns


def panel_height(mosaic) -> float:
    """Inches for a layer's panel: its mosaic at the panel's width, plus the title."""
    title_space = 0.75
    if mosaic is None:
        return 2.2 + title_space
    image = mosaic[0]
    return PANEL_WIDTH_INCHES * image.shape[0] / image.shape[1] + title_space


def draw_tiles(figure, axes, colorbar_axes, layer: LayerSummary, mosaic, style: FigureStyle) -> None:
    """The layer's tiles as one image, each tile labelled with its channel index."""
    import matplotlib

    image, scaled, columns = mosaic
    colormap = matplotlib.colormaps[style.cmap].with_extremes(bad="white")
    artist = axes.imshow(
        image, cmap=colormap, vmin=scaled.vmin, vmax=scaled.vmax, aspect="equal", interpolation="nearest"
    )
    axes.set_axis_off()
    labels = [str(channel) for channel in layer.channels]
    summary_note = ""
    if layer.summary_image is not None:
        draw_summary_tile(axes, artist, layer.summary_image, image.shape)
        labels.insert(0, "PCA")
        summary_note = "\nfirst tile: the first 3 principal components of all channels, as red, green, blue"
    axes.set_title(
        f"{layer.name} {layer.shape}: {channel_phrase(layer)}; "
        f"{NORMALISATION_PHRASES[style.norm]}; {layer.dead} dead (constant) channels{summary_note}",
        fontsize=10, y=TITLE_HEIGHT,
    )
    tile_pixels = PANEL_WIDTH_INCHES * style.dpi / columns  # about how wide a tile comes out
    label_tiles(axes, artist, labels, columns, scaled.tiles.shape[:2], tile_pixels)
    colorbar = figure.colorbar(artist, cax=colorbar_axes)
    colorbar.set_label(scaled.colorbar_label, fontsize=8)
    if scaled.colorbar_ticks:
        colorbar.set_ticks(list(scaled.colorbar_ticks), labels=list(scaled.colorbar_ticks.values()))
    colorbar.ax.tick_params(labelsize=7)


def draw_summary_tile(axes, image, summary_image: np.ndarray, mosaic_shape: tuple) -> None:
    """Lay the (H, W, 3) summary over the mosaic's first slot, in its own colours."""
    height, width, _ = summary_image.shape
    overlay = np.zeros(mosaic_shape + (4,))
    overlay[:height, :width, :3] = summary_image
    overlay[:height, :width, 3] = 1.0
    axes.imshow(overlay, extent=image.get_extent(), interpolation="nearest", zorder=image.get_zorder() + 0.5)


def label_tiles(axes, image, channels: Sequence, columns: int, tile_shape: tuple, tile_pixels: float) -> None:
    """Mark each tile with its channel index: one RGBA label layer drawn over the tiles.

    Thousands of Matplotlib Text objects take seconds to render; the labels are drawn
    with Pillow into one image instead, at about the tiles' output resolution, and laid
    over the mosaic with the same extent.
    """
    labels = render_tile_labels(channels, columns, tile_shape, tile_pixels)
    axes.imshow(labels, extent=image.get_extent(), interpolation="antialiased", zorder=image.get_zorder() + 1)


def render_tile_labels(channels: Sequence, columns: int, tile_shape: tuple, tile_pixels: float) -> np.ndarray:
    """RGBA labels, about (rows*(H+gap)-gap)*scale x (columns*(W+gap)-gap)*scale, transparent elsewhere.

    `scale` (label pixels per map pixel) makes a tile as wide as it comes out in the figure,
    at least MIN_LABEL_TILE_PIXELS, so that Matplotlib resamples the labels about 1:1.
    """
    from PIL import ImageDraw, ImageFont

    height, width = tile_shape
    label_tile = max(tile_pixels, MIN_LABEL_TILE_PIXELS)  # label pixels a tile wide
    scale = label_tile / width
    rows = math.ceil(len(channels) / columns)
    size = (round((columns * (width + TILE_GAP) - TILE_GAP) * scale),
            round((rows * (height + TILE_GAP) - TILE_GAP) * scale))
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=label_font_pixels(width, label_tile))
    for slot, channel in enumerate(channels):
        row, column = divmod(slot, columns)
        corner = (round(column * (width + TILE_GAP) * scale), round(row * (height + TILE_GAP) * scale))
        box = draw.textbbox(corner, str(channel), font=font, anchor="lt")
        draw.rectangle((corner[0], corner[1], box[2] + 1, box[3] + 1), fill=(0, 0, 0, 140))
        draw.text((corner[0] + 1, corner[1] + 1), str(channel), font=font, fill=(255, 255, 255, 255), anchor="lt")
    return np.asarray(canvas)


def label_font_pixels(width: int, label_tile: float) -> int:
    """A label's font size on a tile `label_tile` pixels wide: a fifth of the tile, from 9 to 18 pixels.

    The size is measured on the tile enlarged by a whole factor to at least `label_tile`
    pixels (at least its map's width), then brought back to `label_tile`.
    """
    whole_tile = width * max(1, math.ceil(label_tile / width))
    return max(1, round(np.clip(whole_tile * 0.2, 9, 18) * label_tile / whole_tile))


def draw_vector(axes, colorbar_axes, layer: LayerSummary) -> None:
    """A layer without spatial maps, shape (C,): one bar per channel value."""
    values = layer.maps
    axes.vlines(np.arange(len(values)), 0, values, linewidth=max(0.2, min(1.5, 300 / len(values))))
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.set_xlim(-0.5, len(values) - 0.5)
    axes.set_xlabel("channel", fontsize=8)
    axes.set_ylabel("activation", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.set_title(f"{layer.name} {layer.shape}: all {len(values)} values (no spatial maps)", fontsize=10)
    colorbar_axes.set_axis_off()
