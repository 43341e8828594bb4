"""Explaining the prediction: Grad-CAM for each top class, and a whole-layer PCA summary."""

import dataclasses
import json
import re

import numpy as np
import pytest
from PIL import Image

import deepviz
from _deepviz import analysis, backend, explain, figure, forward, models, mosaic, output, stats
from conftest import SAMPLE_PHOTO, half_and_half_model, pixels_of

keras = backend.import_keras()


def left_right_model(path):
    """Class 0 depends only on the red in the left half of the image, class 1 only on the blue in the right half."""
    half_and_half_model(right_colour=2).save(str(path))
    return path


def red_left_blue_right(path):
    image = Image.new("RGB", (64, 64), (255, 0, 0))
    image.paste((0, 0, 255), (32, 0, 64, 64))
    image.save(path)
    return path


def test_grad_cam_puts_each_class_where_it_is_decided(run, tmp_path):
    model = left_right_model(tmp_path / "left_right.keras")
    photo = red_left_blue_right(tmp_path / "photo.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("left\n../right/side\n")  # a name that would be folders in the .npz (a zip file)
    out = tmp_path / "figure.png"
    status, stdout, err = run(photo, "--model", model, "--labels", labels, "--preprocess", "unit", "--cam",
                              "--cam-layer", "maps", "--top", 2, "--layers", "maps", "--save-arrays",
                              "--quiet", "--out", out)
    assert status == 0, err
    arrays = np.load(out.with_suffix(".npz"))
    assert sorted(arrays.files) == ["cam/.._right_side", "cam/left", "maps", "predictions"]
    for name, side in (("left", slice(0, 16)), (".._right_side", slice(16, 32))):
        heatmap = arrays[f"cam/{name}"]
        assert heatmap.shape == (32, 32) and heatmap.max() == pytest.approx(1.0)
        assert heatmap[:, side].sum() / heatmap.sum() > 0.9, name
    figure_titles = stdout  # the figure is checked below through draw_figure
    assert "wrote" in figure_titles


def test_two_classes_of_one_name_keep_their_own_heatmaps(run, tmp_path):
    model = left_right_model(tmp_path / "left_right.keras")
    photo = red_left_blue_right(tmp_path / "photo.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("side\nside\n")  # as ImageNet's two cranes: one name, two classes
    out = tmp_path / "figure.png"
    status, _, err = run(photo, "--model", model, "--labels", labels, "--preprocess", "unit", "--cam", "--cam-layer",
                         "maps", "--top", 2, "--layers", "maps", "--save-arrays", "--json", "--quiet", "--out", out)
    assert status == 0, err
    arrays = np.load(out.with_suffix(".npz"))
    assert sorted(name for name in arrays.files if name.startswith("cam/")) == ["cam/side_0", "cam/side_1"]
    assert arrays["cam/side_0"][:, :16].sum() > 0.9 * arrays["cam/side_0"].sum()  # class 0: the left half
    assert arrays["cam/side_1"][:, 16:].sum() > 0.9 * arrays["cam/side_1"].sum()
    record = json.loads(out.with_suffix(".json").read_text())
    assert sorted(p["index"] for p in record["predictions"]) == [0, 1]
    assert (record["settings"]["cam"], record["settings"]["cam_layer"]) == (True, "maps")
    assert record["settings"]["cam_of"] == "logits"  # the input of the model's Softmax layer
    viz = deepviz.Visualizer(str(model), preprocess="unit", labels=["side", "side"])
    assert sorted(viz.grad_cam(str(photo), layer="maps", top=2)) == ["side_0", "side_1"]
    with pytest.raises(deepviz.UsageError, match=r"classes: 2 classes are named 'side' \(indices 0, 1\); name it by"):
        viz.grad_cam(str(photo), classes=["side"], layer="maps")
    assert list(viz.grad_cam(str(photo), classes=["side_1", 0], layer="maps")) == ["side_1", "side_0"]  # keys back in


def test_imagenet_classes_of_one_name_are_keyed_with_their_index():
    names = models.load_class_names()
    assert forward.class_keys(names, [134, 517, 638, 639, 1]) == [
        "crane_134", "crane_517", "maillot_638", "maillot_639", "goldfish"]


def reference_grad_cam(model, layer, image_batch, class_index):
    """Grad-CAM the textbook way (keras.io): gradient of the class score before the softmax w.r.t. the layer's maps."""
    import tensorflow as tf

    scores_model = keras.models.clone_model(model)
    scores_model.set_weights(model.get_weights())
    scores_model.layers[-1].activation = None  # keras.io: "Remove last layer's softmax"
    grad_model = keras.Model(scores_model.input, [scores_model.get_layer(layer).output, scores_model.output])
    with tf.GradientTape() as tape:
        maps, scores = grad_model(image_batch)
        score = scores[:, class_index]
    gradients = tape.gradient(score, maps)[0].numpy()
    weights = gradients.mean(axis=(0, 1))
    heatmap = np.maximum(maps[0].numpy() @ weights, 0)
    return heatmap / heatmap.max()


def small_classifier(head_scale=1.0):
    """Two convolutions, pooling and a Dense softmax over 5 classes; `head_scale` sharpens its probabilities."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="last_conv")(x)
    dense = keras.layers.Dense(5, activation="softmax")
    outputs = dense(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    dense.kernel.assign(dense.kernel * head_scale)
    return model


def grad_cams_of(model, classes, batch, labels=None):
    network = models.network_from_model(model, "model", "model", labels=labels)
    maps = forward.run_forward_pass(forward.build_feature_model(network, ["last_conv"]), batch)["last_conv"][0]
    return explain.grad_cam(explain.build_cam_head(network, "last_conv"), maps, classes)


SMALL_BATCH = np.random.default_rng(2).uniform(-1, 1, (1, 24, 24, 3)).astype(np.float32)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the reference uses tf.GradientTape")
def test_grad_cam_equals_a_plain_reference_computation(tmp_path):
    path = tmp_path / "small.keras"
    small_classifier().save(str(path))
    network = models.build_network(models.NetworkChoice(model=str(path)))
    maps = forward.run_forward_pass(forward.build_feature_model(network, ["last_conv"]), SMALL_BATCH)["last_conv"][0]
    head = explain.build_cam_head(network, "last_conv")
    heatmaps = explain.grad_cam(head, maps, [3, 0])
    for heatmap, class_index in zip(heatmaps, [3, 0]):
        expected = reference_grad_cam(network.model, "last_conv", SMALL_BATCH, class_index)
        np.testing.assert_allclose(heatmap, expected, atol=1e-5)


def test_grad_cam_of_a_certain_prediction_still_shows_its_evidence():
    model = small_classifier(head_scale=2000.0)
    probabilities = keras.ops.convert_to_numpy(model(SMALL_BATCH))[0]
    top = int(probabilities.argmax())
    assert probabilities[top] == 1.0  # float32 rounds it to certainty: its probability's gradient is 0 everywhere
    heatmap = grad_cams_of(model, [top], SMALL_BATCH)[0]
    assert heatmap.max() == pytest.approx(1.0)
    np.testing.assert_allclose(heatmap, grad_cams_of(small_classifier(), [top], SMALL_BATCH)[0], atol=1e-5)
    assert model.layers[-1].activation.__name__ == "softmax"  # the model's own layer is left as it was


@pytest.mark.parametrize("ending", ["softmax layer", "activation layer", "ops.softmax", "logits"])
def test_grad_cam_is_the_same_however_the_model_ends_in_its_softmax(ending):
    fused = small_classifier()
    dense = fused.layers[-1]
    scores = keras.layers.Dense(5)(fused.layers[-2].output)
    scores_layer = scores._keras_history[0]
    scores_layer.set_weights(dense.get_weights())
    outputs = {"softmax layer": lambda: keras.layers.Softmax()(scores),
               "activation layer": lambda: keras.layers.Activation("softmax")(scores),
               "ops.softmax": lambda: keras.ops.softmax(scores),
               "logits": lambda: scores}[ending]()
    separate = keras.Model(fused.input, outputs)
    labels = [f"class_{i}" for i in range(5)]
    expected = grad_cams_of(fused, [0, 1, 2, 3, 4], SMALL_BATCH)
    np.testing.assert_allclose(grad_cams_of(separate, [0, 1, 2, 3, 4], SMALL_BATCH, labels), expected, atol=1e-5)

def test_grad_cam_row_in_the_figure_and_default_layer(run, random_weights_file, tmp_path):
    out = tmp_path / "figure.png"
    status, stdout, err = run(SAMPLE_PHOTO, "--weights", random_weights_file, "--cam", "--layers", "mixed3",
                              "--save-arrays", "--quiet", "--out", out)
    assert status == 0, err
    names = [line.split()[1] for line in stdout.splitlines()[:3]]
    arrays = np.load(out.with_suffix(".npz"))
    top = np.argsort(-arrays["predictions"], kind="stable")[:3]
    class_names = models.load_class_names()
    assert [class_names[i] for i in top] == names
    keys = forward.class_keys(class_names, top)  # the names, "maillot_639" where two classes share one
    assert sorted(name for name in arrays.files if name.startswith("cam/")) == sorted(f"cam/{k}" for k in keys)
    assert all(arrays[f"cam/{key}"].shape == (8, 8) for key in keys)  # mixed10, the default CAM layer
    with Image.open(out) as figure:
        assert figure.height > 1000


def test_grad_cam_needs_predictions_and_spatial_maps(run, backbone_weights, tmp_path):
    status, _, err = run(SAMPLE_PHOTO, "--weights", backbone_weights, "--cam", "--quiet", "--out", tmp_path)
    assert status == 2
    assert err == ("deepviz: error: --cam explains predictions, and there are none: weights "
                   "inception_v3_2015_notop.weights.h5 have no classifier head. Leave --cam out, or use weights "
                   "with a classifier head (--weights imagenet)\n")


def test_grad_cam_with_headless_weights_is_refused_before_the_network_is_built(run, tmp_path, monkeypatch):
    import h5py

    weights = tmp_path / "backbone.weights.h5"
    with h5py.File(weights, "w") as file:  # as Keras 3 saves a model without its Dense head
        file.create_group("layers/conv2d/vars")
    monkeypatch.setattr(models, "build_network_once", lambda *args: pytest.fail("the network was built"))
    status, _, err = run(SAMPLE_PHOTO, "--weights", weights, "--cam", "--out", tmp_path)
    assert status == 2
    assert err == ("deepviz: error: --cam explains predictions, and there are none: weights backbone.weights.h5 have "
                   "no classifier head. Leave --cam out, or use weights with a classifier head (--weights imagenet)\n")


def test_grad_cam_layer_must_have_spatial_maps(run, tmp_path):
    status, _, err = run(SAMPLE_PHOTO, "--weights", "none", "--cam", "--cam-layer", "avg_pool", "--quiet",
                         "--out", tmp_path)
    assert status == 2
    assert err.startswith("deepviz: error: Grad-CAM layer avg_pool: expected a layer with spatial maps "
                          "(height, width, channels), and its output is (2048,)")


def residual_ending_model():
    """A classifier whose last maps are added to the block's input by a bare `+`: no layer after the addition."""
    inputs = keras.Input((32, 32, 3))
    stem = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="stem")(inputs)
    inner = keras.layers.Conv2D(4, 3, padding="same", name="inner")(stem)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(stem + inner)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="classes")(pooled))


