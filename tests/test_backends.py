"""The same maps, predictions and Grad-CAM heatmaps on every Keras backend that is installed.

Each backend runs in its own process (Keras picks its backend once, at import), on the
same weights file and photo; their maps must agree to about 1e-4 of each layer's range.
"""

import importlib.util
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _deepviz import backend
from conftest import ROOT, SAMPLE_PHOTO, run_cli

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


def test_a_backend_keras_does_not_know_is_named_in_a_one_line_error(tmp_path):
    out = tmp_path / "figure.png"
    result = run_cli(SAMPLE_PHOTO, "--weights", "none", "--out", out, env={"KERAS_BACKEND": "mxnet"})
    assert result.returncode == 1
    assert "Keras's backend is 'mxnet' (KERAS_BACKEND), which Keras does not know" in result.stderr
    assert "set KERAS_BACKEND to tensorflow, jax or torch" in result.stderr
    assert "building" not in result.stderr  # refused before any work is announced
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert not out.exists()


def test_a_backend_keras_knows_but_that_is_absent_is_refused_before_the_network_is_announced(tmp_path):
    if importlib.util.find_spec("openvino") is not None:
        pytest.skip("openvino is installed")
    result = run_cli(SAMPLE_PHOTO, "--weights", "none", "--out", tmp_path / "figure.png",
                     env={"KERAS_BACKEND": "openvino"})
    assert result.returncode == 1
    assert result.stderr == ("deepviz: error: Keras's backend is 'openvino' (KERAS_BACKEND), which is not installed; "
                             "set KERAS_BACKEND to tensorflow, jax or torch\n")


def test_a_backend_that_is_not_installed_says_how_to_install_it(tmp_path):
    absent = tmp_path / "absent"  # a tensorflow that cannot be imported, as where it was never installed
    absent.mkdir()
    (absent / "tensorflow.py").write_text("raise ModuleNotFoundError('no tensorflow', name='tensorflow')\n")
    path = os.pathsep.join(filter(None, [str(absent), os.environ.get("PYTHONPATH")]))
    out = tmp_path / "figure.png"
    result = run_cli(SAMPLE_PHOTO, "--weights", "none", "--out", out,
                     env={"KERAS_BACKEND": "tensorflow", "PYTHONPATH": path})
    assert result.returncode == 1
    assert ("Keras's backend is tensorflow (KERAS_BACKEND), which is not installed: pip install -r requirements.txt, "
            "or set KERAS_BACKEND to jax or torch where one is installed") in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert not out.exists()


