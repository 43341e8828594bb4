"""The main job end to end: weights, one forward pass, predictions, maps, figure, saving."""

import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from PIL import Image

import deepviz
from _deepviz import analysis, backend, cli, figure, forward, images, models, mosaic, output, stats, titles
from conftest import SAMPLE_PHOTO, deepviz_on_small_photos, pixels_of, run_cli

KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"
PREDICTION = re.compile(r"(\d+)\. (\S+) +(\d+\.\d\d)%")


def test_class_index_is_the_one_keras_checks():
    index = json.loads(models.CLASS_INDEX_PATH.read_text(encoding="utf-8"))
    assert hashlib.md5(json.dumps(index).encode()).hexdigest() == KERAS_CLASS_INDEX_MD5
    names = models.load_class_names()
    assert len(names) == 1000
    assert (names[0], names[207], names[999]) == ("tench", "golden_retriever", "toilet_tissue")


def test_printed_top3_equals_a_direct_keras_computation(run, random_weights_file, tmp_path):
    status, out, _ = run(SAMPLE_PHOTO, "--weights", random_weights_file, "--layers", "mixed3", "--out", tmp_path)
    assert status == 0
    printed = [PREDICTION.fullmatch(line).groups() for line in out.splitlines()[:3]]

    keras = backend.import_keras()
    keras.backend.clear_session()
    model = keras.applications.InceptionV3(weights=str(random_weights_file))
    image = keras.utils.load_img(SAMPLE_PHOTO, target_size=(299, 299), interpolation="bilinear")
    batch = keras.applications.inception_v3.preprocess_input(keras.utils.img_to_array(image)[None])
    probabilities = keras.ops.convert_to_numpy(model(batch, training=False))[0]
    names = models.load_class_names()
    expected = np.argsort(-probabilities)[:3]

    assert [name for _, name, _ in printed] == [names[i] for i in expected]
    assert [int(rank) for rank, _, _ in printed] == [1, 2, 3]
    for (_, _, percent), index in zip(printed, expected):
        assert float(percent) == pytest.approx(probabilities[index] * 100, abs=0.006)
    assert float(printed[0][2]) > float(printed[2][2])  # peaked, so the order is meaningful


def test_the_forward_pass_is_one_model_with_outputs_keyed_by_layer(random_weights_file):
    network = models.build_network(models.NetworkChoice(weights=str(random_weights_file)))
    feature_model = forward.build_feature_model(network, ["conv2d_1", "mixed3", "avg_pool"])
    assert sorted(feature_model.output.keys()) == [forward.OUTPUT_KEY, "avg_pool", "conv2d_1", "mixed3"]
    batch = images.preprocess(images.load_image(SAMPLE_PHOTO), network)[None]
    outputs = forward.run_forward_pass(feature_model, batch)
    assert outputs["mixed3"].shape == (1, 17, 17, 768)
    direct = backend.import_keras().Model(network.model.input, network.model.get_layer("mixed3").output)
    np.testing.assert_allclose(outputs["mixed3"], direct.predict_on_batch(batch), rtol=1e-4, atol=1e-5)


def test_layer_names_are_those_of_a_first_build_whatever_came_before():
    keras = backend.import_keras()
    keras.applications.InceptionV3(weights=None)  # a second build would rename conv2d_1 to conv2d_95
    model = models.build_model(deepviz.MODELS["inception_v3"], include_top=True)
    assert [layer.name for layer in model.layers[1:4]] == ["conv2d", "batch_normalization", "activation"]


def test_untrained_weights_are_labelled(run, tmp_path):
    status, out, _ = run(SAMPLE_PHOTO, "--weights", "none", "--layers", "mixed0", "--out", tmp_path / "f.png")
    assert status == 0
    assert out.splitlines()[0] == "untrained network (--weights none): these predictions are meaningless"
    network = models.build_network(models.NetworkChoice(weights="none"))
    title = figure.photo_title("x.jpg", images.load_image(SAMPLE_PHOTO), network, [("tench", 0.5)])
    assert "untrained network (random weights)" in title


def test_trained_backbone_has_no_predictions_but_real_maps(run, backbone_weights, tmp_path):
    status, out, err = run(SAMPLE_PHOTO, "--weights", backbone_weights, "--layers", "conv2d_1", "--out", tmp_path)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "predictions unavailable: weights inception_v3_2015_notop.weights.h5 have no classifier head"
    assert not any(PREDICTION.fullmatch(line) for line in lines)
    assert lines[-1] == f"wrote {tmp_path / 'grace_hopper.png'}"