def test_grad_cam_explains_the_last_layer_it_can_where_a_connection_goes_around_the_last_maps():
    viz = deepviz.Visualizer(residual_ending_model(), preprocess="unit")
    assert viz.default_layers[-1] == "inner"  # the output depends on it and on stem, around it
    photo = np.full((32, 32, 3), 128, np.uint8)
    assert [heatmap.shape for heatmap in viz.grad_cam(photo, top=1).values()] == [(15, 15)]
    assert viz.prepare(analysis.Analysis(layers=("inner",), cam=True)).cam_layer == "stem"
    with pytest.raises(deepviz.UsageError) as refused:
        viz.grad_cam(photo, layer="inner")
    assert str(refused.value) == ("Grad-CAM layer inner: a connection goes around this layer to the output, so the "
                                  "output does not depend on its maps alone; choose a layer that every path passes "
                                  "through, such as stem")


def test_grad_cam_of_an_early_layer_of_a_model_of_any_input_size():
    keras.utils.set_random_seed(8)
    inputs = keras.Input((None, None, 3))  # sizes free: deepviz feeds it 224 x 224
    x = keras.layers.Conv2D(8, 3, name="early")(inputs)
    x = keras.layers.MaxPooling2D(3)(keras.layers.Conv2D(8, 5, strides=2)(x))  # needs more than a few pixels
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    viz = deepviz.Visualizer(model, labels=["a", "b", "c"])
    heatmaps = viz.grad_cam(np.zeros((50, 60, 3), np.uint8), layer="early")
    assert sorted(heatmaps) == ["a", "b", "c"] and {h.shape for h in heatmaps.values()} == {(222, 222)}


