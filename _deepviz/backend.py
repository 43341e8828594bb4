"""The few lines each Keras backend needs of its own: importing Keras quietly, and gradients.

Everything else in deepviz runs on keras.ops and so on TensorFlow, JAX and PyTorch alike,
on whatever device Keras puts the model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Sequence

import numpy as np

from .errors import DeepvizError


def import_keras():
    """Import Keras, with TensorFlow's C++ start-up logging kept off the terminal."""
    if "keras" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with file_descriptor_silenced(2):  # absl logs before TF_CPP_MIN_LOG_LEVEL applies
            import keras  # noqa: F401
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # no retracing warnings
    import keras

    return keras


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

    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            score = keras.ops.sum(model(model_inputs(tensor), training=False) * weights)
        return keras.ops.convert_to_numpy(tape.gradient(score, tensor))
    if backend == "torch":
        # On the device Keras runs the model on (a GPU where there is one), not the CPU's default.
        tensor = keras.ops.convert_to_tensor(inputs).detach().requires_grad_(True)
        keras.ops.sum(model(model_inputs(tensor), training=False) * weights).backward()
        return keras.ops.convert_to_numpy(tensor.grad)
    if backend == "jax":
        import jax

        values = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])

        def score(tensor):
            outputs, _ = model.stateless_call(*values, model_inputs(tensor), training=False)
            return keras.ops.sum(outputs * weights)

        return keras.ops.convert_to_numpy(jax.grad(score)(keras.ops.convert_to_tensor(inputs)))
    raise DeepvizError(f"no gradient code for the Keras backend {backend!r} (needed by --cam and --synthesize); "
                       "use tensorflow, jax or torch")