def edge_correlations(weights, photo, layer="conv2d_1"):
    """Per channel: correlation of |map| with the photo's gradient magnitude at map size."""
    network = models.build_network(models.NetworkChoice(weights=str(weights)))
    feature_model = forward.build_feature_model(network, [layer])
    maps = forward.run_forward_pass(feature_model, images.preprocess(photo, network)[None])[layer][0]  # (147, 147, 32)
    height, width, channels = maps.shape
    grey = np.asarray(photo.convert("L").resize((width, height), Image.Resampling.BILINEAR), dtype=np.float64)
    edges = np.hypot(*np.gradient(grey)).ravel()
    return np.array([np.corrcoef(np.abs(maps[:, :, c]).ravel(), edges)[0, 1] for c in range(channels)])


def test_trained_early_maps_follow_the_photos_edges(backbone_weights, dog_photo):
    photo = images.load_image(dog_photo)
    trained = np.median(edge_correlations(backbone_weights, photo))
    untrained = np.median(edge_correlations("none", photo))
    assert trained > 0.2
    assert trained > untrained + 0.2


def summary(maps, max_maps=64, ranking="mean"):
    return stats.summarize_layer("layer", maps, max_maps, ranking)


def test_channels_are_ranked_and_capped():
    maps = np.zeros((4, 4, 5), np.float32)
    maps[..., 3] = 5.0
    maps[0, 0, 1] = 50.0  # highest max, low mean (50 / 16)
    maps[..., 4] = 1.0
    assert summary(maps, 2, "mean").channels.tolist() == [3, 1]
    assert summary(maps, 2, "max").channels.tolist() == [1, 3]
    assert summary(maps, None, "index").channels.tolist() == [0, 1, 2, 3, 4]
    kept = summary(maps, 2, "mean").maps
    assert kept.shape == (4, 4, 2)
    assert kept[..., 0].tolist() == maps[..., 3].tolist()


def test_layer_statistics_and_dead_channels():
    maps = np.zeros((2, 2, 3), np.float32)
    maps[..., 0] = [[0, 1], [2, 3]]
    maps[..., 2] = 7.0  # constant: dead
    layer = summary(maps)
    assert (layer.minimum, layer.maximum) == (0.0, 7.0)
    assert layer.mean == pytest.approx((6 + 28) / 12)
    assert layer.zeros == pytest.approx(5 / 12)
    assert layer.dead == 2  # channel 1 (all zero) and channel 2 (all seven)
    assert stats.format_layer_line(layer) == "layer (2, 2, 3): min 0 mean 2.833 max 7 zeros 41.7% dead 2"


def test_a_dead_channel_is_drawn_flat_never_nan():
    maps = np.zeros((3, 3, 2), np.float32)
    maps[..., 0] = np.arange(9).reshape(3, 3)
    maps[..., 1] = 4.2
    layer = summary(maps)
    for scale in mosaic.NORMALISATIONS.values():
        tiles = scale(layer.maps, layer).tiles
        assert np.isfinite(tiles).all()
    tiles = mosaic.scale_each_channel(layer.maps, layer).tiles
    assert tiles[..., list(layer.channels).index(1)].tolist() == [[0.0] * 3] * 3
    assert tiles[..., list(layer.channels).index(0)].max() == 1.0


def test_mosaic_keeps_each_tiles_true_aspect_and_masks_the_gaps():
    tiles = np.arange(5 * 20 * 3, dtype=np.float32).reshape(5, 20, 3)
    laid = mosaic.compose_mosaic(tiles, columns=2)
    gap = mosaic.TILE_GAP
    assert laid.shape == (2 * 5 + gap, 2 * 20 + gap)
    assert laid[:5, :20].tolist() == tiles[..., 0].tolist()
    assert laid[:5, 20 + gap:].tolist() == tiles[..., 1].tolist()
    assert laid[5 + gap:, :20].tolist() == tiles[..., 2].tolist()
    assert laid.mask[5, :].all() and laid.mask[:, 20].all()  # gaps
    assert laid.mask[5 + gap:, 20 + gap:].all()  # the empty fourth slot
    assert not laid.mask[:5, :20].any()


def draw(layers, norm="channel"):
    style = figure.FigureStyle("photo title", norm, "viridis", dpi=100)
    return figure.draw_figure(Image.new("RGB", (40, 30), "red"), layers, style)


def drawn_pixels(drawn) -> np.ndarray:
    return np.asarray(output.render_figure(drawn, drawn.dpi))


