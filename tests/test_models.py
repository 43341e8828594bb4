"""Every built-in keras.applications model, the user's own saved model, and nested models."""

import json
import os
import threading

import numpy as np
import pytest

import deepviz
from _deepviz import backend, explain, forward, images, layers, models
from conftest import SAMPLE_PHOTO

keras = backend.import_keras()
PREDICTION_LINE = r"(\d+)\. (\S+) +(\d+\.\d\d)%"


def test_list_models(run):
    status, out, _ = run("--list-models")
    assert status == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list(deepviz.MODELS)
    assert lines[0].split()[:3] == ["inception_v3", "InceptionV3", "299x299"]
    assert lines[1].split() == ["vgg16", "VGG16", "224x224", "block1_conv2", "block2_conv2", "block3_conv3",
                                "block4_conv3", "block5_conv3"]


@pytest.mark.parametrize("name", list(deepviz.MODELS))
def test_each_built_in_model_has_its_default_layers_and_input_size(name):
    spec = deepviz.MODELS[name]
    network = models.build_network(models.NetworkChoice(model=name, weights="none"))
    assert layers.check_layer_names(network, network.default_layers) == list(spec.default_layers)
    assert tuple(network.model.input.shape[1:]) == (spec.input_size, spec.input_size, 3)
    spatial = [layers.output_shape(layers.layer_paths(network.model)[p]) for p in spec.default_layers]
    assert all(len(shape) == 3 for shape in spatial)  # every default layer has maps to draw
    marked = [line for line in layers.describe_layers(network) if line.endswith("<- block output")]
    assert len(marked) >= 2
    cam_layer = explain.check_cam(network, None)  # --cam works out of the box: a layer Grad-CAM can explain
    assert len(layers.output_shape(layers.layer_paths(network.model)[cam_layer])) == 3
    assert explain.cam_head_or_none(network, cam_layer) is not None


def test_random_weights_are_the_same_network_on_every_build_and_leave_python_random_alone():
    import random

    choice = models.NetworkChoice(model="mobilenet_v2", weights="none")
    random.seed(1)
    first = models.build_application(choice).model.get_layer("Conv1").get_weights()[0]
    after_first = random.random()
    random.seed(2)  # another state before the build, as another process or a user's own seeds would leave
    second = models.build_application(choice).model.get_layer("Conv1").get_weights()[0]
    random.seed(1)
    assert random.random() == after_first  # the build drew nothing from the user's sequence
    np.testing.assert_array_equal(first, second)
    assert np.abs(first).max() > 0


def test_a_built_in_model_uses_its_own_size_preprocessing_and_weights_file(run, tmp_path):
    keras.utils.set_random_seed(7)
    model = models.build_model(deepviz.MODELS["vgg16"], include_top=True)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 50, bias])  # peaked predictions
    weights = tmp_path / "vgg16_random.weights.h5"
    model.save_weights(str(weights))

    status, out, err = run(SAMPLE_PHOTO, "--model", "vgg16", "--weights", weights, "--quiet",
                           "--layers", "block1_conv2", "--out", tmp_path)
    assert status == 0, err
    import re
    printed = [re.fullmatch(PREDICTION_LINE, line).group(2) for line in out.splitlines()[:3]]
    assert out.splitlines()[3].startswith("block1_conv2 (224, 224, 64): ")

    image = keras.utils.load_img(SAMPLE_PHOTO, target_size=(224, 224), interpolation="bilinear")
    batch = keras.applications.vgg16.preprocess_input(keras.utils.img_to_array(image)[None])
    keras.backend.clear_session()
    reference = keras.applications.VGG16(weights=str(weights))
    probabilities = keras.ops.convert_to_numpy(reference(batch, training=False))[0]
    names = models.load_class_names()
    assert printed == [names[i] for i in np.argsort(-probabilities)[:3]]


def test_an_unknown_model_name_is_a_usage_error(run):
    status, _, err = run(SAMPLE_PHOTO, "--model", "vgg61")
    assert status == 2
    assert err.startswith("deepviz: error: --model vgg61: not a built-in model; did you mean vgg19 or vgg16?")
    assert "(see --list-models) or a saved model ending in .keras or .h5" in err


