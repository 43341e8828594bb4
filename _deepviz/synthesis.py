"""Feature visualisation by optimisation: for each channel, an image that excites it as much as possible.

What the literature found works (Olah, Mordvintsev and Schubert, "Feature Visualization",
Distill 2017; the Lucid library), in the order a step runs:
    Fourier coefficients scaled by 1/frequency -> an image (few high frequencies)
    -> colours decorrelated with ImageNet's colour-correlation matrix, then a sigmoid into [0, 1]
    -> a random jitter, scale and rotation (transformation robustness; grey beyond the edges)
    -> the network's own preprocessing -> the layer, before its ReLU -> the channel's mean,
       less the highest mean of any other channel of the layer (after their ReLUs)
and Adam follows the gradient up. The second term is deepviz's: with the channel's mean alone
(Lucid's objective), a pattern often excites a correlated neighbour even more than its own channel
(tried on InceptionV3's mixed3: 3 of 6 channels ranked third on their own patterns).

The channels of a layer are optimised together, one per image of a batch, in batches of at
most PATTERN_PIXELS_PER_BATCH pixels so that memory stays bounded however many are asked
for; each channel's start and transforms come from its own seeded generator, so a channel's
pattern does not depend on which other channels ran beside it.

Channels are optimised before their ReLU: on a near-grey start most post-ReLU maps are zero
everywhere, so no gradient reaches them and they would stay grey.

Patterns are cached under $DEEPVIZ_CACHE (default: $XDG_CACHE_HOME/deepviz, ~/.cache/deepviz),
keyed by the model's weights, the layer, the channel and the settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import weakref
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .backend import import_keras, input_gradient
from .errors import DeepvizError, UsageError
from .images import LUMA_WEIGHTS, network_input
from .layers import check_layer_names, is_whole, layer_paths, output_shape
from .output import write_atomically

DEFAULT_STEPS = 256
DEFAULT_SIZE = 224  # or the model's input, if smaller
DEFAULT_SEED = 0
DEFAULT_MAX_MAPS = 8  # channels drawn per layer with --synthesize
STEPS_RANGE = (1, 100_000)
SIZE_RANGE = (16, 1024)  # InceptionV3 on one 1024-pixel pattern holds 2.8 GB; memory grows with the square
# Patterns optimised in one batch, in pixels: 16 at 224 px, one at 1024 px. A whole run on InceptionV3's mixed3
# at 224 px peaked at 1.11 GB with 2 channels a batch, 1.44 GB with 8 and 1.59 GB with 16.
PATTERN_PIXELS_PER_BATCH = 16 * 224 * 224
SEED_RANGE = (0, 2**32 - 1)
LEARNING_RATE = 0.05  # Adam's, as in Lucid
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
SPECTRUM_INIT_SD = 0.01
SPECTRUM_DECAY_POWER = 1.0  # amplitude ~ 1 / frequency: the spectrum of natural images
SPECTRUM_MAGIC = 4.0  # Lucid's divisor of the image made from the spectrum
# Square root of ImageNet's colour correlation matrix (Lucid, param/color.py), columns normalised.
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02],
                                       [0.27, 0.00, -0.05],
                                       [0.27, -0.09, 0.03]], dtype=np.float32)
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0).max()
# Lucid's standard transforms: pad 12 with grey, jitter 8, scale 0.9-1.1, rotate -10..10 degrees, jitter 4.
# Here one affine map per image does all of them; grey (0.5) fills what comes from beyond the edges.
JITTER_PIXELS = 6  # the two jitters' combined shift, either way
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
ANGLES_DEGREES = tuple(range(-10, 11)) + (0,) * 5
GREY = 0.5
# The objective: the channel's mean before its ReLU, less RIVAL_WEIGHT times the highest mean of any other
# channel of the layer (after the ReLU), so that the pattern excites this channel rather than its neighbours.
RIVAL_WEIGHT = 1.0
RIVAL_MASK = 1e4  # takes the target out of the rivals' max
ALGORITHM_VERSION = 2  # bump when a change gives other patterns for the same settings: old cache entries go
CACHE_ENVIRONMENT_VARIABLE = "DEEPVIZ_CACHE"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a pattern depends on besides the model, the layer and the channel."""

    steps: int = DEFAULT_STEPS
    size: int = DEFAULT_SIZE
    seed: int = DEFAULT_SEED
    learning_rate: float = LEARNING_RATE