def test_figure_panels_titles_tiles_and_colour_bars():
    rng = np.random.default_rng(0)
    wide = stats.summarize_layer("wide", rng.random((6, 18, 768), np.float32), 64, "mean")
    small = stats.summarize_layer("small", rng.random((10, 10, 32), np.float32), 64, "index")
    vector = stats.summarize_layer("pool", rng.random(2048).astype(np.float32), 64, "mean")
    figure = draw([wide, small, vector])
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[0] == "photo title"
    assert "wide (6, 18, 768): 64 of 768 channels, ranked by mean activation" in titles[1]
    assert "small (10, 10, 32): all 32 channels;" in titles[3]
    assert "pool (2048,): all 2048 values (no spatial maps)" in titles
    tiles_axes, colorbar_axes = figure.axes[1], figure.axes[2]
    painted = tiles_axes.get_images()[0].get_array()
    assert painted.shape[1] / painted.shape[0] > 1  # grid of wide tiles
    assert tiles_axes.get_aspect() == 1.0  # no stretching
    assert painted.shape[1::-1] == tuple(np.round(tiles_axes.bbox.size).astype(int))  # painted at its drawn size
    np.testing.assert_array_equal(pixels_of(tiles_axes, drawn_pixels(figure)), painted[..., :3])  # drawn 1:1
    assert colorbar_axes.get_ylim() == (0.0, 1.0)  # per-channel scaling: the colour bar is 0..1 of each tile
    assert [t.get_text() for t in colorbar_axes.get_yticklabels()] == ["tile min", "tile max"]
    assert np.allclose(colorbar_axes.bbox.intervaly, tiles_axes.bbox.intervaly)  # as tall as the tiles, no taller


def test_tiles_are_painted_in_the_colour_map_enlarged_with_even_gaps_and_labels():
    import matplotlib

    tiles = np.zeros((2, 3, 3), np.float32)  # three 2x3 tiles
    tiles[0, 0, 0], tiles[1, 2, 1], tiles[:, :, 2] = 1.0, 0.5, 0.25
    scaled = mosaic.ScaledTiles(tiles, 0.0, 1.0, "", {})
    viridis = matplotlib.colormaps["viridis"]
    grid = mosaic.tile_grid(3, (2, 3), width=330)
    assert grid.tile_height * 3 == grid.tile_width * 2 and grid.gap >= 1  # the maps' aspect, a gap between
    plain = mosaic.paint_mosaic(scaled, grid, viridis, labels=[], label_pixels=None)
    assert plain.shape == (grid.height, 330, 4) and plain.dtype == np.uint8

    def cell(slot, row, column):  # the middle of a map cell, in painted pixels
        x, y = grid.corner(slot)
        return plain[y + int((row + 0.5) * grid.tile_height / 2), x + int((column + 0.5) * grid.tile_width / 3), :3]

    def colour(value):
        return list(viridis(value, bytes=True)[:3])

    assert cell(0, 0, 0).tolist() == colour(1.0) and cell(0, 0, 1).tolist() == colour(0.0)
    assert cell(1, 1, 2).tolist() == colour(0.5) and cell(2, 1, 1).tolist() == colour(0.25)
    x, y = grid.corner(1)
    white = [255, 255, 255]
    assert (plain[:grid.tile_height, x - grid.gap:x, :3] == white).all()  # the gap before the second tile
    assert (plain[:grid.tile_height, grid.columns * (grid.tile_width + grid.gap) - grid.gap:, :3] == white).all()
    labels = ["7", "1234", "42"]
    labelled = mosaic.paint_mosaic(scaled, grid, viridis, labels, mosaic.label_font_pixels(labels, grid))
    changed = (labelled != plain).any(axis=-1)
    for slot in range(3):
        x, y = grid.corner(slot)
        assert changed[y:y + 5, x:x + 5].any()  # a label in each tile's top-left corner
        far_corner = changed[y + grid.tile_height - 3:y + grid.tile_height, x + grid.tile_width - 3:x + grid.tile_width]
        assert not far_corner.any()
    widths = [np.nonzero(changed[:grid.tile_height, x:x + grid.tile_width].any(axis=0))[0].max()
              for x, _ in map(grid.corner, range(2))]
    assert widths[1] > 2 * widths[0]  # "1234" is wider than "7"


def test_a_tile_drawn_smaller_than_its_map_keeps_every_row_and_its_mean():
    maps = np.zeros((147, 147, 1), np.float32)
    maps[100, :, 0] = 1.0  # one bright row, which nearest-neighbour shrinking may drop
    shrunk = mosaic.resized_tiles(maps, 96, 96)
    assert shrunk.shape == (96, 96, 1)
    assert shrunk.max() > 0.5  # the row is there, spread over at most two drawn rows
    assert shrunk.mean() == pytest.approx(maps.mean(), rel=1e-5)  # each drawn pixel the mean of what it covers
    enlarged = mosaic.resized_tiles(np.arange(4, dtype=np.float32).reshape(2, 2, 1), 4, 4)[..., 0]
    assert enlarged.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]  # flat blocks