# --- The user's own models ------------------------------------------------------
def small_cnn(name="small_cnn", size=32):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_b")(x)
    return keras.Model(inputs, x, name=name)


def save(model, path):
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = small_cnn()(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="global_average_pooling2d")(x)  # named: not by what came before
    outputs = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="transfer")
    return model, save(model, tmp_path_factory.mktemp("own") / "transfer.keras")


def own_maps(path, layers, photo_batch, **choice):
    network = models.build_network(models.NetworkChoice(model=str(path), **choice))
    feature_model = forward.build_feature_model(network, layers)
    return network, forward.run_forward_pass(feature_model, photo_batch)


def test_a_nested_models_layers_are_outer_slash_inner(run, classifier):
    _, path = classifier
    status, out, _ = run("--model", path, "--list-layers", "--quiet")
    assert status == 0
    paths = [line.split()[1] for line in out.splitlines()]
    assert len(paths) == 7
    assert paths[1:2] + paths[3:] == ["small_cnn", "small_cnn/conv_a", "small_cnn/conv_b",
                                      "global_average_pooling2d", "probs"]
    assert paths[2].startswith("small_cnn/input_layer")


def test_a_built_in_backbone_lends_its_default_layers_and_blocks_and_preprocessing_is_no_default(run, tmp_path):
    base = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.35, input_shape=(96, 96, 3))
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    viz = deepviz.Visualizer(model, preprocess="none")
    prefix = base.name + "/"
    assert viz.default_layers == [prefix + name for name in deepviz.MODELS["mobilenet_v2"].default_layers]
    assert explain.check_cam(viz.network, None) == prefix + "out_relu"
    marked = [line.split()[1] for line in layers.describe_layers(viz.network) if line.endswith("<- block output")]
    assert prefix + "block_2_add" in marked and all(path.startswith(prefix) for path in marked)
    photo = np.full((96, 96, 3), 99, np.uint8)
    assert viz.maps(photo, base.name)[base.name].shape == (3, 3, 1280)  # the nested model itself, as a layer
    assert [heatmap.shape for heatmap in viz.grad_cam(photo, top=1).values()] == [(3, 3)]

    vgg16, vgg19 = (getattr(keras.applications, name)(weights=None, include_top=False, input_shape=(32, 32, 3))
                    for name in ("VGG16", "VGG19"))  # a VGG19 has every default layer of a VGG16 too
    assert models.built_in_architecture(vgg16) is deepviz.MODELS["vgg16"]
    assert models.built_in_architecture(vgg19) is deepviz.MODELS["vgg19"]

    small = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255, name="scale"),
                              keras.layers.Conv2D(4, 3, name="conv_a"), keras.layers.Conv2D(4, 3, name="conv_b")])
    assert deepviz.Visualizer(small).default_layers == ["conv_a", "conv_b"]  # not the rescaled photo


