"""Write scikit-image's sample photos (skimage.data) as PNG files to a folder, for exemplar runs.

    pip install scikit-image
    python tools/skimage_photos.py /tmp/skimage_photos

Only the photos bundled with scikit-image are written; those it would download are skipped.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

# chelsea (also as cat) and coffee are left out: they are images/chelsea.png and images/coffee.png
PHOTOS = ("astronaut", "brick", "camera", "coins", "grass", "gravel", "horse",
          "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina",
          "rocket", "text")


def main() -> None:
    import skimage.data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args().folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        try:
            pixels = getattr(skimage.data, name)()
        except Exception as error:  # not bundled: scikit-image would download it
            print(f"skipped {name}: {type(error).__name__}")
            continue
        if pixels.dtype == bool:
            pixels = pixels.astype(np.uint8) * 255
        Image.fromarray(pixels[..., :3] if pixels.ndim == 3 else pixels).save(folder / f"skimage_{name}.png")
        print(f"wrote {folder / f'skimage_{name}.png'}")


if __name__ == "__main__":
    main()
