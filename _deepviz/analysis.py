"""One batch of photos through the network once, each photo reduced to what is printed and drawn.

The Python API and the command line both go through `analyse_batch`: the same numbers,
the same figures. Where only a layer's drawing is asked for, it is reduced on the model's
device (`reduction`) and only its statistics and drawn channels reach the host; where its
full maps are needed (--save-arrays, --summary, Grad-CAM, a vector layer), they do.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from PIL import Image

from .backend import import_keras
from .errors import UsageError
from .explain import CamHead, build_cam_head, check_cam, grad_cam
from .forward import OUTPUT_KEY, build_feature_model, class_keys, predictions_of, run_forward_pass, top_classes
from .images import preprocess
from .layers import check_channels, check_layer_names, is_whole
from .reduction import Reduction, is_spatial, with_layers_reduced
from .stats import (DEFAULT_MAX_MAPS, DEFAULT_TOP, RANKINGS, SUMMARIES, LayerSummary, summarize_layer,
                    summary_from_reduced)


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What to compute for each photo: the layers, how their channels are chosen, Grad-CAM or not."""

    layers: tuple[str, ...]
    top: int = DEFAULT_TOP
    max_maps: int | None = DEFAULT_MAX_MAPS  # None: every channel
    rank: str = "mean"  # a key of RANKINGS
    channels: tuple[int, ...] | None = None  # drawn instead of the top-ranked ones
    summary: str | None = None  # a key of SUMMARIES
    cam: bool = False
    cam_layer: str | None = None  # None: the network's last default layer
    keep_arrays: bool = False  # keep each photo's full maps (--save-arrays, Visualizer.maps)


@dataclasses.dataclass
class Pipeline:
    """The models every batch of a run goes through, built once for an Analysis."""

    feature_model: object  # keras.Model: {layer path: maps or {field: reduced}, OUTPUT_KEY: output}
    layer_names: list[str]
    cam_layer: str | None = None
    cam_head: CamHead | None = None  # from the CAM layer's maps to the class scores (explain.class_scores)
    reduced_layers: dict = dataclasses.field(default_factory=dict)  # {layer reduced on the device: its channels}

    @property
    def cam_scores(self) -> str:
        """What Grad-CAM's gradients are of (CamHead.scores), as FigureStyle.cam_scores; "logits" without Grad-CAM."""
        return self.cam_head.scores if self.cam_head else "logits"


@dataclasses.dataclass
class PhotoResult:
    """What one photo's forward (and backward) pass is reduced to."""

    predictions: list | None  # [(class name, probability)]
    layers: list[LayerSummary]
    arrays: dict | None  # for --save-arrays
    cams: list | None  # [(class name, probability, heatmap)]
    classes: list[int] | None = None  # the predictions' class indices


def check_analysis(network, analysis: Analysis) -> tuple[list[str], str | None]:
    """(layer names without repeats, the Grad-CAM layer or None), or UsageError before anything is built."""
    if not is_whole(analysis.top) or analysis.top < 1:
        raise UsageError(f"top: expected a whole number of at least 1, received {analysis.top!r}")
    if analysis.rank not in RANKINGS:
        raise UsageError(f"rank: expected one of {', '.join(RANKINGS)}, received {analysis.rank!r}")
    if analysis.summary is not None and analysis.summary not in SUMMARIES:
        raise UsageError(f"summary: expected None or one of {', '.join(SUMMARIES)}, received {analysis.summary!r}")
    if analysis.max_maps is not None and (not is_whole(analysis.max_maps) or analysis.max_maps < 1):
        raise UsageError(f"max_maps: expected a whole number of at least 1 or None (all), received "
                         f"{analysis.max_maps!r}")
    layer_names = check_layer_names(network, analysis.layers)
    check_channels(network, layer_names, analysis.channels)
    cam_layer = check_cam(network, analysis.cam_layer) if analysis.cam else None
    return layer_names, cam_layer


def device_reduction(analysis: Analysis) -> Reduction | None:
    """How the drawn layers are reduced on the model's device; None where every layer's full maps are needed."""
    if analysis.keep_arrays or analysis.summary is not None or not analysis.layers:  # arrays saved; PCA; none drawn
        return None
    return Reduction(analysis.max_maps, analysis.rank, analysis.channels)


def build_pipeline(network, layer_names: Sequence[str], cam_layer: str | None,
                   reduction: Reduction | None = None) -> Pipeline:
    """One feature model over the layers (and the Grad-CAM layer), and the Grad-CAM head.

    With a `reduction`, each layer with spatial maps is reduced on the model's device
    (the Grad-CAM layer aside: grad_cam needs its full maps, which reach the host anyway),
    and a model without predictions leaves its output on the device too: nothing reads it.
    """
    outputs_needed = list(layer_names) + ([cam_layer] if cam_layer and cam_layer not in layer_names else [])
    feature_model = build_feature_model(network, outputs_needed)
    reduced_layers = {}
    if reduction is not None:
        reduced_layers = {name: int(feature_model.output[name].shape[-1]) for name in layer_names
                          if name != cam_layer and is_spatial(feature_model.output[name])}
        unread = [OUTPUT_KEY] if network.class_names is None else []  # a backbone's output: (8, 8, 2048) maps
        feature_model = with_layers_reduced(feature_model, reduced_layers, reduction, unread)
    cam_head = build_cam_head(network, cam_layer) if cam_layer else None
    return Pipeline(feature_model, list(layer_names), cam_layer, cam_head, reduced_layers)