@dataclasses.dataclass
class Pattern:
    """One channel's synthesised image and how strongly it drives the channel."""

    image: np.ndarray  # (size, size, 3) uint8 RGB
    activation: float  # the channel's mean activation on the image, fed as it is (no transforms)


def synthesis_settings(network, steps: int = DEFAULT_STEPS, size: int | None = None,
                       seed: int = DEFAULT_SEED) -> Settings:
    """Checked settings; `size` None: 224, or the model's input if that is smaller."""
    size = size if size is not None else min(DEFAULT_SIZE, *network.input_size)
    for name, value, (low, high) in (("steps", steps, STEPS_RANGE), ("size", size, SIZE_RANGE),
                                     ("seed", seed, SEED_RANGE)):
        if not is_whole(value) or not low <= value <= high:
            raise UsageError(f"{name}: expected a whole number from {low} to {high}, received {value!r}")
    return Settings(int(steps), int(size), int(seed))


# --- The image, parametrised in a decorrelated space ---------------------------------------
def spectrum_shape(size: int) -> tuple[int, int, int, int]:
    """(real and imaginary, height, frequencies along the width, colours) of one image's spectrum."""
    return (2, size, size // 2 + 1, 3)


def inverse_fourier_bases(size: int) -> tuple[np.ndarray, ...]:
    """Real matrices that turn a frequency-scaled half spectrum into an image: irfft2 as matmuls.

    Written out as matrix products, the inverse transform runs on every backend's ops and
    differentiates like any other layer. The scale is Lucid's: 1 / max(frequency, 1 / size),
    times sqrt(pixels) (a unitary transform), over irfft2's 1 / pixels.
    """
    width_frequencies = size // 2 + 1
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[:width_frequencies]
    frequencies = np.sqrt(fx * fx + fy * fy)  # (size, size // 2 + 1)
    scale = 1.0 / np.maximum(frequencies, 1.0 / size) ** SPECTRUM_DECAY_POWER / size  # sqrt(n) / n, n = size**2
    pixels, k = np.arange(size), np.arange(width_frequencies)
    doubled = np.where((k == 0) | (2 * k == size), 1.0, 2.0)  # the other half of the spectrum, by symmetry
    width_angles = 2 * np.pi * np.outer(k, pixels) / size  # (frequencies, width)
    height_angles = 2 * np.pi * np.outer(pixels, pixels) / size  # (height, frequencies along height)
    bases = (scale, doubled[:, None] * np.cos(width_angles), doubled[:, None] * np.sin(width_angles),
             np.cos(height_angles), np.sin(height_angles))
    return tuple(b.astype(np.float32) for b in bases)


def image_from_spectrum(spectrum, size: int):
    """(N, 2, size, size // 2 + 1, 3) spectra -> (N, size, size, 3) images in [0, 1], with keras.ops."""
    ops = import_keras().ops
    scale, width_cos, width_sin, height_cos, height_sin = inverse_fourier_bases(size)
    real = spectrum[:, 0] * scale[None, :, :, None]  # (N, size, frequencies, 3)
    imaginary = spectrum[:, 1] * scale[None, :, :, None]
    rows_real = ops.einsum("nhkc,kw->nhwc", real, width_cos) - ops.einsum("nhkc,kw->nhwc", imaginary, width_sin)
    rows_imaginary = ops.einsum("nhkc,kw->nhwc", real, width_sin) + ops.einsum("nhkc,kw->nhwc", imaginary, width_cos)
    image = ops.einsum("yh,nhwc->nywc", height_cos, rows_real) - ops.einsum("yh,nhwc->nywc", height_sin, rows_imaginary)
    decorrelated = ops.matmul(image / SPECTRUM_MAGIC, COLOR_CORRELATION.T)  # (N, size, size, 3)
    return ops.sigmoid(decorrelated)


# --- Random transforms, drawn in NumPy, applied with keras.ops ------------------------------
def random_transforms(generator: np.random.Generator, size: int) -> np.ndarray:
    """One affine map (keras.ops.image.affine_transform's 8 numbers) of a random jitter, scale and rotation.

    It maps an output pixel (x, y) to the input point centre + R(angle) / scale (x, y - centre) + shift.
    """
    angle = np.deg2rad(generator.choice(ANGLES_DEGREES))
    scale = generator.choice(SCALES)
    shift = generator.integers(-JITTER_PIXELS, JITTER_PIXELS + 1, size=2)
    linear = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
    centre = np.full(2, (size - 1) / 2)
    offset = centre - linear @ centre + shift
    return np.array([linear[0, 0], linear[0, 1], offset[0], linear[1, 0], linear[1, 1], offset[1], 0, 0],
                    dtype=np.float32)


def preprocessing_as_linear_map(network) -> tuple[np.ndarray, np.ndarray]:
    """(M (3, C), b (C,)) with the network's input == pixels @ M + b, found by probing its preprocessing.

    Every preprocessing deepviz knows (scaling, mean and std, RGB to BGR) is such a map; written
    so, it runs inside the differentiated model on every backend.
    """
    probes = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [17, 200, 93]], np.float32)
    scaled = np.asarray(network_input(probes[None, None], network), np.float64)[0, 0]
    offset = scaled[0]
    matrix = (scaled[1:4] - offset) / 255.0
    if not np.allclose(probes[4] @ matrix + offset, scaled[4], atol=1e-3):
        raise DeepvizError(f"--synthesize: the preprocessing of {network.label} is not a linear map of the "
                           "pixels; pass --preprocess with one of deepviz's own")
    return matrix.astype(np.float32), offset.astype(np.float32)


