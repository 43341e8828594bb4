"""Grad-CAM: where in the photo the evidence for each top class lies, at one layer."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .backend import import_keras, input_gradient
from .errors import UsageError
from .forward import OUTPUT_KEY, feature_model_for
from .layers import check_layer_names, layer_paths, output_shape


def build_cam_head(network, path: str):
    """A model from the maps of layer `path` to the network's output, for Grad-CAM's gradients."""
    keras = import_keras()
    feature_model = feature_model_for(network.model, [path])
    try:
        return keras.Model(feature_model.output[path], feature_model.output[OUTPUT_KEY])
    except ValueError:
        raise UsageError(
            f"--cam-layer {path}: the output does not depend on this layer alone (a connection "
            f"goes around it); choose a block output, such as {network.default_layers[-1]}"
        ) from None


def grad_cam(head, maps: np.ndarray, class_indices: Sequence[int]) -> np.ndarray:
    """Grad-CAM heatmaps (K, h, w) in [0, 1] of one photo's maps (h, w, k), one per class.

    The classes go through the head together, as one batch: one backward pass for all.
    """
    batch = np.repeat(maps[None].astype(np.float32), len(class_indices), axis=0)  # (K, h, w, k)
    output_size = head.output.shape[-1]
    one_hot = np.eye(output_size, dtype=np.float32)[list(class_indices)]  # (K, classes)
    gradients = input_gradient(head, batch, one_hot)  # (K, h, w, k)
    channel_weights = gradients.mean(axis=(1, 2))  # (K, k): how much each channel matters to each class
    heatmaps = np.maximum(np.einsum("hwk,ck->chw", maps, channel_weights), 0)
    peaks = heatmaps.max(axis=(1, 2), keepdims=True)
    return heatmaps / np.where(peaks > 0, peaks, 1.0)


def check_cam(network, cam_layer: str | None) -> str:
    """The layer Grad-CAM explains (default: the network's last default layer); it needs predictions."""
    if network.class_names is None:
        raise UsageError(f"--cam explains predictions, and there are none: {network.no_predictions_reason}")
    cam_layer = cam_layer or network.default_layers[-1]
    check_layer_names(network, [cam_layer])
    if len(output_shape(layer_paths(network.model)[cam_layer])) != 3:
        raise UsageError(f"--cam-layer {cam_layer}: Grad-CAM needs a layer with spatial maps (height, width, "
                         f"channels); choose a convolutional layer such as {network.default_layers[-1]}")
    return cam_layer
