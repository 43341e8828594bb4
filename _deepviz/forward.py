"""One multi-output model over the chosen layers, one forward pass, and the top predictions."""

from __future__ import annotations

import collections
from typing import Sequence

import numpy as np

from .backend import import_keras
from .layers import is_input_layer


OUTPUT_KEY = "__output__"  # the model's own output, among the feature model's outputs


def build_feature_model(network, paths: Sequence[str]):
    """One Keras model whose outputs are {layer path: maps, OUTPUT_KEY: the model's output}.

    Where the output is logits (network.logits), OUTPUT_KEY is their softmax: probabilities.
    """
    feature_model = feature_model_for(network.model, paths)
    if not network.logits:
        return feature_model
    keras = import_keras()
    outputs = dict(feature_model.output)
    outputs[OUTPUT_KEY] = keras.layers.Softmax(name="deepviz_softmax")(outputs[OUTPUT_KEY])
    return keras.Model(feature_model.input, outputs)


def feature_model_for(model, paths: Sequence[str], inlined: Sequence[str] = ()):
    """A model with `model`'s input and outputs {path: maps, OUTPUT_KEY: `model`'s output}.

    A layer inside a nested model ("outer/inner") lives in the nested model's own graph,
    so it cannot simply be an output of the outer one ("Graph disconnected"); nor can the
    nested model's own `output`, which is its inner graph's. The model
    is re-traced instead, its layers (and so their weights) reused, nested models inlined:
    every map then comes from one graph and the same single forward pass. The nested
    models at the paths `inlined` are inlined too, though no map is taken from them.
    """
    keras = import_keras()
    inside_or_nested = any("/" in path or isinstance(model.get_layer(path), keras.Model) for path in paths)
    if not inside_or_nested and not inlined and not isinstance(model, keras.Sequential):
        outputs = {path: model.get_layer(path).output for path in paths}
        outputs[OUTPUT_KEY] = model.output
        return keras.Model(model.input, outputs)
    inputs = keras.Input(shape=model.input_shape[1:])
    recorded = {}
    result = trace_layers(model, inputs, set(paths) | {f"{path}/" for path in inlined}, recorded)
    outputs = {path: recorded[path] for path in paths}
    outputs[OUTPUT_KEY] = result
    return keras.Model(inputs, outputs)


def can_trace(model) -> bool:
    """Whether trace_layers can walk `model`'s layers: a Sequential, or a graph of layers (functional);
    a subclassed model has only its `call`."""
    return isinstance(model, import_keras().Sequential) or hasattr(model, "_run_through_graph")


def trace_layers(model, inputs, wanted: set, recorded: dict, prefix: str = ""):
    """Call `model`'s layers on `inputs`, inlining nested models; record the `wanted` paths' outputs.

    Every layer is called on tensors of one graph, so any wanted output is connected to
    every later one (a Grad-CAM head can start at a nested model's inner layer).
    """
    keras = import_keras()
    for layer in model.layers:  # input layers are never called: their output is what the model is called on
        if is_input_layer(layer) and prefix + layer.name in wanted:
            recorded[prefix + layer.name] = inputs

    def call_layer(layer, *args, **kwargs):
        path = prefix + layer.name
        if isinstance(layer, keras.Model) and any(w.startswith(path + "/") for w in wanted):
            result = trace_layers(layer, args[0], wanted, recorded, path + "/")
        else:
            result = layer(*args, **kwargs)
        if path in wanted:
            recorded[path] = result
        return result

    if isinstance(model, keras.Sequential):  # its layers, one after another
        result = inputs
        for layer in model.layers:
            result = call_layer(layer, result)
        return result
    # Keras's own walk through a functional graph, as keras.models.clone_model makes it, without
    # building a model from `inputs`: that fails where they are not an Input, as for a backbone
    # called on the output of a Rescaling layer. A private method, with its `call_fn` from Keras 3.3.3
    # to 3.15 at least (requirements.txt asks for 3.6).
    return model._run_through_graph(inputs, operation_fn=lambda layer: layer, call_fn=call_layer)


def run_forward_pass(feature_model, batch: np.ndarray, compiled: bool = False) -> dict:
    """The feature model's outputs for a batch, as NumPy arrays nested as the outputs are.

    Maps of every chosen layer (or {field: array} where a layer is reduced on the device)
    and the model's output. `compiled` runs Keras's predict step (a traced graph on
    TensorFlow, jit-compiled on JAX): faster and leaner for batches than calling the model eagerly.
    """
    if compiled:
        return feature_model.predict_on_batch(batch)
    keras = import_keras()
    outputs = feature_model(batch, training=False)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def top_classes(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k most probable classes, most probable first."""
    return np.argsort(-probabilities, kind="stable")[:k]


def class_keys(class_names: Sequence[str], indices: Sequence[int]) -> list[str]:
    """A key per class: its name, or where another class has the same name, the name and its index.

    ImageNet has two classes named crane (134, the bird; 517, the machine) and two maillot.
    """
    counts = collections.Counter(class_names)
    return [class_names[i] if counts[class_names[i]] == 1 else f"{class_names[i]}_{i}" for i in indices]


def top_predictions(probabilities: np.ndarray, class_names: Sequence[str], k: int):
    """[(class name, probability)] for the k most probable classes, most probable first."""
    return predictions_of(probabilities, class_names, top_classes(probabilities, k))


def predictions_of(probabilities: np.ndarray, class_names: Sequence[str], classes: Sequence[int]):
    """[(class name, probability)] of `classes`, in their order."""
    return [(class_names[i], float(probabilities[i])) for i in classes]