# --- The layer, before its ReLU -----------------------------------------------------------
def layer_before_relu(model, path: str):
    """(the values of layer `path` before its ReLU, the layer's output), as tensors of `model`'s graph.

    A ReLU layer gives its input; a layer with activation="relu" (Conv2D, Dense) a twin of it
    without the activation, sharing its weights; a Concatenate (InceptionV3's mixedN) the
    concatenation of its branches' values before their ReLUs; a max pooling the same pooling of
    its input's (max and ReLU commute). Any other layer, or one inside a nested model, gives its
    output as it is.
    """
    keras = import_keras()
    if "/" in path:
        from .forward import feature_model_for

        feature_model = feature_model_for(model, [path])
        return feature_model.inputs[0], feature_model.output[path], feature_model.output[path]
    producers = {id(layer.output): layer for layer in model.layers if single_output(layer)}
    layer = model.get_layer(path)
    # inputs[0], not input: Keras 3.10 gives a saved model's one input as a list of it
    return model.inputs[0], tensor_before_relu(keras, layer, producers), layer.output


def single_output(layer) -> bool:
    try:
        return not isinstance(layer.output, (list, tuple))
    except (AttributeError, ValueError):
        return False


def tensor_before_relu(keras, layer, producers: dict):
    if is_relu(keras, layer):
        return layer.input
    if getattr(layer, "activation", None) is keras.activations.relu and not isinstance(layer, keras.layers.Activation):
        twin = type(layer).from_config({**layer.get_config(), "activation": "linear", "name": f"{layer.name}_pre_relu"})
        values = twin(layer.input)
        twin.set_weights(layer.get_weights())
        return values
    if isinstance(layer, (keras.layers.Concatenate, keras.layers.MaxPooling2D)) and single_input_or_list(layer):
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        before = [tensor_before_relu(keras, producers[id(t)], producers) if id(t) in producers else t for t in inputs]
        if all(b is t for b, t in zip(before, inputs)):
            return layer.output
        twin = type(layer).from_config({**layer.get_config(), "name": f"{layer.name}_pre_relu"})
        return twin(before if isinstance(layer, keras.layers.Concatenate) else before[0])
    return layer.output


