"""Models of the user's own, in memory: logits, greyscale inputs, keras.applications models, and the
shapes deepviz cannot read, each refused with what to do."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

import deepviz
from _deepviz import backend, explain, layers, synthesis
from _deepviz.images import as_photo, preprocess
from conftest import SAMPLE_PHOTO

keras = backend.import_keras()


def photo(seed=0, size=(40, 48)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def softmax(values):
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def logits_model(activation=None):
    keras.utils.set_random_seed(31)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation=activation, name="scores")(x), name="scores")


def test_logits_with_labels_are_shown_as_their_softmax():
    model = logits_model()
    viz = deepviz.Visualizer(model, preprocess="unit", labels=["a", "b", "c"])
    assert viz.network.logits
    logits = keras.ops.convert_to_numpy(model(fed(viz, photo())[None], training=False))[0]
    expected = softmax(logits)
    predictions = viz.predict(photo())
    assert [name for name, _ in predictions] == [["a", "b", "c"][i] for i in np.argsort(-expected)]
    np.testing.assert_allclose([p for _, p in predictions], np.sort(expected)[::-1], rtol=1e-5)


def fed(viz, image):
    """What deepviz feeds the network for `image`."""
    return preprocess(as_photo(image), viz.network)


def softmax_as_an_op(inputs, x):
    return keras.Model(inputs, keras.ops.softmax(x))


def softmax_in_a_lambda(inputs, x):
    return keras.Model(inputs, keras.layers.Lambda(lambda scores: keras.ops.softmax(scores))(x))


def sigmoid_activation(inputs, x):
    return keras.Model(inputs, keras.layers.Activation("sigmoid")(x))


@pytest.mark.parametrize("ending", [softmax_as_an_op, softmax_in_a_lambda, sigmoid_activation])
def test_probabilities_are_shown_as_they_are(ending):
    inner = logits_model()
    model = ending(inner.input, inner.output)
    viz = deepviz.Visualizer(model, preprocess="unit", labels=["a", "b", "c"])
    assert not viz.network.logits
    own = keras.ops.convert_to_numpy(model(fed(viz, photo())[None], training=False))[0]
    np.testing.assert_allclose([p for _, p in viz.predict(photo())], np.sort(own)[::-1], rtol=1e-5)
    assert deepviz.Visualizer(model, preprocess="unit").network.class_names == (
        ["class_0", "class_1", "class_2"] if ending is softmax_as_an_op else None)  # a softmax seen, or not


def grey_model():
    keras.utils.set_random_seed(32)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="digits")(x), name="mnist_like")


def test_a_greyscale_model_is_given_the_photo_in_grey():
    model = grey_model()
    viz = deepviz.Visualizer(model, preprocess="unit")
    colour = photo(1)
    pixels = fed(viz, colour)
    assert pixels.shape == (28, 28, 1)
    grey = np.asarray(as_photo(colour).resize((28, 28), Image.Resampling.BILINEAR).convert("L"), "float32") / 255
    np.testing.assert_allclose(pixels[..., 0], grey, atol=1 / 255 + 1e-6)
    expected = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("conv_a").output)(
        pixels[None], training=False))[0]
    np.testing.assert_allclose(viz.maps(colour, "conv_a")["conv_a"], expected, rtol=1e-5, atol=1e-6)
    assert len(viz.predict(colour)) == 3
    assert viz.figure(colour).axes  # the photo and each default layer drawn


def test_a_greyscale_model_synthesizes_grey_patterns_and_refuses_colour_preprocessing(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPVIZ_CACHE", str(tmp_path))
    viz = deepviz.Visualizer(grey_model(), preprocess="unit")
    patterns = viz.synthesize("conv_b", [0, 1], steps=4, size=28)
    for pattern in patterns.values():
        assert pattern.shape == (28, 28, 3)
        assert np.array_equal(pattern[..., 0], pattern[..., 1]) and np.array_equal(pattern[..., 0], pattern[..., 2])
    matrix, offset = synthesis.preprocessing_as_linear_map(viz.network)
    assert matrix.shape == (3, 1) and offset.shape == (1,)
    for scaling in ("caffe", "torch"):
        with pytest.raises(deepviz.UsageError, match="greyscale images; expected one of inception, unit, none"):
            deepviz.Visualizer(grey_model(), preprocess=scaling)


def test_training_only_layers_are_never_default_layers():
    viz = deepviz.Visualizer(grey_model(), preprocess="unit")
    assert "drop" not in viz.default_layers
    assert not layers.has_own_maps(viz.network.model.get_layer("drop"))
    assert explain.default_cam_layer(viz.network) == "conv_b"
    assert set(viz.grad_cam(photo())) <= set(viz.network.class_names)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3)
        self.pool = keras.layers.GlobalAveragePooling2D()

    def call(self, x):
        return self.pool(self.conv(x))


def two_input_model():
    image, extra = keras.Input((32, 32, 3)), keras.Input((4,))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(image))
    return keras.Model([image, extra], keras.layers.Dense(2)(keras.layers.Concatenate()([x, extra])))


def test_models_deepviz_cannot_read_are_usage_errors_that_say_what_to_do():
    subclassed = Subclassed()
    subclassed(np.zeros((1, 32, 32, 3), "float32"))
    with pytest.raises(deepviz.UsageError, match="functional or Sequential model whose input shape is known.*"
                                                 r"received a subclassed model \(Subclassed\).*keras.Input"):
        deepviz.Visualizer(subclassed)
    unbuilt = keras.Sequential([keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D()])
    with pytest.raises(deepviz.UsageError, match="received a Sequential model without one"):
        deepviz.Visualizer(unbuilt)
    with pytest.raises(deepviz.UsageError, match="one image input and one output, received 2 inputs and 1 outputs; "
                                                 "wrap the part that takes the image"):
        deepviz.Visualizer(two_input_model())
    five = keras.Model(*(lambda i: (i, keras.layers.Conv2D(2, 3)(i)))(keras.Input((16, 16, 5))))
    with pytest.raises(deepviz.UsageError, match=r"\(batch, height, width, 1\) for greyscale; received "
                                                 r"\(None, 16, 16, 5\)"):
        deepviz.Visualizer(five)


def test_a_keras_applications_classifier_in_memory_is_read_as_the_built_in_one():
    keras.utils.set_random_seed(33)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    viz = deepviz.Visualizer(model)
    assert viz.network.preprocess_name == "keras.applications.mobilenet_v2.preprocess_input"
    assert viz.network.class_names[:2] == ["tench", "goldfish"]
    assert viz.default_layers == list(deepviz.MODELS["mobilenet_v2"].default_layers)
    assert [name for name, _ in viz.predict(photo())][0] in viz.network.class_names


def backbone_in(head_inputs_through):
    keras.utils.set_random_seed(34)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(96, 96, 3))
    inputs = keras.Input((96, 96, 3))
    x = base(head_inputs_through(inputs))
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="transfer")


def test_a_backbone_fed_the_photo_lends_its_preprocessing_but_not_its_class_names():
    viz = deepviz.Visualizer(backbone_in(lambda inputs: inputs))
    assert viz.network.preprocess_name == "keras.applications.mobilenet_v2.preprocess_input"
    assert viz.network.class_names == ["class_0", "class_1", "class_2", "class_3"]
    scaled = deepviz.Visualizer(backbone_in(keras.layers.Rescaling(1 / 127.5, offset=-1)))
    assert scaled.network.preprocess_name == "none"  # the model scales the pixels itself, from 0-255
    by_ops = deepviz.Visualizer(backbone_in(lambda inputs: inputs / 127.5 - 1))
    assert by_ops.network.preprocess_name == "none"  # so it does with operations
    augmentations = keras.Sequential([keras.layers.RandomFlip(), keras.layers.RandomZoom(0.1)])
    augmented = deepviz.Visualizer(backbone_in(augmentations))
    assert augmented.network.preprocess_name == "keras.applications.mobilenet_v2.preprocess_input"  # no-ops then
    given = deepviz.Visualizer(backbone_in(lambda inputs: inputs), preprocess="unit")
    assert given.network.preprocess_name == "unit"


def test_a_backbone_built_again_in_the_process_is_known_by_its_layers_as_keras_numbered_them(run, tmp_path):
    keras.layers.Conv2D(2, 3, name=None)  # a layer built before: Keras numbers the backbone's on from it
    for _ in range(2):  # a notebook's cell run twice: the second build's convolutions are conv2d_95, ...
        base = keras.applications.InceptionV3(weights=None, include_top=False, input_shape=(75, 75, 3))
    inputs = keras.Input((75, 75, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x), name="transfer")
    second_convolution = [layer.name for layer in base.layers if isinstance(layer, keras.layers.Conv2D)][1]
    assert second_convolution != "conv2d_1"
    expected = [f"{base.name}/{name}" for name in (second_convolution, "mixed0", "mixed3", "mixed7", "mixed10")]
    viz = deepviz.Visualizer(model)
    assert viz.default_layers == expected
    assert viz.network.preprocess_name == "keras.applications.inception_v3.preprocess_input"
    model.save(tmp_path / "transfer.keras")  # saved with those names, read in a new session
    status, out, err = run(SAMPLE_PHOTO, "--model", tmp_path / "transfer.keras", "--quiet", "--dpi", 20, "--out",
                           tmp_path / "out")
    assert status == 0, err
    assert [line.split()[0] for line in out.splitlines() if "(" in line and "min" in line] == expected


def test_a_layer_named_without_its_nested_model_is_suggested_with_it():
    viz = deepviz.Visualizer(backbone_in(lambda inputs: inputs))
    with pytest.raises(deepviz.UsageError, match=r"no layer 'block_5_add'; did you mean "
                                                 r"'mobilenetv2_1.00_96/block_5_add'.*Visualizer.layers\(\)"):
        viz.maps(photo(), "block_5_add")


def test_arrays_with_one_channel_are_photos_and_batches_say_how_to_pass_them():
    viz = deepviz.Visualizer(logits_model("softmax"), preprocess="unit")
    single = photo(2)[..., :1]
    np.testing.assert_array_equal(viz.maps(single, "conv_a")["conv_a"], viz.maps(single[..., 0], "conv_a")["conv_a"])
    with pytest.raises(deepviz.UsageError, match=r"Pass a batch as a list of images: list\(batch\)"):
        viz.maps(np.stack([photo(), photo(1)]), "conv_a")
    with pytest.raises(deepviz.UsageError, match="Pass several images as a list"):
        viz.maps((photo(), photo(1)), "conv_a")


def test_a_greyscale_model_s_figure_shows_the_photo_in_grey(tmp_path):
    red = np.zeros((40, 48, 3), np.uint8)
    red[...] = (200, 30, 30)
    viz = deepviz.Visualizer(grey_model(), preprocess="unit")
    with Image.open(viz.save(red, tmp_path / "grey.png")) as drawn:
        pixels = np.asarray(drawn.convert("RGB")).astype(int)
    assert not (np.abs(pixels - (200, 30, 30)).sum(axis=-1) < 30).any()  # no red left
    luma = round(0.299 * 200 + 0.587 * 30 + 0.114 * 30)
    assert (np.abs(pixels - luma).sum(axis=-1) < 6).sum() > 100  # the photo, in its grey


def test_an_empty_list_of_layers_is_refused_not_taken_for_the_default_layers():
    viz = deepviz.Visualizer(logits_model("softmax"), preprocess="unit")
    with pytest.raises(deepviz.UsageError, match="received an empty list"):
        viz.maps(photo(), [])
    assert list(viz.maps(photo(), None)) == viz.default_layers


def overflowing_model(path):
    """Maps that overflow float32 to inf, and a softmax of them that is NaN."""
    inputs = keras.Input((16, 16, 3))
    c = keras.layers.Conv2D(4, 3, padding="same", name="c")(inputs)
    huge = keras.layers.Rescaling(1e30, name="huge")(keras.layers.Rescaling(1e30)(c))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(huge))
    keras.Model(inputs, outputs).save(path)
    return path


def test_values_that_overflow_give_valid_json_a_clear_error_and_no_numpy_warnings(run, tmp_path):
    model = overflowing_model(tmp_path / "overflow.keras")
    Image.fromarray(photo(3)).save(tmp_path / "photo.png")
    common = [tmp_path / "photo.png", "--model", model, "--preprocess", "none", "--layers", "c", "huge", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # NumPy's "invalid value" warnings fail the test
        status, out, err = run(*common, "--cam", "--json", "--workers", 1, "--out", tmp_path / "out")
    assert status == 0, err
    assert "huge (16, 16, 4): min -inf mean nan max inf" in out
    text = (tmp_path / "out" / "photo.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = json.loads(text)
    assert [(layer["min"], layer["max"]) for layer in record["layers"]][1] == (None, None)
    assert [prediction["probability"] for prediction in record["predictions"]] == [None, None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        status, out, err = run(*common, "--summary", "pca", "--out", tmp_path / "pca")
    assert status == 1
    assert err == ("deepviz: error: layer huge: 1,024 of its values are not finite (inf or NaN), and --summary pca "
                   "needs finite ones; leave --summary out, or look at the layers before it\n")


def test_a_model_that_scales_its_own_pixels_is_given_them_as_they_are():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="conv_a")(keras.layers.Rescaling(1 / 255)(keras.layers.RandomFlip()(inputs)))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    viz = deepviz.Visualizer(model)
    assert viz.network.preprocess_name == "none"
    assert fed(viz, photo()).max() > 200  # pixels 0-255, for the model's Rescaling


def test_a_greyscale_model_of_any_input_size_synthesizes_at_the_size_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPVIZ_CACHE", str(tmp_path))
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="c1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x)))
    viz = deepviz.Visualizer(model, preprocess="unit")
    assert viz.synthesize("c1", [0, 2], steps=2, size=16)[2].shape == (16, 16, 3)
    assert "ends in a sigmoid (a probability per class) whose classes have no names; pass --labels FILE" in (
        viz.network.no_predictions_reason)


@pytest.mark.parametrize("activation", [None, "softmax"])
def test_saved_arrays_keep_a_layer_named_predictions_and_the_output_vector_both(run, tmp_path, activation):
    keras.utils.set_random_seed(5)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv_a")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation=activation, name="predictions")(x))
    model.save(tmp_path / "model.keras")
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    Image.fromarray(photo()).save(tmp_path / "photo.png")
    status, out, err = run(tmp_path / "photo.png", "--model", tmp_path / "model.keras", "--labels",
                           tmp_path / "labels.txt", "--preprocess", "unit", "--layers", "conv_a", "predictions",
                           "--save-arrays", "--quiet", "--dpi", 20, "--out", tmp_path / "out")
    assert status == 0, err
    arrays = np.load(tmp_path / "out" / "photo.npz")
    scores = keras.ops.convert_to_numpy(model(fed(deepviz.Visualizer(model, preprocess="unit"), photo())[None]))[0]
    np.testing.assert_allclose(arrays["predictions"], scores, rtol=1e-5, atol=1e-6)  # the layer, by its name
    if activation is None:  # the output vector shown is the logits' softmax: kept beside the layer
        np.testing.assert_allclose(arrays["output/predictions"], softmax(scores), rtol=1e-5)
    else:  # the layer is the output vector: once
        assert "output/predictions" not in arrays.files
