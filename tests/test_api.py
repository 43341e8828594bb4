"""The Python API: deepviz.Visualizer over built-in, saved and in-memory models."""

import inspect
import io
import re

import numpy as np
import pytest
from PIL import Image

import deepviz
from _deepviz import analysis, backend, images
from conftest import SAMPLE_PHOTO, half_and_half_model

keras = backend.import_keras()


def functional_classifier():
    keras.utils.set_random_seed(21)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x), name="functional")


def sequential_classifier():
    keras.utils.set_random_seed(22)
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(6, 3, activation="relu", name="conv_a"),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_b"),
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dense(3, name="logits"),
        keras.layers.Softmax(name="probs"),
    ], name="sequential")


def transfer_classifier():
    """A backbone nested in a classifier, as transfer learning builds it."""
    keras.utils.set_random_seed(23)
    base_inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv_a")(base_inputs)
    base = keras.Model(base_inputs, keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_b")(x),
                       name="base")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(base(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x), name="transfer")


def photo_array(seed=0, size=(40, 48)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def expected_maps(layer_model, path, pixels):
    """What Keras itself gives for `path`, on the input deepviz feeds the model."""
    inner = layer_model.get_layer(path.split("/")[-1])
    return keras.ops.convert_to_numpy(keras.Model(layer_model.inputs, inner.output)([pixels[None]], training=False))[0]


@pytest.mark.parametrize("build, layers, inner", [
    (functional_classifier, ["conv_a", "conv_b", "pool"], None),
    (sequential_classifier, ["conv_a", "conv_b", "pool"], None),
    (transfer_classifier, ["base/conv_a", "base/conv_b", "pool"], "base"),
])
def test_in_memory_models_give_keras_own_maps_and_predictions(build, layers, inner):
    model = build()
    viz = deepviz.Visualizer(model, preprocess="unit")
    photo = photo_array()
    pixels = images.preprocess(images.as_photo(photo), viz.network)  # (32, 32, 3) in [0, 1]
    maps = viz.maps(photo, layers)
    assert list(maps) == layers
    for path in layers:
        owner = model.get_layer(inner) if inner and path.startswith(inner + "/") else model
        if owner is model:
            expected = keras.ops.convert_to_numpy(
                keras.Model(model.inputs, model.get_layer(path).output)([pixels[None]], training=False))[0]
        else:
            expected = expected_maps(owner, path, pixels)
        np.testing.assert_allclose(maps[path], expected, rtol=1e-5, atol=1e-6)
    assert maps["pool"].shape == (8,)  # a vector layer
    probabilities = keras.ops.convert_to_numpy(model(pixels[None], training=False))[0]
    predicted = viz.predict(photo, top=3)
    assert [name for name, _ in predicted] == [f"class_{i}" for i in np.argsort(-probabilities)]
    np.testing.assert_allclose([p for _, p in predicted], np.sort(probabilities)[::-1], rtol=1e-5)


@pytest.mark.parametrize("sequential_base", [False, True])
def test_a_nested_model_after_a_layer_of_the_outer_one_gives_its_inner_maps(sequential_base):
    """The usual transfer-learning shape with preprocessing in the model: Rescaling, then the backbone."""
    keras.utils.set_random_seed(24)
    conv_a = keras.layers.Conv2D(6, 3, activation="relu", name="conv_a")
    conv_b = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_b")
    if sequential_base:
        base = keras.Sequential([keras.Input((32, 32, 3)), conv_a, conv_b], name="base")
    else:
        base_inputs = keras.Input((32, 32, 3))
        base = keras.Model(base_inputs, conv_b(conv_a(base_inputs)), name="base")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(base(keras.layers.Rescaling(0.5, name="halve")(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x))
    viz = deepviz.Visualizer(model, preprocess="unit")
    photo = photo_array()
    pixels = images.preprocess(images.as_photo(photo), viz.network)
    maps = viz.maps(photo, ["base/conv_a", "base/conv_b"])
    for path in maps:
        np.testing.assert_allclose(maps[path], expected_maps(base, path, pixels * 0.5), rtol=1e-5, atol=1e-6)
    if not sequential_base:  # its input layer is listed: what the backbone is called on, the photo halved
        input_path = "base/" + base.layers[0].name
        np.testing.assert_allclose(viz.maps(photo, input_path)[input_path], pixels * 0.5, rtol=1e-6)
    probabilities = keras.ops.convert_to_numpy(model(pixels[None], training=False))[0]
    np.testing.assert_allclose([p for _, p in viz.predict(photo, top=3)], np.sort(probabilities)[::-1], rtol=1e-5)
    assert [heatmap.shape for heatmap in viz.grad_cam(photo, layer="base/conv_b", top=2).values()] == [(14, 14)] * 2


def test_images_may_be_paths_pil_images_or_arrays_and_lists_give_lists(tmp_path):
    viz = deepviz.Visualizer(functional_classifier(), preprocess="unit")
    pixels = photo_array(1)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    from_path, from_str, from_pil, from_array = (viz.maps(image, ["conv_b"])["conv_b"]
                                                 for image in (path, str(path), Image.fromarray(pixels), pixels))
    for maps in (from_str, from_pil, from_array):
        np.testing.assert_allclose(maps, from_path, atol=1e-6)
    grey = viz.maps(pixels[..., 0], ["conv_a"])["conv_a"]
    assert grey.shape == (30, 30, 6)
    several = viz.maps([pixels, photo_array(2), pixels] * 4, ["conv_b"])  # 12 images: two batches
    assert len(several) == 12
    np.testing.assert_allclose(several[0]["conv_b"], from_array, atol=1e-5)
    np.testing.assert_allclose(several[11]["conv_b"], several[2]["conv_b"], atol=1e-6)
    assert not np.allclose(several[1]["conv_b"], several[0]["conv_b"])
    predictions = viz.predict([pixels, photo_array(2)])
    alone = viz.predict(pixels)
    assert len(predictions) == 2 and [name for name, _ in predictions[0]] == [name for name, _ in alone]
    assert [p for _, p in predictions[0]] == pytest.approx([p for _, p in alone], rel=1e-5)  # a GPU rounds by batch


def test_one_layer_may_be_named_without_a_list():
    viz = deepviz.Visualizer(functional_classifier())
    photo = photo_array()
    assert list(viz.maps(photo, "conv_b")) == ["conv_b"]
    np.testing.assert_array_equal(viz.maps(photo, "conv_b")["conv_b"], viz.maps(photo, ["conv_b"])["conv_b"])
    assert [axes.get_title().split(" ")[0] for axes in viz.figure(photo, "conv_a", dpi=40).axes[1:2]] == ["conv_a"]


def test_layers_and_default_layers():
    viz = deepviz.Visualizer(transfer_classifier())
    paths = viz.layers()
    assert paths[1:2] + paths[3:] == ["base", "base/conv_a", "base/conv_b", "pool", "probs"]
    assert paths[2].startswith("base/input_layer")
    assert viz.default_layers == ["base/conv_a", "base/conv_b"]  # not "base" too: its maps are conv_b's
    builtin = deepviz.Visualizer("inception_v3", weights=None)  # Keras's word for random weights, as "none"
    assert builtin.network.weights_label == deepviz.Visualizer("inception_v3", weights="none").network.weights_label
    assert builtin.default_layers == ["conv2d_1", "mixed0", "mixed3", "mixed7", "mixed10"]
    assert "mixed5" in builtin.layers() and len(builtin.layers()) == 313


def test_grad_cam_of_an_in_memory_model_puts_each_class_where_its_evidence_is():
    photo = np.zeros((64, 64, 3), np.uint8)
    photo[:, :32, 0] = 255  # red left
    photo[:, 32:, 2] = 255  # blue right
    viz = deepviz.Visualizer(half_and_half_model(right_colour=2), preprocess="unit", labels=["left", "right"])
    heatmaps = viz.grad_cam(photo, top=2, layer="maps")
    assert sorted(heatmaps) == ["left", "right"]
    for name, side in (("left", slice(0, 16)), ("right", slice(16, 32))):
        heatmap = heatmaps[name]
        assert heatmap.shape == (32, 32) and heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0)
        assert heatmap[:, side].sum() / heatmap.sum() > 0.9, name
    by_index = viz.grad_cam(photo, classes=[1], layer="maps")
    np.testing.assert_allclose(by_index["right"], heatmaps["right"], atol=1e-6)
    assert list(viz.grad_cam(photo, classes=["left"], layer="maps")) == ["left"]
    assert list(viz.grad_cam(photo, classes="left", layer="maps")) == ["left"]  # one class, as one layer, alone
    assert list(viz.grad_cam(photo, classes=1, layer="maps")) == ["right"]


def test_the_network_and_feature_models_are_built_once(monkeypatch):
    builds = []  # (layers, reduced on the device)
    real_build = analysis.build_pipeline
    monkeypatch.setattr(deepviz, "build_pipeline",
                        lambda *a: builds.append((a[1], a[3] is not None)) or real_build(*a))
    viz = deepviz.Visualizer(functional_classifier(), preprocess="unit")
    network = viz.network
    photo = photo_array(3)
    first = viz.figure(photo, ["conv_a", "conv_b"], dpi=30)
    second = viz.figure(photo, ["conv_a", "conv_b"], dpi=30, norm="layer", cmap="magma")
    assert builds == [(["conv_a", "conv_b"], True)]  # the same layers and channels: one feature model
    viz.maps(photo, ["conv_a", "conv_b"])
    viz.maps(photo, ["conv_a", "conv_b"])
    assert builds == [(["conv_a", "conv_b"], True), (["conv_a", "conv_b"], False)]  # full maps: one more, once
    viz.figure(photo, ["conv_a", "conv_b"], dpi=30, cmap="magma")
    viz.maps(photo, ["conv_a"])
    assert builds == [(["conv_a", "conv_b"], True), (["conv_a", "conv_b"], False), (["conv_a"], False)]
    assert viz.network is network
    assert first is not second


def test_figure_is_a_matplotlib_figure_that_leaves_pyplot_alone(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    viz = deepviz.Visualizer(functional_classifier(), preprocess="unit")
    before = plt.get_fignums()
    drawn = viz.figure(photo_array(4), cam=True, top=2, dpi=30)
    assert isinstance(drawn, Figure) and plt.get_fignums() == before
    assert drawn._repr_png_().startswith(b"\x89PNG")  # what Jupyter shows inline
    titles = [axes.get_title() for axes in drawn.axes]
    assert titles[0].startswith("image (48×40)\n1. class_")
    assert [title.split()[0] for title in titles[1:3]] == ["1.", "2."]  # a Grad-CAM panel per class
    assert "Grad-CAM at conv_b" in drawn.texts[0].get_text()
    out = viz.save(photo_array(4), tmp_path / "deep" / "figure.png", dpi=30)
    with Image.open(out) as saved:
        assert saved.format == "PNG" and saved.width == 360
    with Image.open(io.BytesIO(drawn._repr_png_())) as shown:
        assert shown.width == 360  # inline too, at the dpi asked for
    assert [p.name for p in out.parent.iterdir()] == ["figure.png"]  # no temporary file left


def test_bad_arguments_raise_usage_errors_a_python_user_can_catch(tmp_path):
    viz = deepviz.Visualizer(functional_classifier())
    photo = photo_array()
    with pytest.raises(deepviz.UsageError,
                       match=r"functional has no layer 'conv_c'; did you mean 'conv_b' or 'conv_a'\?"):
        viz.maps(photo, ["conv_c"])
    with pytest.raises(ValueError, match="rank: expected one of mean, max, index, received 'loudest'"):
        viz.figure(photo, rank="loudest")
    with pytest.raises(ValueError, match="norm: expected one of channel, layer"):
        viz.figure(photo, norm="global")
    with pytest.raises(ValueError, match="unknown colormap 'viridiss'; did you mean viridis"):
        viz.figure(photo, cmap="viridiss")
    with pytest.raises(deepviz.UsageError, match=r"image: expected a path, a PIL.Image.Image or a uint8 array.*"
                                                 r"dtype float32\. Convert a float array in \[0, 1\] with"):
        viz.predict(photo.astype(np.float32) / 255)
    with pytest.raises(deepviz.UsageError, match=r"dtype float32\. Convert a float array in 0 to 255 with "
                                                 r"array\.clip\(0, 255\)\.astype\('uint8'\)\.$"):
        viz.predict(photo.astype(np.float32))  # (array * 255) would wrap its values around
    with pytest.raises(deepviz.UsageError) as refused:
        viz.maps(123)
    assert str(refused.value).endswith("(H, W, 3), (H, W, 4), (H, W, 1) or (H, W); received int")  # no float hint
    with pytest.raises(deepviz.UsageError, match=r"classes: 'dog' is not a class of functional"):
        viz.grad_cam(photo, classes=["dog"])
    with pytest.raises(deepviz.UsageError, match=r"top: expected a whole number of at least 1, received 0"):
        viz.predict(photo, top=0)
    with pytest.raises(deepviz.UsageError, match=r"^channel 9: layer conv_a has 6 channels"):
        viz.figure(photo, ["conv_a"], channels=[9])
    for channels in ([-1], [], [1.0], [True]):  # -1 would pick a row of another photo's maps on the device
        with pytest.raises(deepviz.UsageError, match=r"^channels: expected channel indices, whole numbers of 0 or "
                                                     rf"more, received {re.escape(repr(channels))}$"):
            viz.figure(photo, ["conv_a"], channels=channels)
    with pytest.raises(deepviz.UsageError, match=r"dpi: expected a whole number from 10 to 1200, received 5"):
        viz.figure(photo, dpi=5)
    for name, received in (("figure.tiff", "'.tiff'"), ("figure", "none \\(no suffix\\)")):
        with pytest.raises(deepviz.UsageError, match=f"path {tmp_path / name}: unsupported figure format {received}; "
                                                     r"use one of \.png, \.pdf"):
            viz.save(photo, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(deepviz.UsageError,
                       match=r"channels: expected each channel once, received 2 twice in \[2, 1, 2\]"):
        viz.figure(photo, ["conv_a"], channels=[2, 1, 2])
    with pytest.raises(deepviz.UsageError, match=r"^channels draws exactly the channels listed and max_maps the "
                                                 r"top-ranked ones; received channels=\[1, 2\] and max_maps=64: pass"):
        viz.figure(photo, ["conv_a"], channels=[1, 2], max_maps=64)  # as asked for, though the default's value
    assert viz.figure(photo, ["conv_a"], channels=[1, 2]) is not None  # the default max_maps stands aside


@pytest.mark.parametrize("call, message", [
    (lambda viz, photo: viz.figure(photo, max_maps="all"), r"max_maps: expected a whole number of at least 1 or None "
                                                           r"\(all\), received 'all'$"),
    (lambda viz, photo: viz.figure(photo, max_maps=2.5), r"received 2\.5$"),
    (lambda viz, photo: viz.figure(photo, max_maps=True), r"received True$"),
    (lambda viz, photo: viz.predict(photo, top=2.5), r"^top: expected a whole number of at least 1, received 2\.5$"),
    (lambda viz, photo: viz.predict(photo, top="3"), r"received '3'$"),
    (lambda viz, photo: viz.figure(photo, channels=3), r"^channels: expected a list of channel indices, received 3$"),
    (lambda viz, photo: viz.maps(photo, 3), r"^layers: expected a layer name or a list of them, or None for the "
                                            r"default layers; received 3$"),
    (lambda viz, photo: viz.maps(photo, [None]), r"received \[None\]$"),
    (lambda viz, photo: viz.predict(np.zeros((0, 5, 3), np.uint8)), r"^image: expected at least one pixel, received "
                                                                     r"an image of 5x0$"),
    (lambda viz, photo: viz.figure(photo, cam_layer="conv_b"), r"^cam_layer 'conv_b' picks the layer cam=True "
                                                               r"explains; add cam=True, or leave cam_layer out$"),
    (lambda viz, photo: viz.figure(photo, steps=4, seed=1), r"^steps=4, seed=1: shape the patterns of "
                                                            r"synthesize=True; add it, or leave them out$"),
    (lambda viz, photo: viz.figure(photo, size=64), r"^size=64: shapes the patterns of synthesize=True; add it, "
                                                    r"or leave it out$"),
    (lambda viz, photo: viz.figure(photo, synthesize=True, cam=True), r"^cam=True is not drawn with synthesize=True"),
    (lambda viz, photo: viz.exemplars([Image.fromarray(photo)], "conv_b"), r"^images: expected photo paths or "
                                                                           r"directories .*received list of Image$"),
    (lambda viz, photo: viz.exemplars("photos/", ["conv_b"]), r"^layer: expected one layer's name, received "
                                                              r"\['conv_b'\]; call exemplars once per layer$"),
    (lambda viz, photo: deepviz.Visualizer(123), r"^model: expected a built-in name such as 'inception_v3', a saved "
                                                 r"model's path or a keras.Model, received int$"),
])
def test_arguments_of_the_wrong_kind_are_usage_errors_that_say_what_was_expected(call, message):
    with pytest.raises(deepviz.UsageError, match=message):
        call(deepviz.Visualizer(functional_classifier()), photo_array())


def test_an_rgba_array_is_laid_over_white_as_an_rgba_image_is():
    viz = deepviz.Visualizer(functional_classifier())
    rgba = np.dstack([photo_array(3), np.linspace(0, 255, 48, dtype=np.uint8)[None, :].repeat(40, 0)])
    np.testing.assert_array_equal(viz.maps(rgba, "conv_a")["conv_a"],
                                  viz.maps(Image.fromarray(rgba, "RGBA"), "conv_a")["conv_a"])


def test_runtime_failures_raise_deepviz_errors(tmp_path):
    viz = deepviz.Visualizer(functional_classifier())
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    with pytest.raises(deepviz.DeepvizError, match="broken.jpg: not a readable image"):
        viz.predict(broken)
    with pytest.raises(deepviz.DeepvizError, match="no such file"):
        viz.maps(tmp_path / "missing.png")
    with pytest.raises(deepviz.UsageError, match="--model vgg61: not a built-in model; did you mean vgg19"):
        deepviz.Visualizer("vgg61")
    assert not issubclass(deepviz.DeepvizError, ValueError) and issubclass(deepviz.UsageError, ValueError)


def test_a_saved_model_takes_labels_as_a_list_and_every_bad_argument_is_a_usage_error(tmp_path):
    path = tmp_path / "classifier.keras"
    functional_classifier().save(str(path))
    viz = deepviz.Visualizer(path, labels=["cat", "dog", "fox"])
    assert sorted(name for name, _ in viz.predict(photo_array(), top=3)) == ["cat", "dog", "fox"]
    with pytest.raises(deepviz.UsageError, match=r"--preprocess bogus: expected one of inception, caffe, torch"):
        deepviz.Visualizer(path, preprocess="bogus")
    with pytest.raises(deepviz.UsageError, match=r"--preprocess bogus: expected one of"):
        deepviz.Visualizer(functional_classifier(), preprocess="bogus")
    with pytest.raises(deepviz.UsageError, match=r"weights 'my.weights.h5' applies to the built-in models; the "
                                                 r"keras.Model '\w+' carries its own weights: leave weights out"):
        deepviz.Visualizer(functional_classifier(), weights="my.weights.h5")
    for weights in ("imagenet", "none", None):  # asked for, though "imagenet" is the default's value
        with pytest.raises(deepviz.UsageError, match=r"keras.Model '\w+' carries its own weights: leave weights out"):
            deepviz.Visualizer(functional_classifier(), weights=weights)
        with pytest.raises(deepviz.UsageError, match=r"--weights applies to the built-in models; \S+ carries its own"):
            deepviz.Visualizer(path, weights=weights)
    assert inspect.signature(deepviz.Visualizer).parameters["weights"].default == "imagenet"  # as help() shows it
    with pytest.raises(deepviz.UsageError, match="--labels names the classes of a model of your own"):
        deepviz.Visualizer("inception_v3", weights="none", labels=["a", "b"])
    with pytest.raises(deepviz.UsageError, match=r"--model foo: not a built-in model\. Expected one of"):
        deepviz.Visualizer("foo")


def test_a_model_without_a_class_vector_predicts_nothing():
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="maps")(inputs))
    viz = deepviz.Visualizer(model)
    assert viz.predict(photo_array()) == [] and viz.predict([photo_array()] * 2) == [[], []]
    with pytest.raises(deepviz.UsageError, match="--cam explains predictions, and there are none"):
        viz.grad_cam(photo_array())


def test_the_api_and_the_command_line_give_the_same_numbers(run, tmp_path):
    model = functional_classifier()
    path = tmp_path / "model.keras"
    model.save(str(path))
    status, out, err = run(SAMPLE_PHOTO, "--model", path, "--preprocess", "unit", "--layers", "conv_b",
                           "--save-arrays", "--quiet", "--out", tmp_path / "cli.png")
    assert status == 0, err
    viz = deepviz.Visualizer(model, preprocess="unit")
    arrays = np.load(tmp_path / "cli.npz")
    np.testing.assert_allclose(viz.maps(SAMPLE_PHOTO, ["conv_b"])["conv_b"], arrays["conv_b"], atol=1e-6)
    printed = [line.split()[1] for line in out.splitlines()[:3]]
    assert printed == [name for name, _ in viz.predict(SAMPLE_PHOTO)]