def is_relu(keras, layer) -> bool:
    if isinstance(layer, keras.layers.Activation):
        return layer.activation is keras.activations.relu
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return config.get("max_value") is None and not config.get("negative_slope") and not config.get("threshold")
    return False


def single_input_or_list(layer) -> bool:
    try:
        layer.input
    except (AttributeError, ValueError):  # a layer called in several places
        return False
    return True


# --- The models the loop differentiates and measures ----------------------------------------
@dataclasses.dataclass
class SynthesisModels:
    objective: object  # keras.Model: [spectra, transforms, one-hot targets] -> (N,) what Adam maximises
    render: object  # keras.Model: spectra -> (N, size, size, 3) images in [0, 1]
    measure: object  # keras.Model: preprocessed (N, size, size, 3) -> (N, channels) mean activation after the ReLU


def build_synthesis_models(network, layer: str, size: int) -> SynthesisModels:
    """The layer's values before and after its ReLU, re-traced at `size`, and the parametrisation in front."""
    keras = import_keras()
    source_input, before, after = layer_before_relu(network.model, layer)
    truncated = keras.Model(source_input, [before, after])
    channels = network.input_channels  # what the network takes: the preprocessed RGB pattern, or its grey
    if tuple(source_input.shape[1:3]) != (size, size):
        try:
            truncated = keras.models.clone_model(truncated, input_tensors=keras.Input((size, size, channels)),
                                                 clone_function=lambda same: same)
        except ValueError:
            default = synthesis_settings(network).size
            raise UsageError(f"--size {size}: {network.label} cannot reach {layer} from {size}x{size} images (too "
                             f"small for the layers on the way); pass a larger --size (the default, {default}, "
                             "reaches every layer)") from None
    matrix, offset = preprocessing_as_linear_map(network)

    spectra = keras.Input(spectrum_shape(size))
    transforms = keras.Input((8,))
    targets = keras.Input((truncated.output[0].shape[-1],))  # one-hot: each image's channel
    images = image_from_spectrum(spectra, size)  # (N, size, size, 3): RGB, whatever the network takes
    moved = keras.ops.image.affine_transform(images, transforms, interpolation="bilinear", fill_mode="constant",
                                             fill_value=GREY)
    values, activations = truncated(keras.ops.matmul(moved * 255.0, matrix) + offset)  # (N, h, w, channels) each
    target = keras.ops.sum(keras.ops.mean(values, axis=(1, 2)) * targets, axis=1)  # (N,): before the ReLU
    rival = keras.ops.max(keras.ops.mean(activations, axis=(1, 2)) - RIVAL_MASK * targets, axis=1)  # (N,)
    objective = keras.Model([spectra, transforms, targets], target - RIVAL_WEIGHT * rival)
    render = keras.Model(spectra, images)
    pixels = keras.Input((size, size, channels))  # preprocessed
    _, activations = truncated(pixels)
    measure = keras.Model(pixels, keras.ops.mean(activations, axis=(1, 2)))
    return SynthesisModels(objective, render, measure)


def check_synthesis_layer(network, layer: str) -> int:
    """The number of channels of a layer with spatial maps, or UsageError."""
    check_layer_names(network, [layer])
    shape = output_shape(layer_paths(network.model)[layer])
    if len(shape) != 3:
        raise UsageError(f"--synthesize {layer}: expected a layer with spatial maps (height, width, channels), "
                         f"found shape {shape}; choose a convolutional layer such as {network.default_layers[-1]}")
    return shape[-1]


