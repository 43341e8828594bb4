"""Time PNG encoders on one figure's pixels: CPU seconds and file size; prints a Markdown table.

    python bench/bench_png.py result/grace_hopper_backbone.png

deepviz's encoder (`_deepviz/png.py`: the Up filter on every row) at zlib levels 1, 3, 6
and 9, against Pillow's (all five filters tried on every row) at levels 1 and 6.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _deepviz import png  # noqa: E402


def cpu_seconds_and_bytes(encode, repeats: int = 5) -> tuple[float, int]:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        encoded = encode()
        times.append(time.process_time() - start)
    return statistics.median(times), len(encoded)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", type=Path, help="a PNG figure to re-encode")
    args = parser.parse_args()
    try:
        pixels = np.asarray(Image.open(args.figure).convert("RGB"))
    except (OSError, Image.DecompressionBombError) as error:  # missing, unreadable or not an image
        parser.error(f"{args.figure}: expected a PNG figure to re-encode; {error}")
    rows = []
    for level in (1, 3, 6, 9):
        png.PNG_COMPRESSION = level
        name = "Up filter, zlib level 1 (deepviz)" if level == 1 else f"Up filter, level {level}"
        rows.append((name, *cpu_seconds_and_bytes(lambda: png.encode_png(pixels, 100))))
    for level in (1, 6):
        def encode_with_pillow():
            stream = io.BytesIO()
            Image.fromarray(pixels).save(stream, "png", compress_level=level)
            return stream.getvalue()
        name = ("Pillow (tries every filter on every row), level 1" if level == 1
                else "Pillow, level 6 (as Matplotlib's `savefig`)")
        rows.append((name, *cpu_seconds_and_bytes(encode_with_pillow)))
    height, width = pixels.shape[:2]
    print(f"{args.figure} ({width}x{height} pixels, RGB)\n")
    print("| encoder | time | size |\n|---|---|---|")
    for name, seconds, size in rows:
        print(f"| {name} | {seconds:.2f} s | {size / 1e6:.2f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
