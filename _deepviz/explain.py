"""Grad-CAM: where in the photo the evidence for each top class lies, at one layer."""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np

from .backend import import_keras, input_gradient
from .errors import UsageError
from .forward import OUTPUT_KEY, can_trace, feature_model_for
from .layers import check_layer_names, has_own_maps, layer_paths, output_shape
from .models import OWN_WEIGHTS_LABEL, is_activation_only, output_step, step_activation


@dataclasses.dataclass(frozen=True)
class CamHead:
    """Grad-CAM's model from a layer's maps to the class scores it differentiates, and what those scores are."""

    model: object  # keras.Model
    scores: str  # "logits"; "probabilities" or "output" (as it is) where class_scores could not reach logits


def build_cam_head(network, path: str) -> CamHead:
    """The model from the maps of layer `path` to the network's class scores (class_scores), for Grad-CAM."""
    head = cam_head_or_none(network, path)
    if head is None:
        raise UsageError(
            f"Grad-CAM layer {path}: a connection goes around this layer to the output, so the output does not "
            f"depend on its maps alone; choose a layer that every path passes through, such as "
            f"{default_cam_layer(network)}"
        )
    return head


def cam_head_or_none(network, path: str) -> CamHead | None:
    """build_cam_head's head, or None where a connection goes around the layer (a residual block's insides)."""
    keras = import_keras()
    feature_model = feature_model_for(network.model, [path], nested_at_the_end(network.model))
    scores, kind = class_scores(feature_model.output[OUTPUT_KEY])
    try:
        head = keras.Model(feature_model.output[path], scores)
    except ValueError as error:
        if "is not connected to" not in str(error):  # Keras's word for a path around the layer
            raise
        return None
    return CamHead(head, kind) if runs_on_its_maps(head, maps_shape(network, feature_model, path)) else None


def class_scores(output) -> tuple:
    """(the class scores Grad-CAM differentiates, what they are): the model's `output` before its softmax (or
    sigmoid), "logits".

    Grad-CAM weighs each channel by the gradient of the class's score before the softmax
    (Selvaraju et al.). A probability's gradient, p_c (dz_c - sum_j p_j dz_j), is another map,
    where the class beats the other likely ones, and it vanishes as p_c nears 1. The scores
    are the input of a Softmax layer, an Activation or keras.ops.softmax, or a Dense layer's
    own before its activation, worked out from its weights (the model is left as it is).
    `output` stays as it is where it is logits already (no activation), "probabilities" where
    the softmax cannot be reached (another layer's activation, a quantized Dense), and
    "output" where no softmax or sigmoid is found at its end (a Lambda, another activation,
    a subclassed model). Models nested at the end are inlined in the head
    (nested_at_the_end), so the softmax inside them is reached.
    """
    keras = import_keras()
    step, inputs = made_by(output)
    activation = step_activation(step)
    if activation not in ("softmax", "sigmoid"):
        return output, ("logits" if activation == "linear" else "output")
    if len(inputs) != 1:
        return output, "probabilities"
    if is_activation_only(step):
        return inputs[0], "logits"  # keras.layers.Softmax, keras.ops.softmax, Activation("softmax")
    if type(step) is keras.layers.Dense and getattr(step, "quantization_mode", None) is None:
        return dense_scores_class()(step)(inputs[0]), "logits"
    return output, "probabilities"


def nested_at_the_end(model) -> list[str]:
    """The paths of the models nested at the end of `model` ("head", "head/classifier"), whose last layer
    makes its output: inlined in the Grad-CAM head, so that class_scores reaches that layer. A subclassed
    model has no graph to inline: its output is differentiated as it is."""
    paths, step = [], output_step(model)
    while can_trace(step):
        paths.append(f"{paths[-1]}/{step.name}" if paths else step.name)
        step = output_step(step)
    return paths


def made_by(tensor) -> tuple:
    """(the layer or operation that made a symbolic `tensor`, the symbolic tensors it was called on).

    Read from Keras's record of each call, `_keras_history`, which Keras's own functional
    models and clone_model read (private, and the same from Keras 3.0 to 3.15 at least).
    """
    step, node_index, _ = tensor._keras_history
    return step, step._inbound_nodes[node_index].input_tensors


