"""Draw one photo's figure: the photo titled with its predictions, Grad-CAM heatmaps, one panel per layer."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import io
from typing import Sequence

import numpy as np
from PIL import Image

from .errors import UsageError
from .layers import is_whole
from .mosaic import (NORMALISATION_PHRASES, NORMALISATIONS, ScaledTiles, TileGrid, label_font_pixels,
                     paint_mosaic, tile_grid)
from .stats import LayerSummary, channel_phrase
from .titles import line_points, shorten, wrap, wrap_limited


DEFAULT_DPI = 100
DPI_RANGE = (10, 1200)  # what --dpi accepts: below 10, FreeType cannot size the fonts
DEFAULT_CMAP = "viridis"
# The figure is laid out here, top to bottom in whole pixels: each row a title band over its
# drawing, and a colour bar right of the drawing. (Matplotlib's constrained layout measured
# every text on every draw, 0.08 s of a default figure.) A mosaic is painted at exactly the
# pixels its axes cover, so Matplotlib draws it without resampling.
FIGURE_WIDTH_INCHES = 12.0
MARGIN_INCHES = 0.1
COLORBAR_GAP_INCHES = 0.15
COLORBAR_WIDTH_INCHES = 0.2
COLORBAR_LABELS_INCHES = 0.75  # right of the colour bar: its tick labels and its own label
PANEL_WIDTH_INCHES = (FIGURE_WIDTH_INCHES - 2 * MARGIN_INCHES - COLORBAR_GAP_INCHES - COLORBAR_WIDTH_INCHES
                      - COLORBAR_LABELS_INCHES)
ROW_GAP_INCHES = 0.2
TITLE_LINE_HEIGHT = 1.3  # a title line's height, in multiples of its font size
TITLE_PAD_POINTS = 6.0  # Matplotlib's pad between an axes and its title
TITLE_HEIGHT = 1.0  # titles sit on their axes' top edge (a given height spares Matplotlib measuring the axes)
VECTOR_HEIGHT_INCHES = 2.2
VECTOR_AXIS_INCHES = (0.75, 0.45)  # room left of and under a vector layer's plot, for its ticks and labels
CAM_GAP_INCHES = 0.1  # between Grad-CAM panels
CAM_COLUMNS_MAX = 5  # Grad-CAM panels side by side; more classes take more rows
CAM_PANELS_MAX = 20  # Grad-CAM panels drawn; all are computed (and saved with --save-arrays)
CAM_MIN_PANEL_HEIGHT_INCHES = 0.8  # a panorama's panels take fewer to a row rather than shrink below this
CAM_SCORES_CAVEATS = {  # the heading's word where Grad-CAM could not differentiate logits (explain.class_scores)
    "probabilities": "from the probabilities' gradients: the scores before the softmax could not be reached",
    "output": "from the gradients of the model's output itself: no softmax or sigmoid found at its end",
}
PHOTO_TITLE_POINTS = 11
LAYER_TITLE_POINTS = 10
CAM_TITLE_POINTS = 9
PREDICTION_LINES_MAX = 3  # of the photo's title; further predictions are counted, and all are printed
MIN_DRAWING_INCHES = 0.3
PHOTO_MAX_HEIGHT_INCHES = 5.0
PHOTO_DISPLAY_MAX_PIXELS = 1600  # longest side of the photo as drawn in the figure
VECTOR_COLOUR = "#1f77b4"  # a vector layer's bars
CAM_CMAP = "inferno"  # Grad-CAM heat, laid over the photo in grey
CAM_MAX_OPACITY = 0.85  # the heat's opacity where it is largest; 0 where there is none


def check_dpi(dpi) -> None:
    low, high = DPI_RANGE
    if not is_whole(dpi) or not low <= dpi <= high:
        raise UsageError(f"dpi: expected a whole number from {low} to {high}, received {dpi!r}")


def check_colormap(name: str) -> None:
    """UsageError for a name Matplotlib has no colour map of; the default is known without importing it."""
    if name == DEFAULT_CMAP:
        return
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
    cam_scores: str = "logits"  # what Grad-CAM's gradients are of (explain.CamHead.scores)


def photo_title(image_name: str, photo: Image.Image, network, predictions, dpi: int = DEFAULT_DPI) -> str:
    """The photo's name and size, then its predictions, wrapped to the figure's width at `dpi`."""
    font, width = (PHOTO_TITLE_POINTS, dpi), title_room(PHOTO_TITLE_POINTS)
    size = shorten(f"{image_name} ({photo.width}×{photo.height})", *font, width)
    if network.class_names is None:
        reason = f"predictions unavailable: {network.no_predictions_reason}"
        return "\n".join([size, *wrap(reason.split(" "), " ", *font, width)])
    ranked = [f"{rank}. {name} {p * 100:.1f}%" for rank, (name, p) in enumerate(predictions, 1)]
    if not network.trained:
        ranked.insert(0, "untrained network (random weights):")
    lines = wrap_limited(ranked, "   ", *font, width, PREDICTION_LINES_MAX, "+{} more, all printed")
    return "\n".join([size, *lines])


def title_room(margin: float, inches: float = PANEL_WIDTH_INCHES) -> float:
    """The width a title has over a drawing `inches` wide, in points: less `margin` points at each end."""
    return inches * 72 - 2 * margin


@dataclasses.dataclass
class Row:
    """One band of the figure: a title over a drawing `height` pixels tall, `below` pixels under it.

    A Grad-CAM row has a title over each panel too, under the row's own (which may be empty).
    """

    title: str
    title_points: float
    height: int
    below: int = 0  # a vector layer's tick labels and axis label
    panel_title_lines: int = 0

    def title_band_points(self, dpi: int) -> float:
        """The height of the titles over the drawing, with the pad under them, in points."""
        lines = self.title.count("\n") + 1 if self.title or not self.panel_title_lines else 0
        return (lines * line_height(self.title_points, dpi)
                + self.panel_title_lines * line_height(CAM_TITLE_POINTS, dpi) + TITLE_PAD_POINTS)


def line_height(points: float, dpi: int) -> float:
    """A title line's height in points: TITLE_LINE_HEIGHT font sizes, or more where glyphs snap to few pixels."""
    return max(TITLE_LINE_HEIGHT * points, line_points(points, dpi))


