"""Layers reduced on the model's device: the same LayerSummary as summarize_layer on the full maps, far fewer bytes."""

import numpy as np
import pytest

import deepviz
from _deepviz import analysis, backend, forward, images, reduction, stats

keras = backend.import_keras()

CHANNELS = 40


def tied_model(channels=CHANNELS):
    """A 24x24 model whose layer "relu" (22, 22, `channels`) is full of ties.

    Its ReLU zeros about half of each map; channels 0 to 5 are all zero, 6 and 7 constant
    (dead, equal means and maxima); 10, 11 and 12 repeat channel 9's kernel (equal maps);
    the rest are random. "linear" is the same convolution before the ReLU: values of both signs.
    """
    keras.utils.set_random_seed(7)
    inputs = keras.Input((24, 24, 3))
    linear = keras.layers.Conv2D(channels, 3, name="linear")(inputs)
    relu = keras.layers.ReLU(name="relu")(linear)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(relu)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(pooled), name="tied")
    rng = np.random.default_rng(7)
    kernel = rng.normal(size=(3, 3, 3, channels)).astype(np.float32)
    bias = rng.normal(scale=0.1, size=channels).astype(np.float32)
    kernel[..., :8] = 0.0
    bias[:6], bias[6:8] = -1.0, 0.5
    kernel[..., 10:13] = kernel[..., 9:10]
    bias[10:13] = bias[9]
    model.get_layer("linear").set_weights([kernel, bias])
    return model


def photo_arrays(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(count)]


def assert_same_summary(reduced: stats.LayerSummary, full: stats.LayerSummary, exact_maps: bool = True):
    assert (reduced.name, reduced.shape, reduced.ranking) == (full.name, full.shape, full.ranking)
    np.testing.assert_array_equal(reduced.channels, full.channels)
    assert reduced.channels.dtype == full.channels.dtype
    if exact_maps:
        np.testing.assert_array_equal(reduced.maps, full.maps)
    else:
        np.testing.assert_allclose(reduced.maps, full.maps, rtol=1e-5, atol=1e-6)
    assert reduced.maps.dtype == full.maps.dtype == np.float32
    for field in ("minimum", "mean", "maximum"):
        assert getattr(reduced, field) == pytest.approx(getattr(full, field), rel=1e-5, abs=1e-6), field
    assert (reduced.zeros, reduced.dead) == (full.zeros, full.dead)
    np.testing.assert_allclose(reduced.channel_means, full.channel_means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reduced.channel_maxima, full.channel_maxima, rtol=1e-5, atol=1e-6)
    assert reduced.summary_image is None


def maps_and_reduction(model, layer, plan: reduction.Reduction, batch):
    """One forward pass giving a layer's full maps and its reduction, from the same graph."""
    maps = model.get_layer(layer).output
    both = keras.Model(model.input, {"full": maps, "reduced": reduction.reduction_layer(plan)(maps)})
    return both.predict_on_batch(batch)


CASES = [  # (rank, max_maps, chosen channels)
    ("mean", 8, None),
    ("max", 8, None),
    ("index", 8, None),
    ("mean", 1, None),
    ("mean", CHANNELS, None),
    ("max", None, None),
    ("index", 500, None),  # more than the layer has: all of them
    ("mean", 8, (12, 0, 9, 39, 0)),  # chosen: in this order, repeats too
]


@pytest.mark.parametrize("layer", ["relu", "linear"])
@pytest.mark.parametrize("rank, max_maps, chosen", CASES)
def test_the_devices_reduction_is_summarize_layer_on_the_full_maps(layer, rank, max_maps, chosen):
    model = tied_model()
    batch = np.stack(photo_arrays(3)).astype(np.float32) / 255
    batch[2] = 0.0  # a padding photo: every channel constant
    outputs = maps_and_reduction(model, layer, reduction.Reduction(max_maps, rank, chosen), batch)
    for i in range(len(batch)):
        full = stats.summarize_layer(layer, outputs["full"][i], max_maps, rank, chosen)
        reduced = stats.summary_from_reduced(layer, {field: values[i] for field, values in outputs["reduced"].items()},
                                             CHANNELS, rank, chosen)
        assert_same_summary(reduced, full)
    if layer == "relu":  # the ties are there to be broken
        first = stats.summarize_layer(layer, outputs["full"][0], None, rank)
        assert first.dead >= 8 and first.zeros > 0.3
        assert len(set(first.channel_means.tolist())) < CHANNELS - 8


def test_ties_in_a_wide_layer_keep_index_order():
    """Hundreds of equal scores, as in a late ReLU layer: the order is np.argsort's stable one."""
    scores = np.zeros((3, 768), np.float32)
    rng = np.random.default_rng(3)
    scores[0, rng.choice(768, 200, replace=False)] = rng.integers(1, 4, 200)  # few distinct values, many ties
    scores[1] = -0.0  # negative zero ties with zero
    scores[1, ::7] = 0.0
    scores[2] = rng.integers(0, 3, 768)
    order = keras.ops.convert_to_numpy(reduction.argsort_descending(keras.ops.convert_to_tensor(scores)))
    for row, expected in zip(order, scores):
        np.testing.assert_array_equal(row, np.argsort(-expected, kind="stable"))