def test_a_value_that_overflowed_blanks_only_the_drawn_pixel_it_falls_in():
    import matplotlib

    maps = np.arange(64, dtype=np.float32).reshape(8, 8, 1)
    maps[0, 0, 0] = np.inf
    shrunk = mosaic.resized_tiles(maps, 4, 4)[..., 0]
    expected = np.arange(64, dtype=np.float32).reshape(4, 2, 4, 2).mean(axis=(1, 3))  # each 2x2 block's mean
    assert np.isnan(shrunk[0, 0]) and np.isnan(shrunk).sum() == 1
    np.testing.assert_allclose(shrunk.ravel()[1:], expected.ravel()[1:], rtol=1e-6)
    maps[0, 0, 0] = np.nan
    layer = stats.summarize_layer("layer", maps, 64, "mean")  # its minimum and maximum: NaN
    scaled = mosaic.NORMALISATIONS["layer"](layer.maps, layer)
    assert (scaled.vmin, scaled.vmax) == (1.0, 63.0)  # the finite values', not a NaN range that blanks every tile
    scaled.tiles[0, 0, 0] = np.inf
    grid = mosaic.tile_grid(1, (8, 8), 16)  # enlarged: each value a 2x2 block
    painted = mosaic.paint_mosaic(scaled, grid, matplotlib.colormaps["viridis"], ["0"], None)
    assert (painted[:2, :2, :3] == 255).all() and (painted[2:, 2:, :3] != 255).any()  # white, as a gap


def test_layer_scaling_uses_one_range_shown_on_the_colour_bar():
    import matplotlib

    maps = np.random.default_rng(1).normal(size=(8, 8, 10)).astype(np.float32)
    layer = stats.summarize_layer("layer", maps, 64, "mean")
    figure = draw([layer], norm="layer")
    assert figure.axes[2].get_ylim() == pytest.approx((layer.minimum, layer.maximum))
    painted = figure.axes[1].get_images()[0].get_array()
    viridis = matplotlib.colormaps["viridis"]
    colours = {tuple(c) for c in painted[..., :3].reshape(-1, 3)}
    assert tuple(viridis(1.0, bytes=True)[:3]) in colours  # the layer's maximum, somewhere
    assert tuple(viridis(0.0, bytes=True)[:3]) in colours  # and its minimum
    per_tile = draw([layer], norm="channel").axes[1].get_images()[0].get_array()
    assert not np.array_equal(painted, per_tile)


def test_figure_file_is_a_real_image_with_the_panels(run, tmp_path):
    out = tmp_path / "figure.png"
    status, _, _ = run(SAMPLE_PHOTO, "--weights", "none", "--layers", "conv2d_1", "mixed3", "avg_pool",
                       "--dpi", 50, "--out", out)
    assert status == 0
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.width == int(figure.FIGURE_WIDTH_INCHES * 50)
        assert image.height > image.width  # photo plus three panels
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 20  # drawn, not blank


@pytest.mark.parametrize("suffix, magic", [(".pdf", b"%PDF"), (".svg", b"<?xml"), (".jpg", b"\xff\xd8\xff")])
def test_figure_format_follows_the_suffix(run, tmp_path, suffix, magic):
    out = tmp_path / f"figure{suffix}"
    status, _, _ = run(SAMPLE_PHOTO, "--weights", "none", "--layers", "mixed9", "--max-maps", 4, "--out", out)
    assert status == 0
    assert out.read_bytes().startswith(magic)