def forward_batch(network, feature_model, photos: Sequence[Image.Image], batch_size: int) -> dict[str, np.ndarray]:
    """The feature model's outputs for `photos`, as one batch padded to `batch_size`.

    Padding the last batch means Keras traces one shape only. TensorFlow traces a graph
    before its first compiled run (about a second), which pays off only for batches;
    JAX and PyTorch run compiled faster even once.
    """
    batch = np.stack([preprocess(photo, network) for photo in photos])  # (n, height, width, 3)
    padding = batch_size - len(photos)
    if padding > 0:
        batch = np.concatenate([batch, np.zeros((padding, *batch.shape[1:]), batch.dtype)])
    compiled = batch_size > 1 or import_keras().backend.backend() != "tensorflow"
    return run_forward_pass(feature_model, batch, compiled)


def analyse_batch(network, pipeline: Pipeline, photos: Sequence[Image.Image], analysis: Analysis,
                  batch_size: int) -> list[PhotoResult]:
    """One PhotoResult per photo, from one forward pass (and one backward pass per photo for Grad-CAM).

    Each layer is reduced to what is drawn here, so a batch's full maps are freed
    before the next batch runs and memory stays flat however many photos there are.
    """
    outputs = forward_batch(network, pipeline.feature_model, photos, batch_size)
    return reduce_batch(network, pipeline, outputs, len(photos), analysis)


def reduce_batch(network, pipeline: Pipeline, outputs: dict, count: int, analysis: Analysis) -> list[PhotoResult]:
    """The first `count` photos of a forward pass's outputs, each reduced to a PhotoResult."""
    results = []
    for i in range(count):
        predictions = cams = classes = None
        if network.class_names is not None:
            classes = [int(c) for c in top_classes(outputs[OUTPUT_KEY][i], analysis.top)]
            predictions = predictions_of(outputs[OUTPUT_KEY][i], network.class_names, classes)
        if pipeline.cam_head is not None:
            heatmaps = grad_cam(pipeline.cam_head, outputs[pipeline.cam_layer][i], classes)
            cams = [(name, probability, heatmap) for (name, probability), heatmap in zip(predictions, heatmaps)]
        layers = [layer_summary(pipeline, name, outputs[name], i, analysis) for name in pipeline.layer_names]
        arrays = (output_arrays(network, outputs, pipeline.layer_names, i, cams, classes) if analysis.keep_arrays
                  else None)
        results.append(PhotoResult(predictions, layers, arrays, cams, classes))
    return results


def layer_summary(pipeline: Pipeline, name: str, output, index: int, analysis: Analysis) -> LayerSummary:
    """Photo `index`'s LayerSummary of a layer: from its reduction on the device, or from its full maps."""
    if name in pipeline.reduced_layers:
        reduced = {field: values[index] for field, values in output.items()}
        return summary_from_reduced(name, reduced, pipeline.reduced_layers[name], analysis.rank, analysis.channels)
    return summarize_layer(name, output[index], analysis.max_maps, analysis.rank, analysis.channels, analysis.summary)


def output_arrays(network, outputs: dict, layer_names: Sequence[str], index: int, cams, classes) -> dict:
    """One photo's full maps of every chosen layer, the model's output vector and Grad-CAM heatmaps.

    The output vector is "predictions" (or "output" without classes); where a chosen layer has that
    name and other values (a model's logits layer, the output its softmax), "output/predictions".
    Each heatmap is "cam/<class name>", or "cam/<class name>_<index>" for a name two classes share
    (a "/" or "\\" in a name as "_").
    """
    arrays = {name: np.array(outputs[name][index]) for name in layer_names}
    output_name = "predictions" if network.class_names is not None else "output"
    output_vector = np.array(outputs[OUTPUT_KEY][index])
    if output_name in arrays and not np.array_equal(arrays[output_name], output_vector, equal_nan=True):
        output_name = f"output/{output_name}"
    arrays[output_name] = output_vector
    if cams:
        for key, (_, _, heatmap) in zip(class_keys(list(map(member_name, network.class_names)), classes), cams):
            arrays[f"cam/{key}"] = heatmap
    return arrays


def member_name(class_name: str) -> str:
    """A class name as one name in the .npz (a zip file): "/" and "\\" would make folders of it ("AC/DC",
    "../x"), so they are "_"."""
    return class_name.replace("/", "_").replace("\\", "_")