def test_pca_summary_colours_pixels_by_their_channel_mixture():
    height, width = 6, 8
    maps = np.zeros((height, width, 50), np.float32)
    maps[:, :4, :25] = 1.0  # the left half fires one group of channels
    maps[:, 4:, 25:] = 1.0  # the right half the other
    image = stats.principal_components_image(maps)
    assert image.shape == (6, 8, 3)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert np.allclose(image[:, :4], image[0, 0]) and np.allclose(image[:, 4:], image[0, 7])
    assert not np.allclose(image[0, 0], image[0, 7])  # the two mixtures get different colours
    assert np.isfinite(stats.principal_components_image(np.zeros((3, 3, 4), np.float32))).all()


def test_pca_summary_is_the_first_tile_of_each_panel(run, tmp_path):
    rng = np.random.default_rng(0)
    layer = stats.summarize_layer("mixed10", rng.random((8, 8, 2048), np.float32), 16, "mean", summary="pca")
    assert layer.summary_image.shape == (8, 8, 3)
    style = figure.FigureStyle("photo", "channel", "viridis", 100)
    drawn = figure.draw_figure(Image.new("RGB", (30, 30)), [layer], style)
    painted = drawn.axes[1].get_images()[0].get_array()
    grid = mosaic.tile_grid(17, (8, 8), painted.shape[1])  # 16 tiles and the summary, 8x8 each
    middles = ((np.arange(8) + 0.5) * grid.tile_width / 8).astype(int)
    first_slot = painted[np.ix_(middles[3:], middles)][..., :3]  # under its "PCA" label
    assert np.abs(first_slot.astype(int) - np.round(layer.summary_image[3:] * 255)).max() <= 1  # in its own colours
    assert "first tile: the first 3 principal components" in drawn.axes[1].get_title()
    status, _, err = run(SAMPLE_PHOTO, "--weights", "none", "--summary", "pca", "--layers", "mixed10",
                         "--quiet", "--out", tmp_path)
    assert status == 0, err


