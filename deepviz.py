#!/usr/bin/env python3
"""deepviz: show what a convolutional network sees in a photo.

From the command line (`python deepviz.py photo.jpg --layers conv2d_1 mixed3`) or from
Python, on a built-in keras.applications classifier, a saved model or a model in memory:

    import deepviz
    viz = deepviz.Visualizer(model)        # "inception_v3", "my.keras" or a keras.Model
    viz.predict("dog.jpg")                 # [("beagle", 0.87), ...]
    viz.maps("dog.jpg", ["mixed3"])        # {"mixed3": (17, 17, 768) array}
    viz.grad_cam("dog.jpg")                # {"beagle": (8, 8) heatmap in [0, 1], ...}
    viz.figure("dog.jpg")                  # a matplotlib Figure, shown inline in Jupyter
    viz.save("dog.jpg", "result/dog.png")
    viz.synthesize("mixed3", [97, 12])     # {97: (224, 224, 3) uint8 image that excites channel 97, ...}
    viz.exemplars("photos/", "mixed5", [12])  # {12: [Exemplar(path, activation, position, ...)] best first}

The pipeline, in the order it runs, one module of the private package `_deepviz` each:
    images (read, preprocess) -> models (build the network) -> layers (check names)
    -> forward (one multi-output model, one pass) -> explain (Grad-CAM)
    -> stats (statistics, channel ranking) -> mosaic, figure (draw) -> output (save)
    and, for feature visualisation, synthesis (optimise a pattern per channel) -> synthesis_figure;
    for dataset exemplars, exemplars (bounded top-k per channel over many photos; ray_engine) -> exemplar_figure
`analysis` runs one batch through all of it; `run` (with `workers`, which draw in other processes),
`run_exemplars` and `cli` are the command line on top; `arguments` checks the API's as `cli` does flags.

TensorFlow, Keras and Matplotlib are imported only when a step needs them, so
`--help`, `--version` and argument errors answer at once.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from _deepviz import __version__
from _deepviz.analysis import (Analysis, PhotoResult, analyse_batch, build_pipeline, check_analysis, device_reduction,
                               forward_batch)
from _deepviz.arguments import (channel_tuple, check_figure_options, check_model, check_one_layer, layer_tuple,
                                max_maps_unless_channels, photo_paths)
from _deepviz.cli import DEFAULT_BATCH_SIZE, build_parser
from _deepviz.defaults import UnsaidInt, UnsaidStr, said
from _deepviz.errors import DeepvizError, UsageError
from _deepviz.exemplars import (DEFAULT_ENGINE, DEFAULT_PER_CHANNEL, DEFAULT_RANK, Exemplar, ExemplarPlan,
                               each_photo_once, find_exemplars)
from _deepviz.explain import grad_cam
from _deepviz.figure import (DEFAULT_CMAP, DEFAULT_DPI, FigureStyle, check_colormap, check_dpi, draw_figure,
                             photo_title)
from _deepviz.forward import OUTPUT_KEY, class_keys, top_classes, top_predictions
from _deepviz.images import as_photo, as_seen, expand_inputs
from _deepviz.layers import layer_paths
from _deepviz.models import (DEFAULT_MODEL, DEFAULT_WEIGHTS, MODELS, NetworkChoice, build_network,
                             check_choice, network_from_model)
from _deepviz.mosaic import NORMALISATIONS
from _deepviz.output import check_figure_format, save_figure
from _deepviz.run import run_command, run_guarded
from _deepviz.stats import DEFAULT_MAX_MAPS, DEFAULT_TOP
from _deepviz.synthesis import DEFAULT_SEED, DEFAULT_STEPS, layer_patterns, synthesis_settings, synthesize_patterns
from _deepviz.synthesis_figure import draw_synthesis_figure

WEIGHTS_UNSAID, MAX_MAPS_UNSAID = UnsaidStr(DEFAULT_WEIGHTS), UnsaidInt(DEFAULT_MAX_MAPS)  # shown as their values
STEPS_UNSAID, SEED_UNSAID = UnsaidInt(DEFAULT_STEPS), UnsaidInt(DEFAULT_SEED)

__all__ = ["Visualizer", "Exemplar", "DeepvizError", "UsageError", "main", "MODELS", "__version__"]


class Visualizer:
    """A network to look into, built once; every method takes a photo and returns plain values.

    `model`: a built-in name (see `deepviz --list-models`), a path to a saved Keras model
    (.keras, .h5) or a keras.Model in memory (functional, Sequential built with an input
    shape, or nesting another model). `weights` ("imagenet", "none" or None as Keras writes it,
    or a weights file) applies to built-in names only. `preprocess` names how pixels are scaled ("inception",
    "caffe", "torch", "unit", "none"; default: a built-in model's own, or that of the built-in
    architecture a model is built on, "none" for a model that scales its own pixels, else "inception").
    `labels`: class names of the user's model's output, a file (one per line) or a list; where
    the output is logits (no activation at its end), predictions are their softmax. A model that
    takes greyscale images (batch, height, width, 1) is given each photo in grey.

    An `image` is a path, a PIL.Image.Image or a uint8 array (H, W, 3), (H, W, 4) (RGBA), (H, W, 1) or (H, W).
    Bad arguments raise UsageError (a ValueError); runtime failures raise DeepvizError.
    """

    def __init__(self, model=DEFAULT_MODEL, weights: str | Path | None = WEIGHTS_UNSAID, preprocess: str | None = None,
                 labels: str | Sequence[str] | None = None):
        weights_given = said(weights)
        weights = "none" if weights is None else str(weights)  # None: Keras's own word for random weights
        if labels is not None:
            labels = str(labels) if isinstance(labels, (str, Path)) else tuple(labels)
        check_model(model)
        if isinstance(model, (str, Path)):
            self.choice = NetworkChoice(str(model), weights, preprocess, labels)  # what Ray workers build again
            check_choice(self.choice, weights_given=weights_given)
            self.network = build_network(self.choice)
        else:
            if weights_given:
                raise UsageError(f"weights {weights!r} applies to the built-in models; the keras.Model "
                                 f"{model.name!r} carries its own weights: leave weights out")
            self.choice = None
            self.network = network_from_model(model, model.name, f"model {model.name!r}", preprocess, labels)
        self._pipelines = {}  # (layer names, Grad-CAM layer, reduction) -> Pipeline, built once each

    # --- What the network has ---------------------------------------------------------
    def layers(self) -> list[str]:
        """Every layer path, as --list-layers names them ("outer/inner" inside nested models)."""
        return list(layer_paths(self.network.model))

    @property
    def default_layers(self) -> list[str]:
        """The layers drawn when none are named: a spread from early to late."""
        return list(self.network.default_layers)

    # --- One call, one plain value ----------------------------------------------------
    def maps(self, image, layers: str | Sequence[str] | None = None):
        """{layer path: (H, W, C) maps, or (C,) for a vector layer}; a list of those for a list of images.

        `layers`: one name or a list of names (default: the default layers).
        """
        pipeline = self.prepare(Analysis(layers=self._layer_names(layers), max_maps=None, keep_arrays=True))
        found = [{name: np.array(outputs[name]) for name in pipeline.layer_names}
                 for outputs in self._outputs_per_photo(pipeline, image)]
        return found if isinstance(image, list) else found[0]

    def predict(self, image, top: int = DEFAULT_TOP):
        """[(class name, probability)] of the `top` classes, most probable first; [] without a class vector."""
        pipeline = self.prepare(Analysis(layers=(), top=top))  # checks `top` too
        if self.network.class_names is None:
            return [] if not isinstance(image, list) else [[] for _ in image]
        found = [top_predictions(outputs[OUTPUT_KEY], self.network.class_names, top)
                 for outputs in self._outputs_per_photo(pipeline, image)]
        return found if isinstance(image, list) else found[0]

    def grad_cam(self, image, classes: Sequence[str | int] | None = None, layer: str | None = None,
                 top: int = DEFAULT_TOP) -> dict[str, np.ndarray]:
        """{class name: heatmap in [0, 1] at `layer`'s resolution}, for the `top` classes or those named.

        A name two classes share is keyed with its index: "crane_134" (the bird), "crane_517".
        """
        pipeline = self.prepare(Analysis(layers=(), top=top, cam=True, cam_layer=layer))
        outputs = self._forward(pipeline, [as_photo(image)])
        if isinstance(classes, (str, int, np.integer)):  # one class, as one layer may be named without a list
            classes = [classes]
        indices = (top_classes(outputs[OUTPUT_KEY][0], top) if classes is None
                   else [self._class_index(c) for c in classes])
        heatmaps = grad_cam(pipeline.cam_head, outputs[pipeline.cam_layer][0], indices)
        return dict(zip(class_keys(self.network.class_names, indices), heatmaps))

    def figure(self, image, layers: str | Sequence[str] | None = None, *, max_maps: int | None = MAX_MAPS_UNSAID,
               rank: str = "mean", norm: str = "channel", cmap: str = DEFAULT_CMAP,
               channels: Sequence[int] | None = None, summary: str | None = None, cam: bool = False,
               cam_layer: str | None = None, top: int = DEFAULT_TOP, dpi: int = DEFAULT_DPI,
               synthesize: bool = False, steps: int = STEPS_UNSAID, size: int | None = None,
               seed: int = SEED_UNSAID):
        """The command line's figure of one photo, as a matplotlib Figure (pyplot's state untouched).

        `synthesize`: per layer, pairs of each drawn channel's map on the photo and the pattern
        optimised to excite it (see `synthesize`; pass max_maps=8 or a few `channels`: each takes time).
        """
        if norm not in NORMALISATIONS:
            raise UsageError(f"norm: expected one of {', '.join(NORMALISATIONS)}, received {norm!r}")
        check_colormap(cmap)
        check_dpi(dpi)
        check_figure_options(cam, cam_layer, summary, synthesize, steps, size, seed)
        max_maps = max_maps_unless_channels(max_maps, channels)
        analysis = Analysis(layers=self._layer_names(layers), top=top, max_maps=max_maps, rank=rank,
                            channels=channel_tuple(channels), summary=summary, cam=cam, cam_layer=cam_layer)
        photo = as_photo(image)
        result = self.analyse([photo], analysis)[0]
        name = Path(image).name if isinstance(image, (str, Path)) else "image"
        pipeline = self.prepare(analysis)
        style = FigureStyle(photo_title(name, photo, self.network, result.predictions, dpi), norm, cmap, dpi,
                            pipeline.cam_layer or "", pipeline.cam_scores)
        if synthesize:
            chosen = [(layer.name, list(layer.channels)) for layer in result.layers]
            patterns = layer_patterns(self.network, chosen, synthesis_settings(self.network, steps, size, seed))
            return draw_synthesis_figure(as_seen(photo, self.network), style.photo_title, chosen, patterns,
                                         {layer.name: layer for layer in result.layers}, cmap)
        return draw_figure(as_seen(photo, self.network), result.layers, style, result.cams)

    def synthesize(self, layer: str, channels: Sequence[int], steps: int = DEFAULT_STEPS, size: int | None = None,
                   seed: int = DEFAULT_SEED) -> dict[int, np.ndarray]:
        """{channel: (size, size, 3) uint8 RGB image} optimised to excite each channel of `layer` (its mean).

        Feature visualisation as in Lucid (decorrelated Fourier image, random transforms, Adam,
        each channel before its ReLU); 16 channels a batch at 224 px; cached under $DEEPVIZ_CACHE.
        `size` None: 224, or the model's input if smaller. The same seed gives the same images.
        """
        settings = synthesis_settings(self.network, steps, size, seed)
        patterns = synthesize_patterns(self.network, layer, [int(c) for c in channels], settings)
        return {channel: pattern.image for channel, pattern in patterns.items()}

    def save(self, image, path, **options) -> Path:
        """Draw `figure(image, **options)` and write it to `path` atomically (format from its suffix)."""
        path = Path(path)
        check_figure_format(path, f"path {path}")
        if isinstance(image, (str, Path)) and path.resolve() == Path(image).resolve():
            raise UsageError(f"path {path} is the image itself, which the figure would replace; choose another path")
        figure = self.figure(image, **options)
        try:
            save_figure(figure, path, options.get("dpi", DEFAULT_DPI))
        except OSError as error:
            raise DeepvizError(f"could not write the figure {path}: {error.strerror or error}") from None
        return path

    def exemplars(self, images, layer: str, channels: Sequence[int] | None = None,
                  per_channel: int = DEFAULT_PER_CHANNEL, rank: str = DEFAULT_RANK, engine: str = DEFAULT_ENGINE, *,
                  max_maps: int | None = MAX_MAPS_UNSAID, ray_address: str | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE) -> dict[int, list[Exemplar]]:
        """{channel: the `per_channel` photos that excite it most, best first}, streaming `images` once.

        `images`: photo paths and directories (a path or a list; a directory's hidden files and the
        figures deepviz drew are left out; a photo named again is searched once). Without `channels`, the
        `max_maps` channels with the highest mean over the whole set, highest first. `rank`:
        "max" (the strongest position) or "mean". `engine` "ray" runs Ray Data workers, on a
        local Ray or the cluster at `ray_address` ("auto": the running one). Unreadable photos
        are skipped with a warning that lists them.
        """
        check_one_layer(layer)
        max_maps = max_maps_unless_channels(max_maps, channels)
        plan = ExemplarPlan((layer,), channel_tuple(channels), per_channel, rank, max_maps)
        paths = each_photo_once(expand_inputs(photo_paths(images), False))
        result = find_exemplars(self.network, self.choice, plan, paths, engine, batch_size, ray_address)
        if result.failed:
            skipped = ", ".join(str(path) for path, _ in result.failed)
            warnings.warn(f"{len(result.failed)} of {len(paths)} photos unreadable, skipped: {skipped}", stacklevel=2)
        return result.exemplars.get(layer, {})

    # --- The batched step the command line runs ---------------------------------------
    def prepare(self, analysis: Analysis):
        """Check an Analysis's layers and options and build its models, once per set of layers and reduction.

        The layers drawn are reduced on the model's device, so the channels drawn (max_maps,
        rank, channels) are part of the feature model; full maps (maps(), --save-arrays) are another.
        """
        layer_names, cam_layer = check_analysis(self.network, analysis)
        reduction = device_reduction(analysis)
        key = (tuple(layer_names), cam_layer, reduction)
        if key not in self._pipelines:
            self._pipelines[key] = build_pipeline(self.network, layer_names, cam_layer, reduction)
        return self._pipelines[key]

    def analyse(self, photos: Sequence, analysis: Analysis, batch_size: int | None = None) -> list[PhotoResult]:
        """Each photo (RGB PIL images) reduced to what is printed and drawn, in one forward pass."""
        return analyse_batch(self.network, self.prepare(analysis), photos, analysis, batch_size or len(photos))

    def _forward(self, pipeline, photos) -> dict[str, np.ndarray]:
        return forward_batch(self.network, pipeline.feature_model, photos, len(photos))

    def _outputs_per_photo(self, pipeline, image) -> list[dict[str, np.ndarray]]:
        """Each image's {output name: its array}, the images (one, or a list) run in batches."""
        photos = self._photos(image)
        found = []
        for start in range(0, len(photos), DEFAULT_BATCH_SIZE):
            batch = photos[start:start + DEFAULT_BATCH_SIZE]
            outputs = self._forward(pipeline, batch)
            found += [{name: values[i] for name, values in outputs.items()} for i in range(len(batch))]
        return found

    def _layer_names(self, layers: str | Sequence[str] | None) -> tuple[str, ...]:
        """The layers asked for: one name, a list of names, or None for the default layers."""
        return tuple(self.default_layers) if layers is None else layer_tuple(layers)

    @staticmethod
    def _photos(image) -> list:
        return [as_photo(item) for item in image] if isinstance(image, list) else [as_photo(image)]

    def _class_index(self, name_or_index: str | int) -> int:
        names = self.network.class_names
        if names is None:
            raise UsageError(f"classes: {self.network.no_predictions_reason}")
        if isinstance(name_or_index, (int, np.integer)) and 0 <= name_or_index < len(names):
            return int(name_or_index)
        keys = class_keys(names, range(len(names)))  # a name, or "crane_134" where two classes share it
        if name_or_index in keys:
            return keys.index(name_or_index)
        sharing = [i for i, name in enumerate(names) if name == name_or_index]
        if sharing:
            raise UsageError(f"classes: {len(sharing)} classes are named {name_or_index!r} (indices "
                             f"{', '.join(map(str, sharing))}); name it by its index, or as {name_or_index}_INDEX")
        raise UsageError(f"classes: {name_or_index!r} is not a class of {self.network.label}; expected a name "
                         f"such as {names[0]!r} or an index from 0 to {len(names) - 1}")

    def __repr__(self) -> str:
        return f"Visualizer({self.network.label}, weights: {self.network.weights_label})"


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: `deepviz [IMAGE ...] [options]`; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, usage errors
        return int(exit.code or 0)
    args.debug = args.debug or os.environ.get("DEEPVIZ_DEBUG", "") not in ("", "0")
    return run_guarded(lambda: run_command(args, Visualizer), args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
