"""Shared fixtures. Tests are offline: nothing is downloaded, ever.

Real ImageNet-trained backbone weights and test photos live outside the repository;
tests that need them read their paths from environment variables and skip without them:
  DEEPVIZ_BACKBONE_WEIGHTS  inception_v3_2015_notop.weights.h5 (../shared/weights/)
  DEEPVIZ_TEST_PHOTOS       a folder with dog.jpg (../shared/images/)
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import deepviz  # noqa: E402
from _deepviz import backend, models

SAMPLE_PHOTO = ROOT / "images" / "grace_hopper.jpg"


@pytest.fixture(scope="session", autouse=True)
def cache_of_the_test_run(tmp_path_factory):
    """deepviz's cache (synthesised patterns; on jax, XLA's compilations) in a folder of the test run's,
    never the user's; the processes the tests start inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPVIZ_CACHE", str(tmp_path_factory.mktemp("deepviz-cache")))
        yield


@pytest.fixture(scope="session")
def random_weights_file(tmp_path_factory):
    """InceptionV3 weights, randomly initialised with a fixed seed, saved as .weights.h5.

    The classifier kernel is scaled up so that predictions are peaked: the top 3 are
    then well apart and comparing them against Keras means something.
    """
    keras = backend.import_keras()
    keras.utils.set_random_seed(1234)
    model = models.build_model(deepviz.MODELS["inception_v3"], include_top=True)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 3000, bias])
    path = tmp_path_factory.mktemp("weights") / "random_inception_v3.weights.h5"
    model.save_weights(str(path))
    return path


@pytest.fixture(scope="session")
def backbone_weights():
    path = os.environ.get("DEEPVIZ_BACKBONE_WEIGHTS")
    if not path or not Path(path).is_file():
        pytest.skip("DEEPVIZ_BACKBONE_WEIGHTS does not name the trained backbone weights file")
    return Path(path)


@pytest.fixture(scope="session")
def dog_photo():
    folder = os.environ.get("DEEPVIZ_TEST_PHOTOS")
    if not folder or not (Path(folder) / "dog.jpg").is_file():
        pytest.skip("DEEPVIZ_TEST_PHOTOS does not name a folder holding dog.jpg")
    return Path(folder) / "dog.jpg"


@pytest.fixture
def run(capsys):
    """Call deepviz.main in-process; return (exit status, stdout, stderr)."""

    def run_main(*args):
        status = deepviz.main([str(a) for a in args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run_main


def run_cli(*args, cwd=None, env=None, timeout=300):
    """Run `python deepviz.py ARGS` as a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, str(ROOT / "deepviz.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg", **(env or {})},
        timeout=timeout,
    )


def half_and_half_model(right_colour: int, scores=(4.0, 4.0)):
    """A 32x32 two-class model: class 0 is decided by the left half, class 1 by the right half.

    Its layer "maps" has two detectors: red (channel 0) and colour `right_colour` (1 green,
    2 blue). Class 0 scores the first over the left half, class 1 the second over the right
    half, each times its score; a Softmax layer makes them probabilities.
    """
    from _deepviz.backend import import_keras

    keras = import_keras()
    inputs = keras.Input((32, 32, 3))
    maps = keras.layers.Conv2D(2, 1, activation="relu", name="maps")(inputs)
    left = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 0), (0, 16)))(maps))
    right = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 0), (16, 0)))(maps))
    class_scores = keras.layers.Concatenate()([keras.layers.Dense(1, use_bias=False, name="left_score")(left),
                                               keras.layers.Dense(1, use_bias=False, name="right_score")(right)])
    model = keras.Model(inputs, keras.layers.Softmax(name="classes")(class_scores), name="half_and_half")
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = kernel[0, 0, right_colour, 1] = 1.0
    model.get_layer("maps").set_weights([kernel, np.zeros(2, np.float32)])
    model.get_layer("left_score").set_weights([np.array([[scores[0]], [0.0]], np.float32)])
    model.get_layer("right_score").set_weights([np.array([[0.0], [scores[1]]], np.float32)])
    return model


def pixels_of(axes, pixels: np.ndarray) -> np.ndarray:
    """The part of a rendered figure that `axes` covers."""
    x0, y0, x1, y1 = np.round(axes.bbox.extents).astype(int)
    return pixels[pixels.shape[0] - y1:pixels.shape[0] - y0, x0:x1]


def deepviz_on_small_photos(folder, count: int) -> list:
    """The command line of deepviz over `count` small photos in `folder`, with a one-layer model saved there."""
    keras = backend.import_keras()
    inputs = keras.Input((16, 16, 3))
    keras.Model(inputs, keras.layers.Conv2D(2, 3, name="maps")(inputs)).save(folder / "small.keras")
    for i in range(count):
        Image.new("RGB", (16, 16), (6 * i, 0, 0)).save(folder / f"{i:02d}.png")
    return [sys.executable, str(ROOT / "deepviz.py"), folder, "--model", folder / "small.keras"]