# --- Heatmaps that can be read on any photo -------------------------------------------
def saturation(pixels: np.ndarray) -> float:
    """How far from grey the pixels are, on average: heat shows as colour over the grey photo."""
    rgb = pixels[..., :3].astype(float)
    return float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean())


def test_heat_is_drawn_over_the_photo_in_grey_and_shows_where_each_class_is(tmp_path):
    photo = Image.new("RGB", (64, 64), (255, 0, 0))
    photo.paste((0, 255, 0), (32, 0, 64, 64))  # red left, green right: the photo's own colours are saturated
    model = half_and_half_model(right_colour=1, scores=(5.0, 4.0))  # red decides class "red", green "green"
    viz = deepviz.Visualizer(model, preprocess="unit", labels=["red", "green"])
    drawn = viz.figure(np.asarray(photo), layers=["maps"], cam=True, cam_layer="maps", top=2, dpi=60)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(drawn)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())
    height = pixels.shape[0]
    panels = [axes for axes in drawn.axes if re.match(r"\d\. ", axes.get_title())]
    assert [axes.get_title().split()[1] for axes in panels] == ["red", "green"]  # the winner first
    sides = []
    for axes in panels:
        x0, y0, x1, y1 = np.round(axes.get_window_extent().extents).astype(int)
        panel = pixels[height - y1:height - y0, x0:x1]
        middle = panel.shape[1] // 2
        sides.append((saturation(panel[:, :middle - 2]), saturation(panel[:, middle + 2:])))
    (red_left, red_right), (green_left, green_right) = sides
    assert red_left > 3 * red_right + 10  # the winning class is hot on the left, grey on the right
    assert green_right > 3 * green_left + 10  # the other class the other way round
    colorbar = [axes for axes in drawn.axes if axes.get_ylabel() == "heat"]
    assert len(colorbar) == 1 and colorbar[0].get_ylim() == (0.0, 1.0)
    assert [label.get_text() for label in colorbar[0].get_yticklabels()] == ["0", "half", "class max"]
    heading = [text.get_text() for text in drawn.texts]
    assert heading == ["Grad-CAM at maps: where the photo drives each of its top classes; heat as a fraction of "
                       "the class's largest value"]


