"""The same maps, predictions and Grad-CAM heatmaps on every Keras backend that is installed.

Each backend runs in its own process (Keras picks its backend once, at import), on the
same weights file and photo; their maps must agree to about 1e-4 of each layer's range.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, SAMPLE_PHOTO

BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
LAYERS = ["conv2d_1", "mixed3", "mixed10"]

MAPS_SCRIPT = """
import sys
import numpy as np
import deepviz
from _deepviz import backend, explain, forward, images, models
weights, photo, out = sys.argv[1:4]
network = models.build_network(models.NetworkChoice(weights=weights))
feature_model = forward.build_feature_model(network, {layers!r})
batch = images.preprocess(images.load_image(photo), network)[None]
head = explain.build_cam_head(network, "mixed10")
for compiled in (False, True):
    outputs = forward.run_forward_pass(feature_model, batch, compiled)
    cams = explain.grad_cam(head, outputs["mixed10"][0], forward.top_classes(outputs["__output__"][0], 3))
    arrays = {{k.strip("_"): v for k, v in outputs.items()}}
    np.savez(out.replace(".npz", f"-{{compiled}}.npz"), cams=cams, **arrays)
print(backend.import_keras().backend.backend())
""".format(layers=LAYERS)


def installed(backend):
    return importlib.util.find_spec(BACKEND_PACKAGES[backend]) is not None


def maps_on(backend, weights, tmp_path):
    out = tmp_path / f"{backend}.npz"
    result = subprocess.run(
        [sys.executable, "-c", MAPS_SCRIPT, str(weights), str(SAMPLE_PHOTO), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == backend
    return [dict(np.load(out.with_name(f"{backend}-{compiled}.npz"))) for compiled in (False, True)]


@pytest.fixture(scope="module")
def reference(random_weights_file, tmp_path_factory):
    return maps_on("tensorflow", random_weights_file, tmp_path_factory.mktemp("tensorflow"))[0]


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_every_backend_gives_the_same_maps_and_predictions(backend, reference, random_weights_file, tmp_path):
    if not installed(backend):
        pytest.skip(f"the {backend} backend is not installed")
    for outputs in maps_on(backend, random_weights_file, tmp_path):  # eager and compiled runs
        for name in LAYERS:
            scale = np.abs(reference[name]).max()
            np.testing.assert_allclose(outputs[name], reference[name], rtol=0, atol=1e-4 * scale, err_msg=name)
        probabilities, expected = outputs["output"][0], reference["output"][0]
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-4 * expected.max())
        assert np.argsort(-probabilities)[:3].tolist() == np.argsort(-expected)[:3].tolist()
        np.testing.assert_allclose(outputs["cams"], reference["cams"], rtol=0, atol=1e-3)  # Grad-CAM heatmaps
