"""Feature visualisation by optimisation: the objective and its sign, pre-ReLU, the cache, the CLI and API.

A tiny model of InceptionV3's shape (a Concatenate of branches that each end in a ReLU)
keeps every test to a few seconds on any backend.
"""

import json
import re

import numpy as np
import pytest

import deepviz
from _deepviz import backend, models, synthesis, synthesis_figure

SIZE = 32
STEPS = 40


@pytest.fixture(scope="module")
def tiny_model():
    """conv (relu) -> [conv -> ReLU layer | conv with activation="relu"] -> Concatenate "mixed" (8 channels).

    Channel 2 has a bias of -0.1: zero everywhere on a grey image, so only its pre-ReLU value has a gradient there.
    """
    keras = backend.import_keras()
    keras.utils.set_random_seed(7)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    left = keras.layers.Conv2D(4, 3, padding="same", name="left_conv")(x)
    left = keras.layers.Activation("relu", name="left_relu")(left)
    right = keras.layers.Conv2D(4, 1, activation="relu", name="right_conv")(x)
    mixed = keras.layers.Concatenate(name="mixed")([left, right])
    pooled = keras.layers.GlobalAveragePooling2D()(mixed)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled), name="tiny")
    kernel, bias = model.get_layer("left_conv").get_weights()
    bias[2] = -0.1
    model.get_layer("left_conv").set_weights([kernel, bias])
    return model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPVIZ_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def network(tiny_model):
    return models.network_from_model(tiny_model, "tiny", "model 'tiny'")