def test_a_class_with_no_positive_evidence_says_so():
    heatmap = np.zeros((4, 4), np.float32)
    style = figure.FigureStyle("photo", "channel", "viridis", 50, cam_layer="mixed10")
    drawn = figure.draw_figure(Image.new("RGB", (40, 40), (90, 90, 90)), [], style,
                               cams=[("beagle", 0.6, np.eye(4, dtype=np.float32)),
                                     ("Labrador_retriever", 0.237, heatmap)])
    titles = [axes.get_title().replace("\n", " ") for axes in drawn.axes]
    assert "1. beagle 60.0%" in titles
    assert "2. Labrador_retriever 23.7%: no positive evidence" in titles
    assert "at mixed10" in drawn.texts[0].get_text()


def test_grad_cam_draws_the_first_twenty_classes_and_says_how_many_more():
    cams = [(f"class_{rank}", 0.01, np.eye(4, dtype=np.float32)) for rank in range(23)]
    style = figure.FigureStyle("photo", "channel", "viridis", 30, cam_layer="mixed10")
    drawn = figure.draw_figure(Image.new("RGB", (60, 40), (90, 90, 90)), [], style, cams=cams)
    panels = [axes for axes in drawn.axes if axes.get_images() and re.match(r"\d+\. ", axes.get_title())]
    assert len(panels) == figure.CAM_PANELS_MAX == 20
    assert "the first 20 of 23 classes drawn" in drawn.texts[0].get_text().replace("\n", " ")
    cams = [(f"class_{rank}", 0.001, np.eye(4, dtype=np.float32)) for rank in range(1000)]
    for dpi in (30, 100):
        lines = figure.draw_figure(Image.new("RGB", (60, 40)), [], dataclasses.replace(style, dpi=dpi),
                                   cams=cams).texts[0].get_text().split("\n")
        assert lines[-1].endswith("the first 20 of 1000 classes drawn")  # wrapped between clauses, not words
        assert all(line.endswith(";") for line in lines[:-1])


def test_many_classes_take_rows_of_five_panels_beside_one_colour_bar():
    cams = [(f"class_{rank}", 0.1, np.eye(4, dtype=np.float32)) for rank in range(7)]
    style = figure.FigureStyle("photo", "channel", "viridis", 50, cam_layer="mixed10")
    drawn = figure.draw_figure(Image.new("RGB", (60, 40), (90, 90, 90)), [], style, cams=cams)
    panels = [axes for axes in drawn.axes if axes.get_title().startswith(tuple(f"{rank}. " for rank in range(1, 8)))]
    tops = sorted({round(axes.bbox.y1) for axes in panels}, reverse=True)
    assert [sum(round(axes.bbox.y1) == top for axes in panels) for top in tops] == [5, 2]
    widths = {round(axes.bbox.width) for axes in panels}
    assert len(widths) == 1  # the second row's panels as wide as the first's
    colorbar, = [axes for axes in drawn.axes if axes.get_ylabel() == "heat"]
    assert colorbar.bbox.y1 == pytest.approx(max(axes.bbox.y1 for axes in panels), abs=1)
    assert colorbar.bbox.y0 == pytest.approx(min(axes.bbox.y0 for axes in panels), abs=1)