def test_nested_maps_and_predictions_come_from_one_pass_and_equal_keras(classifier):
    model, path = classifier
    rng = np.random.default_rng(0)
    batch = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    network, outputs = own_maps(path, ["small_cnn/conv_a", "small_cnn/conv_b", "probs"], batch)
    inner = model.get_layer("small_cnn")
    for layer in ("conv_a", "conv_b"):
        expected = keras.Model(inner.input, inner.get_layer(layer).output).predict_on_batch(batch)
        np.testing.assert_allclose(outputs[f"small_cnn/{layer}"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs[forward.OUTPUT_KEY], model.predict_on_batch(batch), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["probs"], outputs[forward.OUTPUT_KEY])
    assert network.input_size == (32, 32)
    assert network.class_names == ["class_0", "class_1", "class_2", "class_3"]


def test_a_nested_sequential_model_and_a_full_model_h5(tmp_path):
    keras.utils.set_random_seed(5)
    inner = keras.Sequential([keras.Input((24, 24, 3)), keras.layers.Conv2D(6, 3, name="seq_conv"),
                              keras.layers.ReLU(name="seq_relu")], name="features")
    inputs = keras.Input((24, 24, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inner(inputs)))
    model = keras.Model(inputs, outputs)
    path = save(model, tmp_path / "legacy_model.h5")
    batch = np.random.default_rng(1).uniform(0, 1, (1, 24, 24, 3)).astype(np.float32)
    _, outputs = own_maps(path, ["features/seq_relu"], batch, preprocess="unit")
    expected = inner.get_layer("seq_relu")(inner.get_layer("seq_conv")(batch))  # the layers, applied by hand
    np.testing.assert_allclose(outputs["features/seq_relu"], keras.ops.convert_to_numpy(expected),
                               rtol=1e-5, atol=1e-6)


def test_own_model_from_the_command_line_with_labels(run, classifier, tmp_path):
    _, path = classifier
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\nfish\n")
    status, out, err = run(SAMPLE_PHOTO, "--model", path, "--labels", labels, "--preprocess", "unit", "--quiet",
                           "--json", "--out", tmp_path)
    assert status == 0, err
    lines = out.splitlines()
    assert json.loads((tmp_path / "grace_hopper.json").read_text())["settings"]["preprocess"] == "unit"
    import re
    names = [re.fullmatch(PREDICTION_LINE, line).group(2) for line in lines[:3]]
    assert set(names) <= {"cat", "dog", "bird", "fish"} and len(set(names)) == 3
    assert [line.split(" (")[0] for line in lines[3:-2]] == ["small_cnn/conv_a", "small_cnn/conv_b"]
    assert lines[-2:] == [f"wrote {tmp_path / 'grace_hopper.png'}", f"wrote {tmp_path / 'grace_hopper.json'}"]


def test_labels_must_match_the_number_of_classes(run, classifier, tmp_path):
    _, path = classifier
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    status, _, err = run(SAMPLE_PHOTO, "--model", path, "--labels", labels, "--quiet")
    assert status == 2
    assert err == (f"deepviz: error: --labels {labels}: 2 names, but transfer.keras has 4 classes; "
                   "give one name per class, one per line\n")


@pytest.mark.parametrize(
    "head, reason",
    [
        (lambda x: keras.layers.Dense(16, name="embedding")(x), "shape (16,), does not end in a softmax"),
        (lambda x: keras.layers.Dense(1, name="score")(x), "shape (1,), is not a class vector"),
    ],
)
def test_a_model_without_a_class_vector_is_drawn_without_predictions(run, tmp_path, head, reason):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(small_cnn()(inputs))
    path = save(keras.Model(inputs, head(x)), tmp_path / "regressor.keras")
    status, out, err = run(SAMPLE_PHOTO, "--model", path, "--quiet", "--layers", "small_cnn/conv_b",
                           "--out", tmp_path)
    assert status == 0, err
    assert out.splitlines()[0] == f"predictions unavailable: the output of regressor.keras, {reason}" + (
        "; pass --labels FILE if it is a class vector" if "softmax" in reason else "")


def test_weights_do_not_apply_to_a_saved_model(run, classifier):
    _, path = classifier
    status, _, err = run(SAMPLE_PHOTO, "--model", path, "--weights", "none")
    assert status == 2
    assert err == f"deepviz: error: --weights applies to the built-in models; {path} carries its own weights\n"


def test_a_file_that_is_not_a_saved_model(run, tmp_path):
    path = tmp_path / "broken.keras"
    path.write_text("not a zip")
    status, _, err = run(SAMPLE_PHOTO, "--model", path, "--quiet")
    assert status == 1
    assert err.startswith(f"deepviz: error: --model {path}: Keras could not load it as a saved model (")


def test_preprocessing_choices_scale_pixels_as_named():
    pixels = np.array([[[0.0, 127.5, 255.0]]], dtype=np.float32)
    np.testing.assert_allclose(images.PREPROCESSING["inception"](pixels.copy()), [[[-1, 0, 1]]])
    np.testing.assert_allclose(images.PREPROCESSING["unit"](pixels.copy()), [[[0, 0.5, 1]]])
    np.testing.assert_allclose(images.PREPROCESSING["none"](pixels.copy()), pixels)
    red = np.array([[[255.0, 0.0, 0.0]]], dtype=np.float32)
    np.testing.assert_allclose(images.PREPROCESSING["caffe"](red.copy()), [[[-103.939, -116.779, 131.32]]],
                               atol=1e-3)  # BGR, ImageNet mean removed
    np.testing.assert_allclose(images.PREPROCESSING["torch"](red.copy()),
                               [[[(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]]], atol=1e-4)


def test_a_built_in_models_backbone_weights_draw_without_predictions(run, tmp_path):
    keras.backend.clear_session()
    backbone = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(224, 224, 3))
    weights = tmp_path / "mobilenet_v2_notop.weights.h5"
    backbone.save_weights(str(weights))
    status, out, err = run(SAMPLE_PHOTO, "--model", "mobilenet_v2", "--weights", weights, "--quiet",
                           "--out", tmp_path)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "predictions unavailable: weights mobilenet_v2_notop.weights.h5 have no classifier head"
    assert [line.split(" (")[0] for line in lines[1:-1]] == list(deepviz.MODELS["mobilenet_v2"].default_layers)


# --- Every way a Keras model can end in a softmax ---------------------------------
def two_class_features():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="features")(inputs)
    return inputs, keras.layers.GlobalAveragePooling2D()(x)


