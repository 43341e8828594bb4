"""Titles fitted to the width they are drawn in: wrapped between their parts, an over-long part shortened.

Widths are in points, measured as Agg draws the text at the figure's dpi: glyphs snap to
whole pixels, so at a low dpi a title is not as wide as its outline at that font size.
"""

from __future__ import annotations

import contextlib
import functools
import re
import warnings
from typing import Sequence

ELLIPSIS = "…"
REPLACEMENT_CHARACTER = "\ufffd"
SURROGATES = re.compile("[\ud800-\udfff]")


def text_points(text: str, points: float, dpi: float) -> float:
    """How wide `text` is drawn in Matplotlib's default font at `points` and `dpi`, in points."""
    return text_size(text, points, dpi)[0]


def line_points(points: float, dpi: float) -> float:
    """Baseline to baseline in a multi-line title, in points, as Matplotlib spaces lines at `dpi` (1.2 x "lp")."""
    return 1.2 * text_size("lp", points, dpi)[1]


@functools.lru_cache(maxsize=4096)
def text_size(text: str, points: float, dpi: float) -> tuple[float, float]:
    """(width, height) of `text` as Agg draws it in Matplotlib's default font at `points` and `dpi`, in points."""
    from matplotlib.font_manager import FontProperties

    with missing_glyphs_quiet():
        width, height, _ = agg_renderer(dpi).get_text_width_height_descent(text, FontProperties(size=points),
                                                                            ismath=False)
    return width * 72 / dpi, height * 72 / dpi


@contextlib.contextmanager
def missing_glyphs_quiet():
    """Without Matplotlib's warning for each character its font lacks (a file name in Chinese, drawn
    as boxes in DejaVu Sans): two lines of Python's warning format each, while stdout names the file whole."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        yield


@functools.lru_cache(maxsize=8)
def agg_renderer(dpi: float):
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(1, 1, dpi)


def wrap(parts: Sequence[str], separator: str, points: float, dpi: float, width: float) -> list[str]:
    """`parts` joined by `separator`, a new line wherever the next part would pass `width` points.

    A line ends with the separator's visible part ("; " ends a line with ";"). Parts are
    measured one at a time, so a long title costs a few measurements, not one per line tried.
    """
    return joined(lines_of_parts(parts, separator, points, dpi, width), separator)


def wrap_limited(parts: Sequence[str], separator: str, points: float, dpi: float, width: float, max_lines: int,
                 more: str) -> list[str]:
    """As `wrap`, in at most `max_lines` lines (at least 1): the parts left out are counted in `more` ("+{} more")."""
    lines = lines_of_parts(parts, separator, points, dpi, width, stop_after=max_lines + 1)
    kept = sum(map(len, lines[:max_lines]))
    while kept < len(parts):
        lines = lines_of_parts([*parts[:kept], more.format(len(parts) - kept)], separator, points, dpi, width)
        if len(lines) <= max_lines or kept <= 1:
            break
        kept -= 1
    return joined(lines, separator)


def lines_of_parts(parts: Sequence[str], separator: str, points: float, dpi: float, width: float,
                   stop_after: int | None = None) -> list[list[str]]:
    """The parts of each line (over-long ones shortened), at most `stop_after` lines."""
    gap, end = text_points(separator, points, dpi), text_points(separator.rstrip(), points, dpi)
    lines: list[list[str]] = []
    line_width = 0.0
    for number, part in enumerate(parts, 1):
        part = shorten(part, points, dpi, width - end)
        part_width = text_points(part, points, dpi)
        room_to_end = end if number < len(parts) else 0.0  # a line with parts after it ends with the separator
        if lines and line_width + gap + part_width + room_to_end <= width:
            lines[-1].append(part)
            line_width += gap + part_width
        elif len(lines) == stop_after:
            break
        else:
            lines.append([part])
            line_width = part_width
    return lines


def joined(lines: list[list[str]], separator: str) -> list[str]:
    trailing = separator.rstrip()
    return [separator.join(line) + (trailing if number < len(lines) - 1 else "") for number, line in enumerate(lines)]


def shorten(text: str, points: float, dpi: float, width: float) -> str:
    """`text` as it can be drawn (see drawable), or where it is wider than `width` points, its start and end
    around an ellipsis."""
    text = drawable(text)
    if text_points(text, points, dpi) <= width:
        return text
    keep = len(text)
    while keep > 1:
        keep -= max(1, keep // 8)
        shortened = text[:(keep + 1) // 2] + ELLIPSIS + text[len(text) - keep // 2:]
        if text_points(shortened, points, dpi) <= width:
            return shortened
    return ELLIPSIS


def drawable(text: str) -> str:
    """`text` with � for each lone surrogate: Python's stand-in for a byte of a file name that is not UTF-8,
    which FreeType refuses."""
    return SURROGATES.sub(REPLACEMENT_CHARACTER, text)
