"""The few lines each Keras backend needs of its own: importing Keras quietly, jax's compilations kept, gradients.

Everything else in deepviz runs on keras.ops and so on TensorFlow, JAX and PyTorch alike,
on whatever device Keras puts the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DeepvizError


def import_keras():
    """Import Keras, with TensorFlow's C++ start-up logging kept off the terminal."""
    if "keras" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            with file_descriptor_silenced(2):  # absl logs before TF_CPP_MIN_LOG_LEVEL applies
                import keras  # noqa: F401
        except (ImportError, ValueError) as error:  # Keras raises ValueError for a backend it does not know
            raise DeepvizError(keras_import_failure(error, *chosen_backend())) from error
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # no retracing warnings
    import keras

    return keras


SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")  # each imported as a package of the same name
KERAS_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")  # the names Keras 3 knows


def check_backend() -> None:
    """Keras and the backend it will load are installed and known, found without importing them: a bad
    KERAS_BACKEND fails before any work is announced, with import_keras's message."""
    if "keras" in sys.modules:
        return
    backend, source = chosen_backend()
    needed = ("keras", backend) if backend in KERAS_BACKENDS else ("keras",)
    missing = next((module for module in needed if importlib.util.find_spec(module) is None), None)
    if missing is not None:
        raise DeepvizError(keras_import_failure(ModuleNotFoundError(name=missing), backend, source))
    if backend not in KERAS_BACKENDS:
        raise DeepvizError(keras_import_failure(ValueError(f"unknown backend {backend!r}"), backend, source))


def chosen_backend() -> tuple[str, str]:
    """(the backend Keras will load, where that choice comes from), found as Keras finds it, without importing it."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "KERAS_BACKEND"
    if "KERAS_HOME" in os.environ:
        home = Path(os.environ["KERAS_HOME"])
    else:
        home = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
        home = home / ".keras"
    config = home.expanduser() / "keras.json"
    try:
        return str(json.loads(config.read_text())["backend"]), str(config)
    except (OSError, ValueError, KeyError, TypeError):
        return "tensorflow", "Keras's default"


def keras_import_failure(error: Exception, backend: str, source: str) -> str:
    """Why `import keras` failed, and what to do, for a backend chosen by `source`."""
    others = [name for name in SUPPORTED_BACKENDS if name != backend]
    others = f"{', '.join(others[:-1])} or {others[-1]}"
    missing = error.name if isinstance(error, ModuleNotFoundError) else None  # a module of it: installed, but broken
    if missing == "keras":
        return "Keras is not installed: pip install -r requirements.txt"
    if missing == backend and backend in SUPPORTED_BACKENDS:
        install = "pip install -r requirements.txt" if backend == "tensorflow" else f"pip install {backend}"
        return (f"Keras's backend is {backend} ({source}), which is not installed: {install}, "
                f"or set KERAS_BACKEND to {others} where one is installed")
    if missing == backend or backend not in KERAS_BACKENDS:
        why = "is not installed" if missing == backend else "Keras does not know"
        return f"Keras's backend is {backend!r} ({source}), which {why}; set KERAS_BACKEND to tensorflow, jax or torch"
    failure = f"Keras could not be imported on its {backend} backend ({source}): {type(error).__name__}: {error}"
    if isinstance(error, ImportError):
        return f"{failure}. Check that `python -c 'import {backend}'` works, or set KERAS_BACKEND to {others}"
    return failure


def keep_jax_compilations(directory: Path) -> None:
    """On jax, keep every program XLA compiles under `directory`, for the next process to read back.

    jax compiles anew in each process: the network's forward pass for each batch shape, and
    the ~100 small programs that initialise its variables, each quicker than JAX's default
    threshold for keeping one (1 s) but together most of building InceptionV3 on a CPU
    (README, *Keras backends*). The programs are native code for this machine's CPU, so each
    kind of CPU gets a folder of its own: a home folder shared by a cluster's nodes never runs
    one node's code on another. A cache the user chose (JAX_COMPILATION_CACHE_DIR, even empty)
    is left as it is; where the folder cannot be made or written, there is none. Takes effect
    only before jax is imported: the command line calls it first thing; the Python API leaves
    the user's jax settings alone.
    """
    if chosen_backend()[0] != "jax" or "JAX_COMPILATION_CACHE_DIR" in os.environ or "jax" in sys.modules:
        return
    kept = directory.expanduser().resolve() / cpu_kind()
    try:
        kept.mkdir(parents=True, exist_ok=True)
    except OSError:  # a folder that cannot be made there (under a file, no permission): compiled anew, as before
        return
    if not os.access(kept, os.W_OK):  # nor one that cannot be written: JAX would warn of every entry
        return
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(kept)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def cpu_kind(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """A short name for this machine's kind of CPU: its architecture and a digest of its model and features
    (from Linux's `cpuinfo`; elsewhere, what `platform.processor` says)."""
    identity = platform.processor()
    with contextlib.suppress(OSError):
        lines = cpuinfo.read_text().splitlines()
        identity = "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags", "Features"))}))
    return f"{platform.machine() or 'cpu'}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


@contextlib.contextmanager
def file_descriptor_silenced(descriptor: int):
    """Send what C code writes to `descriptor` to /dev/null for the duration."""
    sys.stderr.flush()
    saved = os.dup(descriptor)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
        yield
    finally:
        os.dup2(saved, descriptor)
        os.close(saved)
        os.close(devnull)


def input_gradient(model, inputs: np.ndarray, weights: np.ndarray, constants: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Gradient of sum(model(inputs) * weights) with respect to `inputs`.

    A model of several inputs gets `[inputs, *constants]`; only `inputs` is differentiated
    (Grad-CAM passes none; feature visualisation passes each step's random transforms).
    The one place where each Keras backend needs its own few lines.
    """
    keras = import_keras()
    backend = keras.backend.backend()
    constants = [keras.ops.convert_to_tensor(c) for c in constants]
    weights = keras.ops.convert_to_tensor(weights)

    def model_inputs(tensor):
        return [tensor, *constants] if constants else tensor

    def weighted_sum(outputs):  # in float32, whatever the model's dtype policy (mixed_float16 gives float16)
        return keras.ops.sum(keras.ops.cast(outputs, weights.dtype) * weights)

    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            score = weighted_sum(model(model_inputs(tensor), training=False))
        return keras.ops.convert_to_numpy(tape.gradient(score, tensor))
    if backend == "torch":
        # On the device Keras runs the model on (a GPU where there is one), not the CPU's default.
        tensor = keras.ops.convert_to_tensor(inputs).detach().requires_grad_(True)
        weighted_sum(model(model_inputs(tensor), training=False)).backward()
        return keras.ops.convert_to_numpy(tensor.grad)
    if backend == "jax":
        import jax

        values = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])

        def score(tensor):
            outputs, _ = model.stateless_call(*values, model_inputs(tensor), training=False)
            return weighted_sum(outputs)

        return keras.ops.convert_to_numpy(jax.grad(score)(keras.ops.convert_to_tensor(inputs)))
    raise DeepvizError(f"no gradient code for the Keras backend {backend!r} (needed by --cam and --synthesize); "
                       "use tensorflow, jax or torch")