@functools.cache
def dense_scores_class():
    """The Keras layer of a Dense layer's scores before its activation; made on first use, as Keras is imported late."""
    keras = import_keras()
    ops = keras.ops

    class DenseScores(keras.layers.Layer):
        """`dense`'s inputs @ kernel + bias, without its activation, on its own weights, in float32."""

        def __init__(self, dense, **kwargs):
            super().__init__(name=f"deepviz_{dense.name}_scores", dtype="float32", **kwargs)
            self.dense = dense

        def call(self, inputs):
            scores = ops.matmul(ops.cast(inputs, "float32"), ops.cast(self.dense.kernel, "float32"))
            return scores if self.dense.bias is None else scores + ops.cast(self.dense.bias, "float32")

    return DenseScores


def runs_on_its_maps(head, shape: tuple) -> bool:
    """Whether the head runs on maps (of `shape`) alone. Keras 3.6 to 3.13 build a head that a connection
    goes around without a word, and it fails only when run, looking for the tensor that goes around."""
    try:
        head(np.zeros(shape, "float32"), training=False)
    except KeyError:
        return False
    return True


def maps_shape(network, feature_model, path: str) -> tuple:
    """The shape of one photo's maps of `path`, as the network sees the photo (its sizes may be free in the model)."""
    keras = import_keras()
    photo = keras.KerasTensor((1, *network.input_size, network.input_channels))
    return tuple(feature_model.compute_output_spec(photo)[path].shape)


def explainable_layer_before(network, path: str) -> str:
    """The last layer with spatial maps, `path` or before it, that every path to the output passes through."""
    paths = layer_paths(network.model)
    names = list(paths)
    for name in reversed(names[: names.index(path) + 1]):
        if has_own_maps(paths[name]) and cam_head_or_none(network, name) is not None:
            return name
    raise UsageError(f"--cam: no layer of {network.label} with spatial maps, {path} or before it, that every "
                     "path to the output passes through; Grad-CAM cannot explain this model")


def default_cam_layer(network) -> str:
    """The layer --cam explains without --cam-layer: a built-in model's own, or the last that can be explained."""
    if not network.cam_layer:
        if not network.default_layers:
            raise UsageError(f"--cam: {network.label} has no layer with spatial maps (height, width, channels) "
                             "to explain")
        network.cam_layer = explainable_layer_before(network, network.default_layers[-1])  # searched once
    return network.cam_layer


def grad_cam(head: CamHead, maps: np.ndarray, class_indices: Sequence[int]) -> np.ndarray:
    """Grad-CAM heatmaps (K, h, w) in [0, 1] of one photo's maps (h, w, k), one per class.

    The classes go through the head together, as one batch: one backward pass for all.
    """
    batch = np.repeat(maps[None].astype(np.float32), len(class_indices), axis=0)  # (K, h, w, k)
    output_size = head.model.output.shape[-1]
    one_hot = np.eye(output_size, dtype=np.float32)[list(class_indices)]  # (K, classes)
    gradients = input_gradient(head.model, batch, one_hot)  # (K, h, w, k)
    channel_weights = gradients.mean(axis=(1, 2))  # (K, k): how much each channel matters to each class
    heatmaps = np.maximum(np.einsum("hwk,ck->chw", maps, channel_weights), 0)
    peaks = heatmaps.max(axis=(1, 2), keepdims=True)
    return heatmaps / np.where(peaks > 0, peaks, 1.0)


def nothing_to_explain(no_predictions_reason: str, built_in: bool) -> UsageError:
    other_weights = ", or use weights with a classifier head (--weights imagenet)" if built_in else ""
    return UsageError(f"--cam explains predictions, and there are none: {no_predictions_reason}. "
                      f"Leave --cam out{other_weights}")


def check_cam(network, cam_layer: str | None) -> str:
    """The layer Grad-CAM explains (default: default_cam_layer); it needs predictions."""
    if network.class_names is None:
        raise nothing_to_explain(network.no_predictions_reason, network.weights_label != OWN_WEIGHTS_LABEL)
    if cam_layer is None:
        return default_cam_layer(network)
    check_layer_names(network, [cam_layer])
    shape = output_shape(layer_paths(network.model)[cam_layer])
    if len(shape) != 3:
        raise UsageError(f"Grad-CAM layer {cam_layer}: expected a layer with spatial maps (height, width, channels), "
                         f"and its output is {shape}; choose a convolutional layer such as "
                         f"{default_cam_layer(network)}")
    return cam_layer