def softmax_layer_model():
    inputs, x = two_class_features()
    return keras.Model(inputs, keras.layers.Softmax(name="chance")(keras.layers.Dense(2)(x)))


def softmax_activation_model():
    inputs, x = two_class_features()
    return keras.Model(inputs, keras.layers.Activation("softmax", name="squash")(keras.layers.Dense(2)(x)))


def dense_softmax_sequential():
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2),
                             keras.layers.Softmax()])


def nested_softmax_model():
    inner_inputs = keras.Input((4,))
    head = keras.Model(inner_inputs, keras.layers.Softmax()(keras.layers.Dense(2)(inner_inputs)), name="head")
    inputs, x = two_class_features()
    return keras.Model(inputs, head(x))


def dense_with_softmax_model():
    inputs, x = two_class_features()
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="anything")(x))


@pytest.mark.parametrize("build", [softmax_layer_model, softmax_activation_model, dense_softmax_sequential,
                                   nested_softmax_model, dense_with_softmax_model])
def test_a_model_ending_in_a_softmax_is_a_classifier(run, tmp_path, build):
    keras.utils.set_random_seed(5)
    path = save(build(), tmp_path / "model.keras")
    status, out, err = run(SAMPLE_PHOTO, "--model", path, "--top", 2, "--cam", "--quiet", "--out", tmp_path)
    assert status == 0, err
    import re
    assert sorted(re.fullmatch(PREDICTION_LINE, line).group(2) for line in out.splitlines()[:2]) == [
        "class_0", "class_1"]
    assert models.output_activation(keras.models.load_model(path)) == "softmax"


def test_a_model_ending_in_logits_is_not_a_classifier(run, tmp_path):
    inputs, x = two_class_features()
    path = save(keras.Model(inputs, keras.layers.Dense(2, name="logits")(x)), tmp_path / "logits.keras")
    status, out, err = run(SAMPLE_PHOTO, "--model", path, "--top", 2, "--quiet", "--out", tmp_path)
    assert status == 0, err
    assert out.splitlines()[0] == ("predictions unavailable: the output of logits.keras, shape (2,), does not end "
                                   "in a softmax; pass --labels FILE if it is a class vector")
    status, _, err = run(SAMPLE_PHOTO, "--model", path, "--cam", "--quiet", "--out", tmp_path)
    assert status == 2 and err == ("deepviz: error: --cam explains predictions, and there are none: the output of "
                                   "logits.keras, shape (2,), does not end in a softmax; pass --labels FILE if it "
                                   "is a class vector. Leave --cam out\n")


def test_a_saved_model_is_built_with_its_own_weights(run, classifier, tmp_path):
    _, path = classifier
    status, _, err = run(SAMPLE_PHOTO, "--model", path, "--json", "--out", tmp_path / "figure.png")
    assert status == 0, err
    assert err.splitlines()[0] == f"deepviz: building {path} (weights: its own weights)"
    import json
    assert json.loads((tmp_path / "figure.json").read_text())["weights"] == "its own weights"


def test_labels_may_come_from_a_pipe(tmp_path):
    fifo = tmp_path / "labels"
    os.mkfifo(fifo)  # as the shell's --labels <(printf 'a\nb\n') gives
    writer = threading.Thread(target=lambda: fifo.write_text("cat\ndog\n"), daemon=True)  # never holds pytest
    writer.start()
    models.check_readable_file(fifo, "--labels")
    assert models.read_labels(fifo) == ["cat", "dog"]
    writer.join()