def test_default_output_is_result_slash_stem(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, _ = run(SAMPLE_PHOTO, "--weights", "none", "--layers", "mixed9", "--max-maps", "all")
    assert status == 0
    assert out.splitlines()[-1] == "wrote result/grace_hopper.png"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["grace_hopper.png", "result"]


def test_no_image_runs_on_the_bundled_sample(run, tmp_path):
    status, out, _ = run("--weights", "none", "--layers", "mixed9", "--out", tmp_path)
    assert status == 0
    assert (tmp_path / "grace_hopper.png").is_file()


def test_a_vector_layer_is_drawn_as_bars(run, tmp_path):
    status, out, _ = run(SAMPLE_PHOTO, "--weights", "none", "--layers", "avg_pool", "predictions", "--out", tmp_path)
    assert status == 0
    assert [line.split(" (")[0] for line in out.splitlines()[4:6]] == ["avg_pool", "predictions"]
    values = np.linspace(-1, 1, 2048, dtype=np.float32)
    axes = draw([stats.summarize_layer("avg_pool", values, 64, "mean")]).axes[1]
    heights, edges, baseline = axes.patches[0].get_data()
    np.testing.assert_array_equal(heights, values)  # one bar per value, from 0
    assert (edges[0], edges[-1], baseline) == (-0.5, 2047.5, 0.0)
    flat = draw([stats.summarize_layer("avg_pool", np.ones(1000, np.float32), 64, "mean")])
    bars = pixels_of(flat.axes[1], drawn_pixels(flat))
    middle = bars[bars.shape[0] // 2, 2:-2, :3]
    assert (middle == middle[0]).all() and tuple(middle[0]) != (255, 255, 255)  # one solid colour, no aliasing


def test_save_is_atomic_when_writing_fails_halfway(run, tmp_path, monkeypatch):
    out = tmp_path / "figure.png"
    out.write_bytes(b"the previous figure")

    def fail_halfway(figure, stream, dpi):
        stream.write(b"\x89PNG half a figure")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output, "write_png", fail_halfway)
    status, out_text, err = run(SAMPLE_PHOTO, "--weights", "none", "--quiet", "--layers", "mixed9", "--out", out)
    assert status == 1
    assert err == f"deepviz: error: could not write the figure {out}: No space left on device\n"
    assert "wrote" not in out_text
    assert out.read_bytes() == b"the previous figure"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_save_replaces_an_existing_figure_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "figure.png"
    out.write_bytes(b"old")
    output.save_figure(draw([]), out, dpi=20)
    assert out.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~output.current_umask())


def test_offline_imagenet_download_fails_fast_with_a_clear_message(tmp_path):
    # A proxy on a closed local port: the download is refused at once, here and anywhere.
    closed = "http://127.0.0.1:9"
    result = run_cli(SAMPLE_PHOTO, "--out", tmp_path,
                     env={"KERAS_HOME": str(tmp_path / "keras"), "https_proxy": closed,
                          "HTTPS_PROXY": closed, "http_proxy": closed, "no_proxy": ""})
    assert result.returncode == 1
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("deepviz: building", "Downloading"))]
    assert lines[0].startswith(
        "deepviz: error: could not download the ImageNet weights from https://storage.googleapis.com/"
        "tensorflow/keras-applications/inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
    )
    assert lines[1] == (
        f"Keras caches them in {tmp_path / 'keras' / 'models'} once fetched. Connect to the internet and "
        "retry, or pass a local weights file: --weights PATH (.h5 or .weights.h5)."
    )
    assert "Traceback" not in result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name != "keras"] == []
    quiet = run_cli(SAMPLE_PHOTO, "--quiet", "--out", tmp_path,
                    env={"KERAS_HOME": str(tmp_path / "keras"), "https_proxy": closed, "HTTPS_PROXY": closed,
                         "http_proxy": closed, "no_proxy": ""})
    assert quiet.returncode == 1
    assert quiet.stderr.splitlines() == lines[:2]  # the error alone: no "Downloading data from ..."