# --- The loop -----------------------------------------------------------------------------
def optimise_patterns(network, models: SynthesisModels, channels: Sequence[int], settings: Settings,
                      advance: Callable[[int], None] | None = None) -> dict[int, Pattern]:
    """Adam on the spectra of one image per channel, `channels` in one batch; `advance(1)` after each step."""
    size = settings.size
    generators = [np.random.default_rng([settings.seed, channel]) for channel in channels]
    spectra = np.stack([g.normal(0, SPECTRUM_INIT_SD, spectrum_shape(size)) for g in generators]).astype(np.float32)
    channel_count = models.measure.output.shape[-1]
    targets = np.eye(channel_count, dtype=np.float32)[list(channels)]  # (N, channels): each image's own channel
    ones = np.ones(len(channels), np.float32)
    first_moment, second_moment = np.zeros_like(spectra), np.zeros_like(spectra)
    beta1, beta2 = ADAM_BETAS
    for step in range(1, settings.steps + 1):
        transforms = np.stack([random_transforms(g, size) for g in generators])  # (N, 8)
        gradient = input_gradient(models.objective, spectra, ones, (transforms, targets))
        first_moment = beta1 * first_moment + (1 - beta1) * gradient
        second_moment = beta2 * second_moment + (1 - beta2) * gradient ** 2
        corrected = first_moment / (1 - beta1 ** step)
        spectra += settings.learning_rate * corrected / (np.sqrt(second_moment / (1 - beta2 ** step)) + ADAM_EPSILON)
        if advance:
            advance(1)
    keras = import_keras()
    images = keras.ops.convert_to_numpy(models.render(spectra, training=False)) * 255  # (N, size, size, 3)
    if network.input_channels == 1:  # the network sees the pattern's grey only: shown so
        images = np.repeat(images @ LUMA_WEIGHTS[:, None], 3, axis=-1)
    patterns = np.clip(np.round(images), 0, 255).astype(np.uint8)
    means = channel_means(network, models, patterns)  # (N, channels)
    return {channel: Pattern(pattern, float(row[channel])) for channel, pattern, row in zip(channels, patterns, means)}


def channel_means(network, models: SynthesisModels, patterns: np.ndarray) -> np.ndarray:
    """(N, channels): each channel's mean activation (after the ReLU) on uint8 images fed as they are."""
    keras = import_keras()
    matrix, offset = preprocessing_as_linear_map(network)
    pixels = (patterns.astype(np.float32) @ matrix + offset).astype(np.float32)
    return keras.ops.convert_to_numpy(models.measure(pixels, training=False))