def draw_figure(photo: Image.Image, layers: Sequence[LayerSummary], style: FigureStyle, cams=None):
    """A Matplotlib Figure: the photo on top, its Grad-CAM heatmaps if any, then one panel per layer.

    `cams` is a list of (class name, probability, heatmap in [0, 1]).
    """
    dpi = style.dpi
    width, panel_width = pixels(FIGURE_WIDTH_INCHES, dpi), pixels(PANEL_WIDTH_INCHES, dpi)
    display = display_photo(photo)
    photo_height = drawing_height(panel_width, display.height / display.width, dpi)
    rows = [Row(style.photo_title, PHOTO_TITLE_POINTS, photo_height)]
    cam_layout = CamLayout.of(cams or [], style, panel_width, display, dpi)
    rows += cam_layout.rows  # none without cams
    mosaics = [layer_mosaic(layer, style.norm, panel_width, style.dpi) for layer in layers]
    rows += [layer_row(layer, mosaic, style) for layer, mosaic in zip(layers, mosaics)]
    height, bottoms = stack_rows(rows, dpi)

    figure = notebook_figure_class()(figsize=(width / dpi, height / dpi), dpi=dpi)
    left = pixels(MARGIN_INCHES, dpi)
    colorbar_left = pixels(MARGIN_INCHES + PANEL_WIDTH_INCHES + COLORBAR_GAP_INCHES, dpi)

    def add_axes(x: int, bottom: int, axes_width: int, axes_height: int):
        return figure.add_axes((x / width, bottom / height, axes_width / width, axes_height / height))

    def add_colorbar_axes(row: int):
        return add_axes(colorbar_left, bottoms[row], pixels(COLORBAR_WIDTH_INCHES, dpi), rows[row].height)

    shown = fitted_to(display, panel_width, rows[0].height)
    photo_axes = add_axes(*centred(shown.size, left, bottoms[0], panel_width, rows[0].height))
    draw_painted(photo_axes, np.asarray(shown.convert("RGBA")))
    photo_axes.set_title(style.photo_title, fontsize=rows[0].title_points, y=TITLE_HEIGHT, parse_math=False)
    photo_axes.set_axis_off()
    if cams:
        draw_cams(figure, add_axes, cams, cam_layout, display, left, bottoms[1:1 + len(cam_layout.rows)],
                  colorbar_left)
    for row, (layer, mosaic) in enumerate(zip(layers, mosaics), start=1 + len(cam_layout.rows)):
        if layer.is_spatial:
            axes = add_axes(left, bottoms[row], panel_width, rows[row].height)
            draw_tiles(figure, axes, add_colorbar_axes(row), layer, mosaic, rows[row].title, style)
        else:
            indent = pixels(VECTOR_AXIS_INCHES[0], dpi)
            draw_vector(add_axes(left + indent, bottoms[row], panel_width - indent, rows[row].height), layer, dpi)
    return figure