def test_inverse_fourier_bases_are_irfft2(network):
    """The matmul form of the parametrisation is Lucid's irfft2(spectrum / frequency * sqrt(pixels))."""
    size = 10
    spectrum = np.random.default_rng(0).normal(size=(2, size, size // 2 + 1)).astype(np.float32)
    scale, width_cos, width_sin, height_cos, height_sin = synthesis.inverse_fourier_bases(size)
    real, imaginary = spectrum * scale
    rows_real, rows_imaginary = real @ width_cos - imaginary @ width_sin, real @ width_sin + imaginary @ width_cos
    ours = height_cos @ rows_real - height_sin @ rows_imaginary
    frequencies = np.sqrt(np.fft.fftfreq(size)[:size // 2 + 1] ** 2 + np.fft.fftfreq(size)[:, None] ** 2)
    lucid_scale = 1 / np.maximum(frequencies, 1 / size) * size  # sqrt(pixels) = size
    expected = np.fft.irfft2((spectrum[0] + 1j * spectrum[1]) * lucid_scale, s=(size, size))
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_each_pattern_excites_its_own_channel_most(network, cache):
    """Fails if the objective or its sign is wrong: each channel is driven up from a grey image, including
    the one that is zero on grey, and most channels rank first in the layer on their own pattern."""
    channels = list(range(8))
    settings = synthesis.Settings(steps=STEPS, size=SIZE, learning_rate=0.2)
    patterns = synthesis.synthesize_patterns(network, "mixed", channels, settings)
    models_ = synthesis.build_synthesis_models(network, "mixed", SIZE)
    means = synthesis.channel_means(network, models_, np.stack([patterns[c].image for c in channels]))  # (8, 8)
    grey = synthesis.channel_means(network, models_, np.full((1, SIZE, SIZE, 3), 128, np.uint8))[0]
    assert grey[2] == 0  # dead on grey: only the pre-ReLU objective moves it
    for row, channel in enumerate(channels):
        assert means[row, channel] > grey[channel]
        assert patterns[channel].activation == pytest.approx(means[row, channel], rel=1e-4)
    # The criterion: on its own pattern the channel ranks first in its layer. A tiny random
    # network's channels overlap and 40 steps are few, so two may miss; trained InceptionV3: README.
    assert sum(means[row].argmax() == channel for row, channel in enumerate(channels)) >= 6
    assert means[2, 2] > 0
    assert all(p.image.dtype == np.uint8 and p.image.shape == (SIZE, SIZE, 3) for p in patterns.values())


def test_the_objective_is_the_layer_before_its_relu(network):
    """The Concatenate's branches are read before their ReLUs (a ReLU layer's input; a conv with
    activation="relu" without it): negative values appear in both, never in the layer's own output."""
    keras = backend.import_keras()
    source_input, before, after = synthesis.layer_before_relu(network.model, "mixed")
    probe = keras.Model(source_input, [before, after])
    values, output = (keras.ops.convert_to_numpy(t) for t in probe(np.random.default_rng(1).normal(
        size=(2, SIZE, SIZE, 3)).astype(np.float32)))
    assert values[..., :4].min() < 0 and values[..., 4:].min() < 0 <= output.min()  # both branches
    np.testing.assert_allclose(np.maximum(values, 0), output, atol=1e-5)


def test_patterns_are_cached_and_reproducible(network, cache, monkeypatch):
    settings = synthesis.Settings(steps=3, size=SIZE, seed=5)
    first = synthesis.synthesize_patterns(network, "mixed", [1, 4], settings)
    assert len(list((cache / "synthesis").glob("*.npz"))) == 2

    def no_optimising(*args, **kwargs):
        raise AssertionError("optimised again despite the cache")

    monkeypatch.setattr(synthesis, "optimise_patterns", no_optimising)
    again = synthesis.synthesize_patterns(network, "mixed", [4, 1], settings)
    assert list(again) == [4, 1]
    np.testing.assert_array_equal(again[1].image, first[1].image)
    with pytest.raises(AssertionError, match="optimised again"):  # another seed is another pattern
        synthesis.synthesize_patterns(network, "mixed", [1], synthesis.Settings(steps=3, size=SIZE, seed=6))
    monkeypatch.undo()
    monkeypatch.setenv("DEEPVIZ_CACHE", str(cache.parent / "elsewhere"))
    fresh = synthesis.synthesize_patterns(network, "mixed", [1], settings)  # the same seed, computed again
    np.testing.assert_array_equal(fresh[1].image, first[1].image)
    for stored in (cache.parent / "elsewhere" / "synthesis").glob("*.npz"):  # cut short, as by a full disk
        stored.write_bytes(stored.read_bytes()[:100])
    mended = synthesis.synthesize_patterns(network, "mixed", [1], settings)  # a broken file: computed again
    np.testing.assert_array_equal(mended[1].image, first[1].image)


def test_many_channels_are_optimised_in_batches_of_bounded_size_with_the_same_patterns(network, cache, monkeypatch):
    settings = synthesis.Settings(steps=3, size=SIZE, seed=5)
    together = synthesis.synthesize_patterns(network, "mixed", [0, 1, 3, 4, 6], settings)
    monkeypatch.setenv("DEEPVIZ_CACHE", str(cache.parent / "batched"))
    monkeypatch.setattr(synthesis, "PATTERN_PIXELS_PER_BATCH", 2 * SIZE * SIZE + 1)  # two patterns a batch
    real_optimise = synthesis.optimise_patterns
    batches, totals = [], []

    def recorded(network, models, channels, settings, advance=None):
        batches.append(list(channels))
        return real_optimise(network, models, channels, settings, advance)

    def progress(layer, total):
        totals.append(total)
        return lambda steps: None

    monkeypatch.setattr(synthesis, "optimise_patterns", recorded)
    batched = synthesis.synthesize_patterns(network, "mixed", [0, 1, 3, 4, 6], settings, progress)
    assert batches == [[0, 1], [3, 4], [6]] and totals == [3 * 3]  # one bar over every batch's steps
    for channel, pattern in together.items():  # a channel's pattern does not depend on its batch
        np.testing.assert_array_equal(batched[channel].image, pattern.image)


@pytest.mark.parametrize("size, per_batch", [(224, 16), (299, 8), (512, 3), (1024, 1)])
def test_a_batch_of_patterns_holds_at_most_sixteen_of_224_pixels(size, per_batch):
    assert [len(batch) for batch in synthesis.channel_batches(list(range(20)), size)][0] == per_batch


def test_cached_patterns_returns_only_what_is_cached_under_default_settings(network, cache):
    assert synthesis.cached_patterns(network, "mixed", [0, 3]) == {}
    synthesis.synthesize_patterns(network, "mixed", [0], synthesis.synthesis_settings(network, steps=2))
    assert synthesis.cached_patterns(network, "mixed", [0, 3]) == {}  # other settings than the default
    # What synthesize_patterns stores under the default settings (256 steps: too slow to run here).
    defaults = synthesis.synthesis_settings(network)
    assert (defaults.steps, defaults.size, defaults.seed) == (256, SIZE, 0)  # the model's input is under 224
    stored = synthesis.Pattern(np.full((SIZE, SIZE, 3), 7, np.uint8), 1.5)
    synthesis.write_cached(synthesis.cache_path(synthesis.model_identity(network), "mixed", 3, defaults), stored)
    found = synthesis.cached_patterns(network, "mixed", [0, 3])
    assert list(found) == [3]
    np.testing.assert_array_equal(found[3], stored.image)


def test_visualizer_synthesize_and_errors(tiny_model, cache):
    viz = deepviz.Visualizer(tiny_model)
    images = viz.synthesize("mixed", [0, 5], steps=2, size=SIZE)
    assert list(images) == [0, 5] and images[5].shape == (SIZE, SIZE, 3) and images[5].dtype == np.uint8
    paired = viz.figure(np.full((40, 40, 3), 128, np.uint8), "mixed", channels=[0, 5], synthesize=True, steps=2,
                        size=SIZE)
    assert paired._repr_png_().startswith(b"\x89PNG")  # shown inline in Jupyter, as any figure of figure()
    with pytest.raises(deepviz.UsageError, match="layer mixed has 8 channels"):
        viz.synthesize("mixed", [8], steps=2)
    with pytest.raises(deepviz.UsageError, match="expected a layer with spatial maps"):
        viz.synthesize(viz.layers()[-1], [0], steps=2)
    with pytest.raises(deepviz.UsageError, match="steps: expected a whole number from 1 to 100000, received 0"):
        viz.synthesize("mixed", [0], steps=0)
    for option, value in (("size", 10_000), ("size", 64.0), ("seed", -1), ("steps", True)):  # 10,000: 200 GB or so
        with pytest.raises(deepviz.UsageError, match=rf"^{option}: expected a whole number from \d+ to \d+, "
                                                     rf"received {value!r}$"):
            viz.synthesize("mixed", [0], **{"steps": 2, option: value})
    keras = backend.import_keras()
    inputs = keras.Input((64, 64, 3))
    shrinking = keras.layers.Conv2D(4, 9, activation="relu", name="deep")(keras.layers.Conv2D(4, 9, strides=2)(inputs))
    with pytest.raises(deepviz.UsageError) as refused:  # 16 -> 4 -> nothing
        deepviz.Visualizer(keras.Model(inputs, shrinking, name="shrinking")).synthesize("deep", [0], steps=1, size=16)
    assert str(refused.value) == ("--size 16: shrinking cannot reach deep from 16x16 images (too small for the layers "
                                  "on the way); pass a larger --size (the default, 64, reaches every layer)")


def test_cli_draws_patterns_without_an_image(tiny_model, cache, tmp_path, run):
    saved = tmp_path / "tiny.keras"
    tiny_model.save(saved)
    out = tmp_path / "patterns.png"
    status, stdout, stderr = run("--model", saved, "--layers", "mixed", "--channels", "2,6", "--synthesize",
                                 "--steps", "3", "--save-arrays", "--json", "--out", out, "--quiet")
    assert status == 0, stderr
    assert "mixed channel 2: mean activation" in stdout and stderr == ""
    assert out.is_file()
    with np.load(out.with_suffix(".npz")) as arrays:
        assert sorted(arrays.files) == ["synth/mixed/2", "synth/mixed/6"]
        assert arrays["synth/mixed/6"].shape == (SIZE, SIZE, 3)
    synthesis_json = json.loads(out.with_suffix(".json").read_text())["synthesis"]
    assert (synthesis_json["steps"], synthesis_json["size"], synthesis_json["seed"]) == (3, SIZE, 0)
    printed = dict(re.findall(r"mixed channel (\d+): mean activation (\S+) on its pattern", stdout))
    assert {channel: f"{value:.4g}" for channel, value in synthesis_json["patterns"]["mixed"].items()} == printed
    status, _, stderr = run("--model", saved, "--layers", "mixed", "--synthesize", "--quiet")
    assert status == 2 and "pass --channels I,J" in stderr and "Traceback" not in stderr


def test_cli_pairs_the_photos_maps_with_patterns(tiny_model, cache, tmp_path, run):
    from conftest import SAMPLE_PHOTO

    saved = tmp_path / "tiny.keras"
    tiny_model.save(saved)
    out = tmp_path / "photo.png"
    status, stdout, stderr = run(SAMPLE_PHOTO, "--model", saved, "--layers", "mixed", "--synthesize", "--steps", "2",
                                 "--save-arrays", "--json", "--out", out)
    assert status == 0, stderr
    assert "mixed patterns (channel: mean activation):" in stdout
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["synthesis"]["steps"] == 2 and len(record["synthesis"]["patterns"]["mixed"]) == 8
    assert record["layers"][0]["name"] == "mixed"  # the photo's own record, with the patterns added
    assert "synthesizing mixed" in stderr  # the progress bar, on stderr
    with np.load(out.with_suffix(".npz")) as arrays:
        synthesized = [name for name in arrays.files if name.startswith("synth/mixed/")]
    assert len(synthesized) == 8  # --max-maps defaults to 8 with --synthesize; the layer has 8


def test_exemplar_rows_find_the_cached_pattern(network, cache):
    """The dataset-exemplar figure reads patterns through cached_patterns."""
    from _deepviz import exemplar_figure

    defaults = synthesis.synthesis_settings(network)
    stored = synthesis.Pattern(np.full((SIZE, SIZE, 3), 9, np.uint8), 2.0)
    synthesis.write_cached(synthesis.cache_path(synthesis.model_identity(network), "mixed", 5, defaults), stored)
    found = exemplar_figure.synthesized_patterns(network, "mixed", [4, 5])
    assert list(found) == [5] and found[5][0, 0, 0] == 9


@pytest.mark.parametrize("channels", [[5], [5, 6], list(range(8)), list(range(11))])
def test_few_patterns_are_drawn_large_and_centred_many_fill_rows(channels):
    patterns = {"mixed": {channel: synthesis.Pattern(np.full((16, 16, 3), 99, np.uint8), 1.0) for channel in channels}}
    drawn = synthesis_figure.draw_synthesis_figure(None, "title", [("mixed", channels)], patterns)
    drawn.canvas.draw()
    panels = [axes for axes in drawn.axes if axes.get_images()]
    assert len(panels) == len(channels)
    sides = {round(axes.bbox.width) for axes in panels}
    assert len(sides) == 1  # all the same size
    side = sides.pop()
    per_row = min(len(channels), synthesis_figure.PATTERNS_PER_ROW)
    widest = drawn.bbox.width / per_row
    assert side <= min(widest, synthesis_figure.MAX_CELL_INCHES * drawn.dpi) + 1
    assert side >= 0.6 * min(widest, synthesis_figure.MAX_CELL_INCHES * drawn.dpi)  # not a thumbnail in a corner
    first_row = [axes for axes in panels if round(axes.bbox.y1) == max(round(a.bbox.y1) for a in panels)]
    middle = (min(a.bbox.x0 for a in first_row) + max(a.bbox.x1 for a in first_row)) / 2
    assert middle == pytest.approx(drawn.bbox.width / 2, abs=0.02 * drawn.bbox.width)  # centred
    heading, = [text for axes in drawn.axes for text in axes.texts]
    assert heading.get_text().startswith("mixed: images optimised") and heading.get_ha() == "center"
    assert heading.get_text().endswith("fed at its 16 px)")  # its size, not the network's input: say so


@pytest.mark.parametrize("ratio, label", [(1.37, "1.4×"), (0.42, "0.4×"), (9.96, "10×"), (12.4, "12×")])
def test_the_pattern_is_compared_with_the_photo_to_one_decimal(ratio, label):
    assert synthesis_figure.times_label(ratio) == label
