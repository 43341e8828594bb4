"""Regenerate deepviz_data/imagenet_class_index.json from the keras-hub wheel.

The class names come from the dict ``IMAGENET_NAMES`` in
``keras_hub/src/utils/imagenet/imagenet_utils.py``; it is read with ``ast``, so
keras-hub is never installed or imported.

    pip download --no-deps keras-hub==0.32.0 -d /tmp/keras-hub
    python tools/make_imagenet_class_index.py /tmp/keras-hub/keras_hub-0.32.0-py3-none-any.whl

The result is checked against the md5 that Keras checks for its own
``imagenet_class_index.json``.
"""

import argparse
import ast
import hashlib
import json
import sys
import zipfile
from pathlib import Path

SOURCE_IN_WHEEL = "keras_hub/src/utils/imagenet/imagenet_utils.py"
KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"
OUTPUT = Path(__file__).resolve().parent.parent / "deepviz_data" / "imagenet_class_index.json"


def read_imagenet_names(wheel_path):
    """Return {class id: (wnid, name)} from the wheel's IMAGENET_NAMES literal."""
    with zipfile.ZipFile(wheel_path) as wheel:
        source = wheel.read(SOURCE_IN_WHEEL).decode("utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "IMAGENET_NAMES" for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise ValueError(f"IMAGENET_NAMES not found in {SOURCE_IN_WHEEL} of {wheel_path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", help="path to keras_hub-0.32.0-py3-none-any.whl")
    args = parser.parse_args(argv)

    names = read_imagenet_names(args.wheel)
    text = json.dumps({str(i): list(names[i]) for i in sorted(names)})
    digest = hashlib.md5(text.encode("utf-8")).hexdigest()
    if digest != KERAS_CLASS_INDEX_MD5:
        print(f"md5 {digest} differs from Keras's {KERAS_CLASS_INDEX_MD5}: not written", file=sys.stderr)
        return 1
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(names)} classes, md5 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