# --- The cache ----------------------------------------------------------------------------
def cache_directory() -> Path:
    """$DEEPVIZ_CACHE, or deepviz's folder in the XDG cache directory ($XDG_CACHE_HOME, ~/.cache)."""
    if os.environ.get(CACHE_ENVIRONMENT_VARIABLE):
        return Path(os.environ[CACHE_ENVIRONMENT_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "deepviz"


_model_digests = weakref.WeakKeyDictionary()  # keras.Model -> digest of its weights, computed once


def model_identity(network) -> str:
    """A digest of the model's weights (every variable, in order) and its preprocessing.

    The same weights give the same identity whether they came from ImageNet, a file or memory;
    retrained or other weights give another.
    """
    model = network.model
    if model not in _model_digests:
        digest = hashlib.sha256(network.label.encode())
        for variable in model.weights:
            values = np.ascontiguousarray(import_keras().ops.convert_to_numpy(variable))
            digest.update(f"{variable.path}{values.shape}{values.dtype}".encode())
            digest.update(values.tobytes())
        _model_digests[model] = digest.hexdigest()
    matrix, offset = preprocessing_as_linear_map(network)
    return hashlib.sha256(_model_digests[model].encode() + matrix.tobytes() + offset.tobytes()).hexdigest()


def cache_path(identity: str, layer: str, channel: int, settings: Settings) -> Path:
    key = json.dumps({"model": identity, "layer": layer, "channel": int(channel), "version": ALGORITHM_VERSION,
                      **dataclasses.asdict(settings)}, sort_keys=True)
    return cache_directory() / "synthesis" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"


def read_cached(path: Path) -> Pattern | None:
    try:
        with np.load(path) as stored:
            return Pattern(stored["image"], float(stored["activation"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # absent, or a broken file: computed again
        return None


def write_cached(path: Path, pattern: Pattern) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, image=pattern.image, activation=np.float32(pattern.activation))
    try:
        write_atomically(path, lambda stream: stream.write(buffer.getvalue()))
    except OSError:  # a read-only or full cache costs time, not the run
        pass


def cached_patterns(network, layer: str, channels: Sequence[int]) -> dict[int, np.ndarray]:
    """{channel: uint8 RGB pattern} for those channels already cached under the default settings; computes nothing."""
    settings = synthesis_settings(network)
    identity = model_identity(network)
    found = {int(c): read_cached(cache_path(identity, layer, c, settings)) for c in channels}
    return {channel: pattern.image for channel, pattern in found.items() if pattern is not None}


# --- The front: cached patterns first, the rest optimised in batches --------------------------
def synthesize_patterns(network, layer: str, channels: Sequence[int], settings: Settings,
                        progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict[int, Pattern]:
    """{channel: Pattern} for `channels` of `layer`, from the cache where there, optimised otherwise.

    `progress(layer, steps)`, called only when something is to be optimised, returns the
    function to call with the number of steps done.
    """
    channel_count = check_synthesis_layer(network, layer)
    bad = [c for c in channels if not 0 <= c < channel_count]
    if bad:
        raise UsageError(f"channels {bad[0]}: layer {layer} has {channel_count} channels (0 to {channel_count - 1})")
    identity = model_identity(network)
    paths = {int(c): cache_path(identity, layer, c, settings) for c in dict.fromkeys(channels)}
    patterns = {c: read_cached(path) for c, path in paths.items()}
    missing = [c for c, pattern in patterns.items() if pattern is None]
    if missing:
        models = build_synthesis_models(network, layer, settings.size)
        batches = channel_batches(missing, settings.size)
        advance = progress(layer, settings.steps * len(batches)) if progress else None
        for batch in batches:
            for channel, pattern in optimise_patterns(network, models, batch, settings, advance).items():
                patterns[channel] = pattern
                write_cached(paths[channel], pattern)
    return {int(c): patterns[int(c)] for c in channels}


def channel_batches(channels: Sequence[int], size: int) -> list[list[int]]:
    """The channels in batches of at most PATTERN_PIXELS_PER_BATCH pixels of patterns `size` pixels a side."""
    per_batch = max(1, PATTERN_PIXELS_PER_BATCH // (size * size))
    return [list(channels[start:start + per_batch]) for start in range(0, len(channels), per_batch)]


def layer_patterns(network, layers: Sequence[tuple[str, Sequence[int]]], settings: Settings,
                   progress: Callable[[str, int], Callable[[int], None]] | None = None
                   ) -> dict[str, dict[int, Pattern]]:
    """{layer: {channel: Pattern}} for [(layer, channels)], each layer's channels optimised in batches."""
    for layer, _ in layers:
        check_synthesis_layer(network, layer)  # every layer checked before the first is optimised
    return {layer: synthesize_patterns(network, layer, [int(c) for c in channels], settings, progress)
            for layer, channels in layers}


def pattern_arrays(patterns: dict[str, dict[int, Pattern]]) -> dict[str, np.ndarray]:
    """{"synth/<layer>/<channel>": uint8 pattern}, for --save-arrays."""
    return {f"synth/{layer}/{channel}": pattern.image
            for layer, by_channel in patterns.items() for channel, pattern in by_channel.items()}