def test_ctrl_c_exits_130_with_one_line_and_no_file(run, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(analysis, "run_forward_pass", interrupted)
    status, out, err = run(SAMPLE_PHOTO, "--weights", "none", "--quiet", "--out", tmp_path)
    assert (status, err) == (130, "interrupted\n")
    assert list(tmp_path.iterdir()) == []


class InterruptedWhenCollected:
    def __del__(self):
        raise KeyboardInterrupt  # as Ctrl-C landing in a finalizer or a GC callback (JAX has one)


def test_ctrl_c_that_python_drops_in_a_finalizer_still_interrupts_the_run(capfd):
    from _deepviz.run import run_guarded

    def command():
        InterruptedWhenCollected()  # collected at once: Python would print "Exception ignored" and go on
        time.sleep(5)
        return 0

    started = time.perf_counter()
    assert run_guarded(command, debug=False) == 130
    assert time.perf_counter() - started < 2
    assert capfd.readouterr().err == "interrupted\n"
    previous = sys.unraisablehook
    assert run_guarded(lambda: 0, debug=False) == 0 and sys.unraisablehook is previous  # restored

    def ending_at_once():
        InterruptedWhenCollected()
        return 0

    assert run_guarded(ending_at_once, debug=False) == 130  # not delivered later, into the caller's code
    time.sleep(0.3)  # a redelivery still pending would interrupt this sleep
    assert capfd.readouterr().err == "interrupted\n"


def test_sigterm_stops_the_run_as_ctrl_c_does_then_goes_to_the_handler_that_was_there(capfd):
    from _deepviz.run import run_guarded

    received = []

    def command():
        signal.raise_signal(signal.SIGTERM)  # as `kill` or `timeout` would send it
        time.sleep(5)
        return 0

    def command_losing_what_interrupted_it():
        try:
            command()
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # Terminated lost, as a library or a redelivery of Ctrl-C may lose it

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        started = time.perf_counter()
        assert run_guarded(command, debug=False) == 143  # the handler that was there did not end the process
        assert time.perf_counter() - started < 2
        assert received == [signal.SIGTERM]
        assert capfd.readouterr().err == "terminated\n"
        assert run_guarded(command_losing_what_interrupted_it, debug=False) == 143
        assert capfd.readouterr().err == "terminated\n" and received == [signal.SIGTERM] * 2
        assert run_guarded(lambda: 0, debug=False) == 0
        signal.raise_signal(signal.SIGTERM)  # after a run, SIGTERM is the caller's again
        assert received == [signal.SIGTERM] * 3
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_reader_that_stops_reading_stdout_stops_the_run_quietly(tmp_path):
    """`deepviz PHOTOS | head -1`: no internal error, no "Exception ignored"; ended as SIGPIPE ends a tool."""
    command = deepviz_on_small_photos(tmp_path, 40)
    process = subprocess.Popen(
        [*command, "--workers", "1", "--quiet", "--out", tmp_path / "figures"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    assert process.stdout.readline().startswith("== ")
    process.stdout.close()  # as head does after its first line
    _, err = process.communicate(timeout=300)
    assert (process.returncode, err) == (141, "")
    assert len(list((tmp_path / "figures").glob("*.png"))) < 40  # it stopped


def test_with_the_progress_bar_on_a_terminal_the_report_still_goes_to_redirected_stdout(tmp_path):
    """`deepviz PHOTOS > report.txt` at a terminal: the bar draws on stderr, the report goes to the file."""
    import pty
    import threading

    command = deepviz_on_small_photos(tmp_path, 3)
    terminal, stderr_end = pty.openpty()
    shown = []
    reader = threading.Thread(target=read_until_closed, args=(terminal, shown), daemon=True)
    reader.start()
    result = subprocess.run(
        [*command, "--out", tmp_path / "figures"],
        stdout=subprocess.PIPE, stderr=stderr_end, text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    os.close(stderr_end)
    reader.join(timeout=10)
    assert result.returncode == 0
    assert [line for line in result.stdout.splitlines() if line.startswith("== ")] == [
        f"== {tmp_path / f'{i:02d}.png'}" for i in range(3)]
    assert "drawing" in b"".join(shown).decode(errors="replace")  # the bar was on the terminal


def read_until_closed(descriptor: int, chunks: list) -> None:
    while True:
        try:
            chunk = os.read(descriptor, 4096)
        except OSError:  # the other end closed
            return
        if not chunk:
            return
        chunks.append(chunk)


def test_ctrl_c_while_saving_leaves_no_partial_file(run, tmp_path, monkeypatch):
    out = tmp_path / "figure.png"
    out.write_bytes(b"the previous figure")

    def interrupted_halfway(figure, stream, dpi):
        stream.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(output, "write_png", interrupted_halfway)
    status, _, err = run(SAMPLE_PHOTO, "--weights", "none", "--quiet", "--layers", "mixed9", "--out", out)
    assert (status, err) == (130, "interrupted\n")
    assert out.read_bytes() == b"the previous figure"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


@pytest.mark.parametrize("width", [1, 40, 107, 300])
def test_more_tiles_than_pixels_across_take_more_rows_of_one_pixel_tiles(width):
    grid = mosaic.tile_grid(2048, (8, 8), width)
    assert grid.columns * (grid.tile_width + grid.gap) - grid.gap <= width
    assert grid.columns * grid.rows >= 2048 and grid.tile_width >= 1
    layer = stats.summarize_layer("mixed10", np.random.default_rng(1).random((8, 8, 2048), np.float32), None, "mean")
    scaled = mosaic.NORMALISATIONS["channel"](layer.maps, layer)
    painted = mosaic.paint_mosaic(scaled, grid, figure.cam_colormap(), [str(c) for c in layer.channels], None)
    assert painted.shape == (grid.height, width, 4)


def test_labels_grow_with_their_tiles_and_are_left_out_where_they_do_not_fit(run, tmp_path):
    sizes = [mosaic.label_font_pixels(["1234"], mosaic.tile_grid(1, (8, 8), width)) for width in range(10, 200, 5)]
    known = [size for size in sizes if size is not None]
    assert sizes[0] is None and known == sorted(known)  # too small at first, then never smaller as tiles grow
    assert min(known) >= mosaic.MIN_LABEL_PIXELS and max(known) == 18
    big_tiles = mosaic.tile_grid(1, (8, 8), 300)
    assert [mosaic.label_font_pixels(["1234"], big_tiles, dpi) for dpi in (20, 100, 200, 300)] == [7, 18, 36, 54]
    maps = np.random.default_rng(4).random((8, 8, 2048), np.float32)
    crowded = draw([stats.summarize_layer("mixed10", maps, None, "mean")])
    assert "tiles too small to label: raise --dpi" in crowded.axes[1].get_title()
    roomy = draw([stats.summarize_layer("mixed10", maps, 64, "mean")])
    assert "too small" not in roomy.axes[1].get_title()


@pytest.mark.parametrize("dpi", [100, 200, 300])
@pytest.mark.parametrize("count, map_size", [(32, 147), (64, 17), (256, 17), (768, 17), (2048, 8)])
def test_a_label_never_hides_more_than_a_small_corner_of_its_tile(count, map_size, dpi):
    import matplotlib

    grid = mosaic.tile_grid(count, (map_size, map_size), figure.pixels(figure.PANEL_WIDTH_INCHES, dpi))
    labels = [str(channel) for channel in range(count)]
    size = mosaic.label_font_pixels(labels, grid, dpi)
    if count <= 64:
        assert size is not None  # the default figure's tiles are labelled
    scaled = mosaic.ScaledTiles(np.zeros((map_size, map_size, count), np.float32), 0.0, 1.0, "", {})
    viridis = matplotlib.colormaps["viridis"]
    plain = mosaic.paint_mosaic(scaled, grid, viridis, labels, None)
    labelled = mosaic.paint_mosaic(scaled, grid, viridis, labels, size)
    x, y = grid.corner(count - 1)  # the tile of the longest label
    tile = (slice(y, y + grid.tile_height), slice(x, x + grid.tile_width))
    assert (labelled[tile] != plain[tile]).any(axis=-1).mean() <= 0.15


def test_labels_are_left_out_rather_than_cover_small_tiles():
    grid = mosaic.tile_grid(768, (17, 17), figure.pixels(figure.PANEL_WIDTH_INCHES, 100))  # 18 px tiles
    assert mosaic.label_font_pixels([str(c) for c in range(768)], grid, 100) is None
    larger = mosaic.tile_grid(768, (17, 17), figure.pixels(figure.PANEL_WIDTH_INCHES, 200))
    assert mosaic.label_font_pixels([str(c) for c in range(768)], larger, 200) is not None  # as the title advises


def test_predictions_are_printed_aligned():
    lines = cli.format_predictions([("golden_retriever", 0.8655), ("tabby", 0.0999), ("toy_poodle", 0.005)])
    assert lines == ["1. golden_retriever  86.55%", "2. tabby              9.99%", "3. toy_poodle         0.50%"]
    many = cli.format_predictions([(f"class{i}", 0.1) for i in range(10)])
    assert many[0] == " 1. class0  10.00%" and many[9] == "10. class9  10.00%"  # the ranks line up too


@pytest.mark.parametrize("channels", [3, 4])
def test_png_encoder_round_trips_pixels_resolution_and_text(channels):
    import io

    from _deepviz import png

    pixels = np.random.default_rng(3).integers(0, 256, (37, 53, channels), dtype=np.uint8)
    pixels[10:20] = pixels[9]  # rows that repeat, as in a figure
    encoded = png.encode_png(pixels, 72, {"Software": "deepviz test"})
    with Image.open(io.BytesIO(encoded)) as decoded:
        decoded.load()  # checks every chunk's CRC and the zlib stream
        assert decoded.mode == {3: "RGB", 4: "RGBA"}[channels]
        np.testing.assert_array_equal(np.asarray(decoded), pixels)
        assert decoded.info["dpi"] == pytest.approx((72, 72), abs=0.01)
        assert decoded.info["Software"] == "deepviz test"


def test_png_figures_hold_the_pixels_savefig_draws_in_rgb_at_the_chosen_compression(tmp_path):
    maps = np.random.default_rng(2).random((6, 6, 12), np.float32)
    drawn = draw([stats.summarize_layer("layer", maps, 64, "mean")])
    output.save_figure(drawn, tmp_path / "fast.png", dpi=40)
    drawn.savefig(tmp_path / "savefig.png", dpi=40)
    with Image.open(tmp_path / "fast.png") as fast, Image.open(tmp_path / "savefig.png") as reference:
        assert (fast.mode, reference.mode) == ("RGB", "RGBA")
        assert fast.info["dpi"] == pytest.approx(reference.info["dpi"])
        np.testing.assert_array_equal(np.asarray(fast), np.asarray(reference.convert("RGB")))


# --- Titles that fit the figure -------------------------------------------------------
def text_boxes(drawn) -> list[tuple[str, object]]:
    """Every title and heading of a drawn figure, with where it was drawn (colour-bar labels aside)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(drawn)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = [axes.title for axes in drawn.axes if axes.get_title()] + list(drawn.texts)
    return [(text.get_text(), text.get_window_extent(renderer)) for text in texts]


@pytest.mark.parametrize("dpi", [20, 40, 100])
def test_no_title_leaves_the_figure_or_runs_into_another(dpi):
    network = types.SimpleNamespace(class_names=["c"], trained=False, no_predictions_reason="")
    predictions = [(name, 0.001) for name in ["German_short-haired_pointer", "American_lobster", "tench"] * 4]
    title = figure.photo_title("a_long_file_name" * 12 + ".jpg", Image.new("RGB", (60, 40)), network, predictions,
                               dpi)
    style = figure.FigureStyle(title, "channel", "viridis", dpi, cam_layer="mixed10")
    cams = [(name, probability, np.eye(4, dtype=np.float32)) for name, probability in predictions[:7]]
    crowded = stats.summarize_layer("a_layer_with_a_long_name", np.ones((9, 9, 2048), np.float32), None, "mean")
    drawn = figure.draw_figure(Image.new("RGB", (60, 40), "red"), [crowded], style, cams=cams)
    boxes = text_boxes(drawn)
    assert len(boxes) == 1 + 7 + 1 + 1  # photo, Grad-CAM panels, Grad-CAM heading, the layer
    assert "tiles too small to label" in boxes[-2][0] and "\n" in boxes[-2][0]  # wrapped, not clipped
    for text, box in boxes:
        assert box.x0 >= 0 and box.x1 <= drawn.bbox.width and box.y0 >= 0 and box.y1 <= drawn.bbox.height, text
    for (text, box), (other, other_box) in itertools.combinations(boxes, 2):
        assert not box.overlaps(other_box), (text, other)


def test_photo_title_wraps_predictions_into_three_lines_and_counts_the_rest():
    network = types.SimpleNamespace(class_names=["c"], trained=True, no_predictions_reason="")
    names = models.load_class_names()
    lines = figure.photo_title("dog.jpg", Image.new("RGB", (3, 2)), network, [(name, 0.001) for name in names])
    size_line, *prediction_lines = lines.splitlines()
    assert size_line == "dog.jpg (3×2)" and len(prediction_lines) == figure.PREDICTION_LINES_MAX
    shown = re.findall(r"(\d+)\. ", " ".join(prediction_lines))
    assert [int(rank) for rank in shown] == list(range(1, len(shown) + 1))
    assert prediction_lines[-1].endswith(f"+{1000 - len(shown)} more, all printed")
    width = figure.title_room(figure.PHOTO_TITLE_POINTS)
    assert all(titles.text_points(line, figure.PHOTO_TITLE_POINTS, 100) <= width for line in prediction_lines)
    few = figure.photo_title("dog.jpg", Image.new("RGB", (3, 2)), network, [("beagle", 0.8655), ("basset", 0.05)])
    assert few == "dog.jpg (3×2)\n1. beagle 86.6%   2. basset 5.0%"


def test_wrapping_breaks_between_parts_and_shortens_only_a_part_too_long_alone():
    width = titles.text_points("each tile scaled to its own range; 0 dead", 10, 100) + 1
    lines = titles.wrap(["layer (8, 8, 2048): 64 of 2048 channels", "each tile scaled to its own range", "0 dead"],
                        "; ", 10, 100, width)
    assert lines == ["layer (8, 8, 2048): 64 of 2048 channels;", "each tile scaled to its own range; 0 dead"]
    long_name = "Supercalifragilistic_" * 5 + "end"
    shortened, = titles.wrap([long_name], " ", 9, 100, 100)
    assert titles.text_points(shortened, 9, 100) <= 100 and "…" in shortened
    assert shortened.startswith("Supercal") and shortened.endswith("end")
    assert titles.text_points(long_name, 9, 10) != titles.text_points(long_name, 9, 100)  # glyphs snap to pixels
    room = titles.text_points("alpha   +2 more", 9, 100) + 1  # not room for "alpha   beta   gamma"
    assert titles.wrap_limited(["alpha", "beta", "gamma"], "   ", 9, 100, room, 1, "+{} more") == ["alpha   +2 more"]