def pixels(inches: float, dpi: int) -> int:
    return max(1, round(inches * dpi))


def centred(size: tuple[int, int], x: int, bottom: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(x, bottom, width, height) of a drawing of `size` (width, height) centred in the given box, in pixels."""
    return x + (width - size[0]) // 2, bottom + (height - size[1]) // 2, *size


def drawing_height(drawing_width: int, aspect: float, dpi: int) -> int:
    """Pixels of a photo-shaped drawing `drawing_width` wide (height/width `aspect`), within the limits."""
    return int(np.clip(round(drawing_width * aspect), pixels(MIN_DRAWING_INCHES, dpi),
                       pixels(PHOTO_MAX_HEIGHT_INCHES, dpi)))


def layer_row(layer: LayerSummary, mosaic: LayerMosaic | None, style: FigureStyle) -> Row:
    """A layer's row: its mosaic as wide as the panel, or a bar plot with room for its axes' labels."""
    if mosaic is None:  # a vector layer: a one-line title
        return Row("", LAYER_TITLE_POINTS, pixels(VECTOR_HEIGHT_INCHES, style.dpi),
                   below=pixels(VECTOR_AXIS_INCHES[1], style.dpi))
    return Row(tiles_title(layer, mosaic, style), LAYER_TITLE_POINTS, mosaic.grid.height)


def stack_rows(rows: Sequence[Row], dpi: int) -> tuple[int, list[int]]:
    """The figure's height, and each row's drawing's bottom edge: pixels from the figure's bottom."""
    margin, gap = pixels(MARGIN_INCHES, dpi), pixels(ROW_GAP_INCHES, dpi)
    tops, y = [], margin  # y: pixels from the figure's top
    for row in rows:
        y += round(row.title_band_points(dpi) / 72 * dpi)
        tops.append(y)
        y += row.height + row.below + gap
    height = y - gap + margin
    return height, [height - top - row.height for top, row in zip(tops, rows)]


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


def fitted_to(photo: Image.Image, width: int, height: int) -> Image.Image:
    """The photo resized to the largest size that fits width x height pixels.

    Lanczos, except where a small photo is enlarged 3 times or more: there its pixels are
    shown as blocks (nearest neighbour), as Matplotlib's "antialiased" would, not blurred.
    """
    scale = min(width / photo.width, height / photo.height)
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    resampling = Image.Resampling.NEAREST if scale >= 3 else Image.Resampling.LANCZOS
    return photo if size == photo.size else photo.resize(size, resampling)


def draw_painted(axes, pixels: np.ndarray) -> None:
    """Show (H, W, 4) uint8 pixels in `axes`, which should cover exactly H x W pixels, as they are."""
    image = painted_image_class()(axes, interpolation="nearest")
    image.set_data(pixels)
    height, width = pixels.shape[:2]
    image.set_extent((-0.5, width - 0.5, height - 0.5, -0.5))  # as imshow: one unit per pixel, row 0 on top
    axes.add_image(image)
    axes.set_xlim(-0.5, width - 0.5)
    axes.set_ylim(height - 0.5, -0.5)
    axes.set_aspect("equal")


@functools.cache
def painted_image_class():
    """An AxesImage drawn pixel for pixel when its axes covers exactly its pixels (else as any AxesImage).

    Matplotlib would otherwise copy, convert and resample each image on every draw, 1:1
    or not (0.1 s of a default figure).
    """
    from matplotlib.image import AxesImage
    from matplotlib.transforms import IdentityTransform

    class PaintedImage(AxesImage):
        def make_image(self, renderer, magnification=1.0, unsampled=False):
            pixels = self.get_array()
            box = self.axes.bbox  # display pixels, from the bottom left
            if not unsampled and magnification == 1.0 and (round(box.width), round(box.height)) == pixels.shape[1::-1]:
                bottom_row_first = np.ascontiguousarray(pixels[::-1])  # as renderers take images
                return bottom_row_first, round(box.x0), round(box.y0), IdentityTransform()
            return super().make_image(renderer, magnification, unsampled)

    return PaintedImage


@dataclasses.dataclass
class CamLayout:
    """Where the Grad-CAM panels go: up to CAM_COLUMNS_MAX side by side (fewer for a wide photo), in as many
    rows as they need, for at most CAM_PANELS_MAX classes (the heading says how many more there are)."""

    columns: int
    width: int  # of a panel, in pixels
    height: int
    titles: list[str]  # each drawn panel's
    rows: list[Row]

    @classmethod
    def of(cls, cams, style: FigureStyle, panel_width: int, display: Image.Image, dpi: int) -> CamLayout:
        if not cams:
            return cls(0, 0, 0, [], [])
        drawn = cams[:CAM_PANELS_MAX]
        gap = pixels(CAM_GAP_INCHES, dpi)
        def width_of(columns: int) -> int:
            return (panel_width - gap * (columns - 1)) // columns

        columns = min(len(drawn), CAM_COLUMNS_MAX)
        lowest = pixels(CAM_MIN_PANEL_HEIGHT_INCHES, dpi)
        while columns > 1 and width_of(columns) * display.height / display.width < lowest:
            columns -= 1  # a wide photo: fewer panels to a row, each tall enough to read
        width = width_of(columns)
        height = drawing_height(width, display.height / display.width, dpi)
        titles = [cam_title(rank, cam, dpi, title_room(CAM_TITLE_POINTS / 2, width / dpi))
                  for rank, cam in enumerate(drawn, 1)]
        clauses = [f"Grad-CAM at {style.cam_layer}: where the photo drives each of its top classes",
                   "heat as a fraction of the class's largest value"]
        if style.cam_scores in CAM_SCORES_CAVEATS:
            clauses.insert(1, CAM_SCORES_CAVEATS[style.cam_scores])
        if len(cams) > len(drawn):
            clauses.append(f"the first {len(drawn)} of {len(cams)} classes drawn")
        heading = "\n".join(wrap(clauses, "; ", LAYER_TITLE_POINTS, dpi, title_room(LAYER_TITLE_POINTS)))
        rows = [Row(heading if start == 0 else "", LAYER_TITLE_POINTS, height,
                    panel_title_lines=max(title.count("\n") + 1 for title in titles[start:start + columns]))
                for start in range(0, len(drawn), columns)]
        return cls(columns, width, height, titles, rows)


CAM_COLORBAR_TICKS = {0.0: "0", 0.5: "half", 1.0: "class max"}


def cam_title(rank: int, cam, dpi: int, width: float) -> str:
    """"1. beagle 86.6%", in lines of at most `width` points; a class without positive heat says so."""
    name, probability, heatmap = cam
    parts = [f"{rank}. {name}", f"{probability * 100:.1f}%"]
    if not heatmap.any():
        parts[-1] += ":"
        parts += ["no", "positive", "evidence"]
    return "\n".join(wrap(parts, " ", CAM_TITLE_POINTS, dpi, width))


def draw_cams(figure, add_axes, cams, layout: CamLayout, display: Image.Image, left: int, bottoms: Sequence[int],
              colorbar_left: int) -> None:
    """The Grad-CAM rows, their drawings' bottom edges at `bottoms`: a panel per class, the heading over the
    first row, one colour bar beside them all. `add_axes(x, bottom, width, height)` in figure pixels."""
    dpi = figure.dpi
    shown = fitted_to(display, layout.width, layout.height)
    grey = np.asarray(shown.convert("L"), dtype=np.float32)
    step = layout.width + pixels(CAM_GAP_INCHES, dpi)
    for number, (cam, title) in enumerate(zip(cams, layout.titles)):
        row, column = divmod(number, layout.columns)
        axes = add_axes(*centred(shown.size, left + column * step, bottoms[row], layout.width, layout.height))
        draw_painted(axes, paint_cam(grey, cam[2]))
        axes.set_title(title, fontsize=CAM_TITLE_POINTS, parse_math=False)
        axes.set_axis_off()
    first = layout.rows[0]
    heading_baseline = bottoms[0] + layout.height + round(
        (TITLE_PAD_POINTS + first.panel_title_lines * line_height(CAM_TITLE_POINTS, dpi)) / 72 * dpi)
    centre = left + pixels(PANEL_WIDTH_INCHES, dpi) / 2
    figure.text(centre / figure.bbox.width, heading_baseline / figure.bbox.height, first.title, ha="center",
                va="baseline", fontsize=first.title_points, parse_math=False)
    colorbar_axes = add_axes(colorbar_left, bottoms[-1], pixels(COLORBAR_WIDTH_INCHES, dpi),
                             bottoms[0] + layout.height - bottoms[-1])
    draw_colorbar(figure, colorbar_axes, cam_colorbar_colormap(), 0.0, 1.0, "heat", CAM_COLORBAR_TICKS)


def paint_cam(grey: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """One class's heatmap (in [0, 1]) over the photo in grey (H, W), as (H, W, 4) uint8 pixels at the photo's size."""
    return heat_over_grey(grey, stretched_to(heatmap, grey.shape), cam_colormap(), CAM_MAX_OPACITY)


def stretched_to(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map (h, w) resized to `shape` (H, W) bilinearly, as float32."""
    height, width = shape
    stretched = Image.fromarray(values.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(stretched)


def heat_over_grey(grey: np.ndarray, heat: np.ndarray, colormap, max_opacity: float) -> np.ndarray:
    """Heat (H, W) in [0, 1], coloured by `colormap`, over a grey photo (H, W) in 0-255: (H, W, 4) uint8, opaque.

    Cold areas show the photo, hot ones the colour: the heat's opacity rises with its value
    (to `max_opacity`), so the photo's own colours never pass for heat.
    """
    heat = np.clip(np.nan_to_num(heat, nan=0.0), 0.0, 1.0)  # NaN: a model whose values overflowed; no heat shown
    opacity = (max_opacity * heat)[..., None]
    colours = colormap(heat, bytes=True)[..., :3].astype(np.float32)
    painted = np.empty(heat.shape + (4,), np.uint8)
    painted[..., :3] = np.rint(colours * opacity + grey[..., None] * (1.0 - opacity))
    painted[..., 3] = 255
    return painted


def cam_colormap():
    import matplotlib

    return matplotlib.colormaps[CAM_CMAP]


def cam_colorbar_colormap():
    """The heat as the panels show it, over a mid-grey pixel: grey at 0, nearly the full colour at the class's max."""
    from matplotlib.colors import ListedColormap

    heat = np.linspace(0.0, 1.0, 256)
    blended = heat_over_grey(np.full(256, 128.0), heat, cam_colormap(), CAM_MAX_OPACITY)[:, :3]
    return ListedColormap(blended / 255.0)


@dataclasses.dataclass
class LayerMosaic:
    """A spatial layer's tiles, scaled, and where they are drawn."""

    scaled: ScaledTiles
    grid: TileGrid
    labels: list[str]  # each tile's: its channel index ("PCA" for the summary)
    label_pixels: int | None  # the labels' font size; None where the tiles are too small for them


def layer_mosaic(layer: LayerSummary, norm: str, width: int, dpi: int = DEFAULT_DPI) -> LayerMosaic | None:
    """The layer's tiles laid out `width` pixels wide; None for a vector layer."""
    if not layer.is_spatial:
        return None
    scaled = NORMALISATIONS[norm](layer.maps, layer)
    labels = [str(channel) for channel in layer.channels]
    if layer.summary_image is not None:  # the summary takes the first slot
        labels.insert(0, "PCA")
    grid = tile_grid(len(labels), scaled.tiles.shape[:2], width)
    return LayerMosaic(scaled, grid, labels, label_font_pixels(labels, grid, dpi))


def tiles_title(layer: LayerSummary, mosaic: LayerMosaic, style: FigureStyle) -> str:
    """What the row shows, in lines that fit its width, broken between its clauses."""
    parts = [f"{layer.name} {layer.shape}: {channel_phrase(layer)}", NORMALISATION_PHRASES[style.norm],
             f"{layer.dead} dead (constant) channel{'' if layer.dead == 1 else 's'}"]
    if mosaic.label_pixels is None:
        parts.insert(1, "tiles too small to label: raise --dpi")
    font, width = (LAYER_TITLE_POINTS, style.dpi), title_room(LAYER_TITLE_POINTS)
    lines = wrap(parts, "; ", *font, width)
    if layer.summary_image is not None:
        note = "first tile: the first 3 principal components of all channels, as red, green, blue"
        lines += wrap(note.split(" "), " ", *font, width)
    return "\n".join(lines)


def draw_tiles(figure, axes, colorbar_axes, layer: LayerSummary, mosaic: LayerMosaic, title: str,
               style: FigureStyle) -> None:
    """The layer's tiles as one image painted at the axes' pixel size, each tile labelled with its channel."""
    import matplotlib

    colormap = matplotlib.colormaps[style.cmap]
    painted = paint_mosaic(mosaic.scaled, mosaic.grid, colormap, mosaic.labels, mosaic.label_pixels,
                           layer.summary_image)
    draw_painted(axes, painted)
    axes.set_axis_off()
    axes.set_title(title, fontsize=LAYER_TITLE_POINTS, y=TITLE_HEIGHT, parse_math=False)
    scaled = mosaic.scaled
    draw_colorbar(figure, colorbar_axes, colormap, scaled.vmin, scaled.vmax, scaled.colorbar_label,
                  scaled.colorbar_ticks)


def draw_colorbar(figure, colorbar_axes, colormap, vmin: float, vmax: float, label: str, ticks: dict) -> None:
    """A colour bar from vmin to vmax in `colorbar_axes`; `ticks` ({value: label}) replace the numbers if given."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    colorbar = figure.colorbar(ScalarMappable(Normalize(vmin, vmax), colormap), cax=colorbar_axes)
    colorbar.set_label(label, fontsize=8)
    if ticks:
        colorbar.set_ticks(list(ticks), labels=list(ticks.values()))
    colorbar.ax.tick_params(labelsize=7)


def draw_vector(axes, layer: LayerSummary, dpi: int) -> None:
    """A layer without spatial maps, shape (C,): one bar per channel value, as one filled outline.

    (Thin lines, one per value, would alias when there are more values than pixels: bands
    of darker bars that are not in the data.)
    """
    values = layer.maps
    axes.stairs(values, np.arange(len(values) + 1) - 0.5, baseline=0.0, fill=True, color=VECTOR_COLOUR)
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.set_xlim(-0.5, len(values) - 0.5)
    axes.set_xlabel("channel", fontsize=8)
    axes.set_ylabel("value", fontsize=8)
    axes.tick_params(labelsize=7)
    title = f"{layer.name} {layer.shape}: all {len(values)} values (no spatial maps)"
    axes.set_title(shorten(title, LAYER_TITLE_POINTS, dpi, title_room(LAYER_TITLE_POINTS)), fontsize=LAYER_TITLE_POINTS,
                   parse_math=False)