@pytest.mark.parametrize("photo_size, columns", [((600, 400), 5), ((4000, 400), 1), ((2000, 500), 3)])
def test_a_wide_photo_takes_fewer_panels_to_a_row_each_tall_enough_to_read(photo_size, columns):
    cams = [(f"class_{rank}", 0.1, np.eye(4, dtype=np.float32)) for rank in range(5)]
    style = figure.FigureStyle("photo", "channel", "viridis", 100, cam_layer="mixed10")
    drawn = figure.draw_figure(Image.new("RGB", photo_size, (90, 90, 90)), [], style, cams=cams)
    panels = [axes for axes in drawn.axes if re.match(r"\d\. class_", axes.get_title())]
    tops = sorted({round(axes.bbox.y1) for axes in panels}, reverse=True)
    assert sum(round(axes.bbox.y1) == tops[0] for axes in panels) == columns
    assert min(axes.bbox.height for axes in panels) >= figure.CAM_MIN_PANEL_HEIGHT_INCHES * 100 - 1


def test_a_heatmap_is_painted_at_its_panel_size_as_heat_over_grey():
    photo = Image.new("RGB", (90, 60), (200, 40, 40))
    heatmap = np.zeros((4, 4), np.float32)
    heatmap[:, 2:] = 1.0  # hot on the right
    style = figure.FigureStyle("photo", "channel", "viridis", 100, cam_layer="maps")
    drawn = figure.draw_figure(photo, [], style, cams=[("right", 0.9, heatmap)])
    panel = drawn.axes[1]
    painted = panel.get_images()[0].get_array()
    assert painted.shape[1::-1] == tuple(np.round(panel.bbox.size).astype(int))  # drawn 1:1, not resampled
    grey = np.asarray(photo.convert("L"))[0, 0]
    hot = np.asarray(figure.cam_colormap()(1.0, bytes=True)[:3], float)
    expected = figure.CAM_MAX_OPACITY * hot + (1 - figure.CAM_MAX_OPACITY) * grey
    np.testing.assert_allclose(painted[painted.shape[0] // 2, -1, :3], expected, atol=1)
    assert (painted[:, 0, :3] == grey).all()  # no heat: the photo in grey
    colorbar, = [axes for axes in drawn.axes if axes.get_ylabel() == "heat"]
    bar = pixels_of(colorbar, np.asarray(output.render_figure(drawn, 100)))[:, :, :3].astype(int)
    assert np.abs(bar[-4, bar.shape[1] // 2] - 128).max() <= 3  # its 0 end: a mid-grey pixel under no heat
    top = figure.CAM_MAX_OPACITY * hot + (1 - figure.CAM_MAX_OPACITY) * 128
    assert np.abs(bar[3, bar.shape[1] // 2] - top).max() <= 4  # its top: the class's max heat over that grey


@pytest.mark.parametrize("nesting", ["head", "head in a head", "sequential"])
def test_grad_cam_reaches_the_scores_in_a_model_nested_at_the_end(nesting):
    fused = small_classifier()
    dense = fused.layers[-1]
    head = keras.Sequential([keras.Input((8,)), dense], name="head")  # pooling's output -> Dense softmax, nested
    if nesting == "head in a head":
        head = keras.Sequential([keras.Input((8,)), head], name="outer_head")
    if nesting == "sequential":  # as in transfer learning: Sequential([backbone, head])
        backbone = keras.Model(fused.input, fused.layers[-2].output, name="backbone")
        nested = keras.Sequential([keras.Input((24, 24, 3)), backbone, head])
        layer = "backbone/last_conv"
    else:
        nested = keras.Model(fused.input, head(fused.layers[-2].output))
        layer = "last_conv"
    network = models.network_from_model(nested, "model", "model")
    maps = forward.run_forward_pass(forward.build_feature_model(network, [layer]), SMALL_BATCH)[layer][0]
    heatmaps = explain.grad_cam(explain.build_cam_head(network, layer), maps, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(heatmaps, grad_cams_of(fused, [0, 1, 2, 3, 4], SMALL_BATCH), atol=1e-5)


@pytest.mark.parametrize("output", ["dense softmax", "float32 softmax"])
def test_grad_cam_under_mixed_precision_matches_float32(output):
    expected = grad_cams_of(small_classifier(), [0, 3], SMALL_BATCH)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = small_classifier()
        if output == "float32 softmax":  # as Keras's mixed precision guide ends a model
            dense = model.layers[-1]
            scores = keras.layers.Dense(5, name="scores")(model.layers[-2].output)
            scores._keras_history[0].set_weights(dense.get_weights())
            model = keras.Model(model.input, keras.layers.Activation("softmax", dtype="float32")(scores))
        heatmaps = grad_cams_of(model, [0, 3], SMALL_BATCH)
    finally:
        keras.config.set_dtype_policy(policy)
    np.testing.assert_allclose(heatmaps, expected, atol=0.02)  # float16 maps


def test_grad_cam_says_where_it_could_only_differentiate_the_probabilities():
    fused = small_classifier()
    scores = keras.layers.Dense(5)(fused.layers[-2].output)
    in_a_lambda = keras.Model(fused.input, keras.layers.Lambda(lambda z: keras.ops.softmax(z))(scores))
    viz = deepviz.Visualizer(in_a_lambda, preprocess="unit", labels=[f"class_{i}" for i in range(5)])
    photo = (SMALL_BATCH[0] * 127 + 128).astype(np.uint8)
    assert viz.prepare(analysis.Analysis(layers=(), cam=True, cam_layer="last_conv")).cam_head.scores == "output"
    drawn = viz.figure(photo, ["last_conv"], cam=True, cam_layer="last_conv", top=2)
    heading = drawn.texts[0].get_text().replace("\n", " ")
    assert "from the gradients of the model's output itself: no softmax or sigmoid found at its end" in heading
    plain = deepviz.Visualizer(fused, preprocess="unit").figure(photo, ["last_conv"], cam=True, cam_layer="last_conv")
    assert "gradients" not in plain.texts[0].get_text()
    einsum = keras.layers.EinsumDense("ab,bc->ac", output_shape=5, activation="softmax")  # a softmax not reached
    einsum_model = keras.Model(fused.input, einsum(fused.layers[-2].output))
    viz = deepviz.Visualizer(einsum_model, preprocess="unit")
    assert viz.prepare(analysis.Analysis(layers=(), cam=True, cam_layer="last_conv")).cam_head.scores == "probabilities"
    heading = viz.figure(photo, ["last_conv"], cam=True, cam_layer="last_conv").texts[0].get_text().replace("\n", " ")
    assert "from the probabilities' gradients: the scores before the softmax could not be reached" in heading


def test_grad_cam_differentiates_the_output_of_a_subclassed_model_at_the_end():
    class Head(keras.Model):
        def __init__(self, dense, **kwargs):
            super().__init__(**kwargs)
            self.dense = dense

        def call(self, features):
            return self.dense(features)

    fused = small_classifier()
    backbone = keras.Model(fused.input, fused.layers[-2].output, name="backbone")
    model = keras.Sequential([keras.Input((24, 24, 3)), backbone, Head(fused.layers[-1], name="head")])
    network = models.network_from_model(model, "model", "model", labels=[f"class_{i}" for i in range(5)])
    head = explain.build_cam_head(network, "backbone/last_conv")
    assert head.scores == "output"  # no graph to look into: its output as it is
    feature_model = forward.feature_model_for(model, ["backbone/last_conv"])
    maps = forward.run_forward_pass(feature_model, SMALL_BATCH)["backbone/last_conv"][0]
    of_the_output = keras.Model(feature_model.output["backbone/last_conv"], feature_model.output[forward.OUTPUT_KEY])
    np.testing.assert_allclose(explain.grad_cam(head, maps, [0, 1]),
                               explain.grad_cam(explain.CamHead(of_the_output, "output"), maps, [0, 1]), atol=1e-6)