def test_the_backend_is_found_where_keras_finds_it(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert backend.chosen_backend() == ("tensorflow", "Keras's default")  # no keras.json yet
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert backend.chosen_backend() == ("jax", str(tmp_path / "keras.json"))
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # the variable wins over the file, as in Keras
    assert backend.chosen_backend() == ("torch", "KERAS_BACKEND")
    missing_keras = ModuleNotFoundError("No module named 'keras'", name="keras")
    assert backend.keras_import_failure(missing_keras, "torch", "KERAS_BACKEND") == (
        "Keras is not installed: pip install -r requirements.txt")
    broken = ImportError("numpy.core.multiarray failed to import")  # installed, but does not import
    message = backend.keras_import_failure(broken, "jax", "KERAS_BACKEND")
    assert "numpy.core.multiarray failed to import" in message
    assert message.endswith("Check that `python -c 'import jax'` works, or set KERAS_BACKEND to tensorflow or torch")


def test_a_backend_missing_a_module_of_its_own_is_broken_not_absent():
    broken = ModuleNotFoundError("No module named 'jax.experimental'", name="jax.experimental")
    message = backend.keras_import_failure(broken, "jax", "KERAS_BACKEND")
    assert "not installed" not in message and "No module named 'jax.experimental'" in message
    absent = ModuleNotFoundError("No module named 'openvino'", name="openvino")  # a backend deepviz does not run on
    assert backend.keras_import_failure(absent, "openvino", "KERAS_BACKEND") == (
        "Keras's backend is 'openvino' (KERAS_BACKEND), which is not installed; set KERAS_BACKEND to tensorflow, "
        "jax or torch")


def test_on_jax_the_command_line_keeps_what_xla_compiles_unless_the_user_chose_a_cache(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "jax", raising=False)  # not imported yet, as in a fresh command line
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "environ", {"KERAS_BACKEND": "jax"})
    backend.keep_jax_compilations(Path("relative") / "jax")
    kept = Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    assert kept.parent == tmp_path / "relative" / "jax"  # absolute: Ray workers run in folders of their own
    assert kept.name == backend.cpu_kind() and kept.name.startswith(platform.machine())  # native code: one per CPU
    assert os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"  # the many small compilations too
    for chosen in ({"KERAS_BACKEND": "jax", "JAX_COMPILATION_CACHE_DIR": "/theirs"},
                   {"KERAS_BACKEND": "jax", "JAX_COMPILATION_CACHE_DIR": ""},  # theirs: none
                   {"KERAS_BACKEND": "torch"}, {"KERAS_BACKEND": "tensorflow"}):
        monkeypatch.setattr(os, "environ", dict(chosen))
        backend.keep_jax_compilations(tmp_path / "jax")
        assert os.environ == chosen
    (tmp_path / "a file").write_text("")
    for unusable in (tmp_path / "a file" / "jax", Path("/proc") / "jax"):  # under a file; where none can be made
        monkeypatch.setattr(os, "environ", {"KERAS_BACKEND": "jax"})
        backend.keep_jax_compilations(unusable)
        assert os.environ == {"KERAS_BACKEND": "jax"}  # no cache, rather than JAX's warning at every entry
    monkeypatch.setitem(sys.modules, "jax", object())  # already imported: too late for its settings, left alone
    monkeypatch.setattr(os, "environ", {"KERAS_BACKEND": "jax"})
    backend.keep_jax_compilations(tmp_path / "jax")
    assert os.environ == {"KERAS_BACKEND": "jax"}


def test_each_kind_of_cpu_gets_a_cache_folder_of_its_own(tmp_path):
    cpus = {}
    for name, flags in (("a", "fpu sse avx2"), ("b", "fpu sse avx2"), ("c", "fpu sse avx2 avx512f")):
        cpus[name] = tmp_path / name
        cpus[name].write_text("".join(f"processor\t: {i}\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\n"
                                      for i in range(2 if name == "a" else 4)))
    kinds = {name: backend.cpu_kind(path) for name, path in cpus.items()}
    assert kinds["a"] == kinds["b"] != kinds["c"]  # the same CPU, whatever its core count; another CPU
    assert re.fullmatch(r"[\w.-]+-[0-9a-f]{12}", backend.cpu_kind())


@pytest.mark.skipif(not installed("jax"), reason="the jax backend is not installed")
def test_a_run_on_jax_leaves_its_compiled_programs_in_deepvizs_cache_for_the_next(monkeypatch, tmp_path):
    keras = backend.import_keras()
    inputs = keras.Input((32, 32, 3))
    maps = keras.layers.Conv2D(4, 3, activation="relu", name="maps")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(maps))
    keras.Model(inputs, outputs).save(tmp_path / "small.keras")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    command = [SAMPLE_PHOTO, "--model", tmp_path / "small.keras", "--layers", "maps", "--quiet"]
    env = {"KERAS_BACKEND": "jax", "DEEPVIZ_CACHE": str(tmp_path / "cache")}
    first = run_cli(*command, "--out", tmp_path / "first.png", env=env)
    assert first.returncode == 0, first.stderr
    kept = sorted(path.name for path in (tmp_path / "cache" / "jax" / backend.cpu_kind()).glob("*-cache"))
    assert kept  # the forward pass, and the small programs of the layers' initialisation
    again = run_cli(*command, "--out", tmp_path / "again.png", env=env)
    assert again.returncode == 0 and again.stdout.replace("again.png", "first.png") == first.stdout
    assert sorted(path.name for path in (tmp_path / "cache" / "jax" / backend.cpu_kind()).glob("*-cache")) == kept
    theirs = {**env, "DEEPVIZ_CACHE": str(tmp_path / "unused"),  # the user's own cache, with all their settings
              "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "theirs"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    assert run_cli(*command, "--out", tmp_path / "theirs.png", env=theirs).returncode == 0
    assert any((tmp_path / "theirs").glob("*-cache")) and not (tmp_path / "unused").exists()