@pytest.mark.parametrize("options", [
    {},
    {"rank": "max", "max_maps": 4},
    {"rank": "index", "max_maps": None},
    {"channels": (3, 9, 10, 11)},
])
def test_the_visualizer_draws_the_same_layers_as_from_full_maps(options):
    viz = deepviz.Visualizer(tied_model(), preprocess="unit")
    photos = photo_arrays(5, seed=1)
    chosen = analysis.Analysis(layers=("linear", "relu", "pool"), **options)
    # One batch of 5 both ways: on a GPU another batch size may round the maps otherwise (cuDNN, TF32)
    results = viz.analyse([images.as_photo(photo) for photo in photos], chosen, batch_size=5)
    assert set(viz.prepare(chosen).reduced_layers) == {"linear", "relu"}  # not the vector layer
    for result, full_maps in zip(results, viz.maps(photos, ["linear", "relu", "pool"])):
        for layer in result.layers:
            full = stats.summarize_layer(layer.name, full_maps[layer.name], chosen.max_maps, chosen.rank,
                                         chosen.channels)
            if layer.is_spatial:  # another feature model, compiled on its own: maps to rounding
                assert_same_summary(layer, full, exact_maps=False)
            else:
                np.testing.assert_array_equal(layer.maps, full.maps)


def test_full_maps_where_they_are_needed():
    viz = deepviz.Visualizer(tied_model(), preprocess="unit", labels=["a", "b", "c"])
    layers = ("linear", "relu", "pool")
    drawn = viz.prepare(analysis.Analysis(layers=layers))
    assert drawn.reduced_layers == {"linear": CHANNELS, "relu": CHANNELS}
    assert viz.prepare(analysis.Analysis(layers=layers, cam=True, cam_layer="relu")).reduced_layers == {
        "linear": CHANNELS}  # Grad-CAM needs the full maps of its layer
    for needs_full in ({"keep_arrays": True}, {"summary": "pca"}):
        assert viz.prepare(analysis.Analysis(layers=layers, **needs_full)).reduced_layers == {}
    photo = images.as_photo(photo_arrays(1)[0])
    with_arrays = viz.analyse([photo], analysis.Analysis(layers=layers, keep_arrays=True))[0]
    assert with_arrays.arrays["relu"].shape == (22, 22, CHANNELS)
    summarised = viz.analyse([photo], analysis.Analysis(layers=layers, summary="pca"))[0]
    assert summarised.layers[1].summary_image.shape == (22, 22, 3)


def test_only_the_reduction_reaches_the_host():
    """The bytes a photo's forward pass copies to the host: a fraction of the full maps."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((40, 40, 3))
    wide = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="wide")(inputs)
    deep = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="deep")(wide)
    viz = deepviz.Visualizer(keras.Model(inputs, deep, name="backbone"), preprocess="unit")  # no predictions
    photo = images.as_photo(photo_arrays(1)[0])
    reduced = analysis.forward_batch(viz.network, viz.prepare(analysis.Analysis(("wide",), max_maps=8))
                                     .feature_model, [photo], 1)
    full = analysis.forward_batch(viz.network, viz.prepare(analysis.Analysis(("wide",), keep_arrays=True))
                                  .feature_model, [photo], 1)
    assert list(reduced) == ["wide"]  # the model's output, (40, 40, 64) maps, is read by nothing: left out
    assert full["wide"].nbytes == full[forward.OUTPUT_KEY].nbytes == 40 * 40 * 64 * 4
    reduced_bytes = sum(values.nbytes for values in keras.tree.flatten(reduced))
    assert reduced_bytes < full["wide"].nbytes / 7  # 8 of 64 channels' maps, and a few numbers
    assert reduced["wide"]["maps"].shape == (1, 40, 40, 8)


def test_the_device_rankings_are_the_hosts():
    assert list(reduction.DEVICE_RANKINGS) == list(stats.RANKINGS)


def test_nan_scores_rank_last_on_the_device_as_on_the_host():
    scores = np.array([[3, 1, np.nan, 2, 0.5, 5, 4]], np.float32)  # a channel of a model whose values overflowed
    order = keras.ops.convert_to_numpy(reduction.argsort_descending(keras.ops.convert_to_tensor(scores)))
    np.testing.assert_array_equal(order[0], [5, 6, 0, 3, 1, 4, 2])
    np.testing.assert_array_equal(stats.descending(scores[0]), [5, 6, 0, 3, 1, 4, 2])


def test_channel_means_of_a_large_map_stay_accurate():
    true_means = np.array([0.1003, 0.1, 0.0997])
    maps = np.broadcast_to(true_means.astype(np.float32), (1, 1024, 1024, 3)).copy()
    reduced = reduction.reduce_maps(keras.ops.convert_to_tensor(maps), reduction.Reduction(None, "mean"))
    device_means = keras.ops.convert_to_numpy(reduced["channel_means"])[0]
    np.testing.assert_allclose(device_means, true_means, rtol=1e-4)  # one running float32 sum on TensorFlow: 1e-2
    host = stats.summarize_layer("wide", maps[0], None, "mean")
    np.testing.assert_allclose(host.channel_means, true_means, rtol=1e-6)
    near_tie = np.full((147, 147, 4), 0.1, np.float32)
    near_tie[..., 2] = 0.1000001  # a running float32 sum gives all four the same mean
    np.testing.assert_array_equal(stats.rank_by_mean(near_tie), [2, 0, 1, 3])
