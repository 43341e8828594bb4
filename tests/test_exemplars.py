"""Dataset exemplars: bounded tallies, the search over photos, the figure, the CLI, the API, the Ray engine."""

import json
import os
import re
import socket
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import deepviz
from _deepviz import backend, exemplar_figure, exemplars, images, run_exemplars
from conftest import ROOT

keras = backend.import_keras()
CHANNELS = 6  # of the tiny model's last layer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small saved classifier: 32x32 input, conv_a (30, 30, 4), conv_b (14, 14, 6)."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(CHANNELS, 3, strides=2, activation="relu", name="conv_b")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    keras.Model(inputs, outputs, name="tiny").save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Nine small photos made from the three bundled ones (flipped, mirrored), and one unreadable file."""
    folder = tmp_path_factory.mktemp("photos")
    for source in sorted((ROOT / "images").glob("*.*g")):
        photo = images.load_image(source)
        photo.thumbnail((96, 96))
        for name, changed in [("", photo), ("-flip", ImageOps.flip(photo)), ("-mirror", ImageOps.mirror(photo))]:
            changed.save(folder / f"{source.stem}{name}.png")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    return folder


def random_batches(count, batch_size=5, seed=0, shape=(7, 9, 5)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch_size, *shape)).astype(np.float32) for _ in range(count)]


def tally_all(batches, k, channels=None, rank="max", order=None):
    total = None
    for b in order if order is not None else range(len(batches)):
        numbers = np.arange(b * len(batches[b]), (b + 1) * len(batches[b]))
        part = exemplars.tally_maps(batches[b], numbers, channels, k, rank)
        total = part if total is None else exemplars.merge_tallies(total, part, k)
    return total


# --- Bounded tallies -------------------------------------------------------------------
def test_a_tally_stays_the_same_size_however_many_photos():
    small, large = tally_all(random_batches(4), k=3), tally_all(random_batches(80), k=3)
    assert large.count == 400 and small.count == 20
    assert large.nbytes == small.nbytes
    assert large.maps.shape == (5, 3, 7, 9)  # (channels, k, H, W): nothing grows with the photos


@pytest.mark.parametrize("rank", ["max", "mean"])
def test_merged_tallies_keep_the_best_photos_in_any_order(rank):
    batches = random_batches(12, seed=1)
    every = np.concatenate(batches)  # (60, 7, 9, 5)
    scores = every.max(axis=(1, 2)) if rank == "max" else every.mean(axis=(1, 2))  # (60, 5)
    tally = tally_all(batches, k=4, rank=rank)
    shuffled = tally_all(batches, k=4, rank=rank, order=np.random.default_rng(2).permutation(12))
    for channel in range(5):
        best = np.argsort(-scores[:, channel], kind="stable")[:4]
        assert tally.photos[channel].tolist() == best.tolist()
        np.testing.assert_allclose(tally.scores[channel], scores[best, channel], rtol=1e-6)
        peak = np.unravel_index(every[best[0], :, :, channel].argmax(), (7, 9))
        assert tuple(tally.positions[channel, 0]) == peak
        np.testing.assert_array_equal(tally.maps[channel, 0], every[best[0], :, :, channel])
    np.testing.assert_array_equal(shuffled.photos, tally.photos)
    np.testing.assert_allclose(tally.sums, every.mean(axis=(1, 2), dtype=np.float64).sum(axis=0), rtol=1e-9)


def test_ties_go_to_the_earlier_photo_and_empty_places_are_dropped():
    maps = np.ones((3, 2, 2, 1), np.float32)
    tally = exemplars.tally_maps(maps, np.array([7, 3, 5]), None, 5, "max")
    assert tally.photos[0].tolist() == [3, 5, 7, exemplars.EMPTY_PLACE, exemplars.EMPTY_PLACE]
    paths = [f"p{i}.png" for i in range(8)]
    found = exemplars.exemplars_of(tally, 0, paths)
    assert [e.path.name for e in found] == ["p3.png", "p5.png", "p7.png"]


def test_values_that_overflowed_rank_the_same_in_any_batches_and_inf_stays_inf():
    maps = np.stack([np.full((2, 2, 1), value, np.float32) for value in (np.nan, 1.0, np.inf)])  # photos 0, 1, 2
    for batch_size in (1, 3):
        batches = [maps[start:start + batch_size] for start in range(0, 3, batch_size)]
        tally = tally_all(batches, k=4)
        assert tally.photos[0].tolist() == [2, 1, 0, exemplars.EMPTY_PLACE], batch_size  # NaN last, yet kept
        found = exemplars.exemplars_of(tally, 0, ["nan.png", "one.png", "inf.png"])
        assert [(e.path.name, e.activation) for e in found][:2] == [("inf.png", np.inf), ("one.png", 1.0)]


def test_without_channels_the_top_channels_by_mean_over_the_set_are_kept():
    batches = random_batches(6, seed=3)
    batches[2][..., 4] += 3.0  # channel 4: highest mean over the set, from one batch only
    tally = tally_all(batches, k=2)
    plan = exemplars.ExemplarPlan(("layer",), None, 2, "max", max_maps=2)
    result = exemplars.finish(exemplars.Partial({"layer": tally}, []), plan, [f"p{i}" for i in range(30)])
    means = np.concatenate(batches).mean(axis=(0, 1, 2))
    assert list(result.exemplars["layer"]) == np.argsort(-means)[:2].tolist()
    assert result.exemplars["layer"][4][0].path.name in {f"p{i}" for i in range(10, 15)}


# --- The crop and the figure -----------------------------------------------------------
@pytest.mark.parametrize("size, position, grid", [((400, 300), (0, 0), (17, 17)), ((400, 300), (16, 16), (17, 17)),
                                                   ((299, 299), (4, 3), (8, 8)), ((90, 600), (10, 1), (12, 3))])
def test_the_crop_is_a_square_around_the_cell_inside_the_photo(size, position, grid):
    left, top, right, bottom = exemplar_figure.crop_box(size, position, grid)
    width, height = size
    cell_width, cell_height = width / grid[1], height / grid[0]
    side = min(min(size), max(3 * max(cell_width, cell_height), min(size) / 3))
    assert right - left == bottom - top == pytest.approx(side, abs=1)
    assert 0 <= left and 0 <= top and right <= width and bottom <= height
    centre = ((position[1] + 0.5) * cell_width, (position[0] + 0.5) * cell_height)
    assert left <= centre[0] <= right and top <= centre[1] <= bottom


def test_a_row_starts_with_the_synthesized_pattern_when_there_is_one(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (60, 40), (200, 30, 30)).save(path)
    row = [exemplars.Exemplar(path, 2.0 - i, (1, 2), (4, 5), np.ones((4, 5), np.float32)) for i in range(3)]
    pattern = np.full((20, 20, 3), 128, np.uint8)
    figure = exemplar_figure.draw_exemplars("conv_b", {3: row, 5: row[:2]}, {3: 0.5, 5: 0.2}, {3: pattern}, "t")
    axes = figure.axes
    assert len(axes) == 2 * 4  # two rows of pattern + three crops
    assert axes[0].get_title() == "synthesized" and axes[4].get_title() == ""  # channel 5 has no pattern
    assert axes[1].get_title() == "photo.png\n2" and axes[3].get_title() == "photo.png\n0"
    assert not axes[7].get_images()  # channel 5 has two exemplars only
    assert axes[1].get_xlim() == pytest.approx(exemplar_figure.crop_box((60, 40), (1, 2), (4, 5))[0:3:2])


def test_photos_of_the_same_name_are_told_apart_by_their_folders():
    paths = [Path("/data/cat/001.jpg"), Path("/data/dog/001.jpg"), Path("/x/a/b.jpg"), Path("/y/a/b.jpg"),
             Path("/data/c.jpg"), Path("/e/f.jpg"), Path("/g/e/f.jpg")]
    assert exemplar_figure.distinct_names(paths + paths[:1]) == {
        paths[0]: "cat/001.jpg", paths[1]: "dog/001.jpg", paths[2]: "x/a/b.jpg", paths[3]: "y/a/b.jpg",
        paths[4]: "c.jpg", paths[5]: "/e/f.jpg", paths[6]: "g/e/f.jpg"}  # one path is the other's end: whole


@pytest.mark.parametrize("grey", [False, True])
def test_crops_are_shown_in_grey_for_a_greyscale_model(tmp_path, grey):
    path = tmp_path / "red.png"
    Image.new("RGB", (80, 80), (200, 30, 30)).save(path)
    crop = exemplars.Exemplar(path, 1.0, (4, 4), (8, 8), np.zeros((8, 8), np.float32))
    figure = exemplar_figure.draw_exemplars("layer", {0: [crop]}, {0: 1.0}, {}, "t", dpi=50, grey=grey)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    reds = (pixels[..., 0] - pixels[..., 1] > 80).sum()  # the red photo under the map's tint; its grey is not
    assert (reds == 0) if grey else (reds > 100)


@pytest.mark.parametrize("colour", ["white", "black"])
def test_the_box_around_the_strongest_cell_shows_on_any_photo_and_at_its_edge(tmp_path, colour):
    path = tmp_path / "photo.png"
    Image.new("RGB", (80, 80), colour).save(path)
    channel_map = np.zeros((8, 8), np.float32)
    channel_map[0, 0] = 1.0
    corner = exemplars.Exemplar(path, 1.0, (0, 0), (8, 8), channel_map)  # the top-left cell
    figure = exemplar_figure.draw_exemplars("layer", {0: [corner]}, {0: 1.0}, {}, "t", cmap="gray", dpi=100)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    grey = np.asarray(canvas.buffer_rgba())[..., :3].astype(int).mean(axis=-1)
    x0, _, x1, y1 = figure.axes[0].get_window_extent().extents  # Agg's origin is the bottom left
    top, left = round(grey.shape[0] - y1), round(x0)
    cell = round((x1 - x0) / 3)  # the crop is 3 cells wide
    photo = 255 if colour == "white" else 0
    # along the cell's top and left edges, on the photo's edge, some pixel across the line (the box is drawn whole,
    # over the edge) stands out from the photo
    top_edge = np.abs(grey[top - 2:top + 3, left + 3:left + cell - 3] - photo).max(axis=0)
    left_edge = np.abs(grey[top + 3:top + cell - 3, left - 2:left + 3] - photo).max(axis=1)
    assert top_edge.min() > 100 and left_edge.min() > 100


# --- The search, from the command line and the API -------------------------------------
def network_maps(model_path, photo_paths, layer):
    """Brute force: every photo's maps of `layer`, one at a time through Visualizer.maps."""
    viz = deepviz.Visualizer(str(model_path))
    return {path.name: viz.maps(str(path), [layer])[layer] for path in photo_paths}


def test_the_command_line_finds_the_strongest_photos_and_skips_unreadable_ones(run, tiny_model, photos, tmp_path):
    status, out, err = run("--exemplars", photos, "--model", tiny_model, "--layers", "conv_b", "--channels", "1,4",
                           "--per-channel", 3, "--batch-size", 4, "--json", "--quiet", "--out", tmp_path)
    assert status == 0
    assert "skipped: " in err and "broken.jpg" in err
    assert out.splitlines()[-1] == f"9 of 10 photos searched; unreadable, skipped: {photos / 'broken.jpg'}"
    record = json.loads((tmp_path / "exemplars_conv_b.json").read_text())
    assert record["photos_searched"] == 9 and record["rank"] == "max"
    assert [u["path"] for u in record["unreadable"]] == [str(photos / "broken.jpg")]
    maps = network_maps(tiny_model, sorted(p for p in photos.iterdir() if p.suffix == ".png"), "conv_b")
    for entry in record["channels"]:
        channel = entry["channel"]
        peaks = sorted(((float(m[..., channel].max()), name) for name, m in maps.items()), key=lambda p: -p[0])[:3]
        assert [os.path.basename(e["path"]) for e in entry["exemplars"]] == [name for _, name in peaks]
        assert [e["activation"] for e in entry["exemplars"]] == pytest.approx([p for p, _ in peaks], rel=1e-4)
        best = maps[peaks[0][1]][..., channel]
        assert tuple(entry["exemplars"][0]["position"]) == np.unravel_index(best.argmax(), best.shape)
    assert (tmp_path / "exemplars_conv_b.png").stat().st_size > 0


def test_one_name_per_photo_in_every_layer_and_a_title_true_to_the_set(run, tiny_model, tmp_path):
    for folder, colour in (("a", (250, 20, 20)), ("b", (20, 20, 250))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (40, 40), colour).save(tmp_path / folder / "001.png")
    Image.new("RGB", (40, 40), (20, 250, 20)).save(tmp_path / "a" / "002.png")
    status, out, err = run("--exemplars", tmp_path / "a", tmp_path / "b", "--model", tiny_model, "--layers", "conv_a",
                           "conv_b", "--channels", "0,1", "--per-channel", 2, "--quiet", "--out", tmp_path / "out")
    assert status == 0, err
    rows = [line.split(": ", 1)[1] for line in out.splitlines() if re.match(r"conv_[ab] channel \d: ", line)]
    assert len(rows) == 4
    named = {name for row in rows for name in re.findall(r"(\S+\.png) ", row)}
    assert "001.png" not in named and named & {"a/001.png", "b/001.png"}  # told apart even where one is shown
    assert named <= {"a/001.png", "b/001.png", "002.png"}


def test_a_set_of_unreadable_photos_says_so_in_one_line(run, tiny_model, tmp_path):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_text("not a photo")
    status, out, err = run("--exemplars", tmp_path / "a.jpg", "--model", tiny_model, "--layers", "conv_b", "--quiet",
                           "--out", tmp_path / "out")
    assert (status, out) == (1, "")
    assert err.startswith(f"deepviz: error: the photo could not be read: {tmp_path / 'a.jpg'}: not a readable image")
    status, out, err = run("--exemplars", tmp_path, "--model", tiny_model, "--layers", "conv_b", "--quiet",
                           "--out", tmp_path / "out")
    assert err.startswith(f"deepviz: error: none of the 2 photos could be read; the first: {tmp_path / 'a.jpg'}: ")


def test_the_exemplar_title_says_what_the_figure_shows():
    network = types.SimpleNamespace(label="tiny", weights_label="its own weights")
    plan = exemplars.ExemplarPlan(("conv_b",), per_channel=9)
    assert run_exemplars.exemplar_title("conv_b", 6, 4, plan, network).startswith(
        "conv_b: all 6 photos, ordered by how much they excite each channel (max activation); tiny")
    assert "the 9 of 100 photos that excite each channel most (max activation); the first 64 of 768 channels " \
           "drawn, all printed" in run_exemplars.exemplar_title("conv_b", 100, 768, plan, network)


def test_a_figure_draws_the_first_64_channels(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (20, 20), "grey").save(path)
    rows = {c: [exemplars.Exemplar(path, 1.0, (0, 0), (2, 2), np.ones((2, 2), np.float32))] for c in range(70)}
    drawn = exemplar_figure.draw_exemplars("layer", rows, {}, {}, "t", dpi=20)
    assert len(drawn.axes) == exemplar_figure.ROWS_MAX == 64


@pytest.mark.parametrize("args, message", [
    (["--channels", "2,6"], "channel 6: layer conv_b has 6 channels (0 to 5)"),
    (["--rank", "index"], "--rank index: exemplars are ranked by max or mean activation"),
    (["--layers", "probs"], "layer probs gives (3,), not (height, width, channels) maps"),
    (["--ray-address", "auto"], "--ray-address auto joins a Ray cluster: add --engine ray"),
    (["--cam"], "--cam belongs to one photo's figure and does not apply to --exemplars"),
    (["--top", "3"], "--top belongs to one photo's figure and does not apply to --exemplars"),
    (["--norm", "layer"], "--norm belongs to one photo's figure and does not apply to --exemplars"),
    (["--workers", "2"], "--workers belongs to one photo's figure and does not apply to --exemplars"),
    (["--engine", "ray", "--ray-address", "head"], "--ray-address head: expected HOST:PORT of the cluster's head"),
])
def test_bad_exemplar_options_are_usage_errors(run, tiny_model, photos, tmp_path, args, message):
    layers = [] if "--layers" in args else ["--layers", "conv_b"]
    status, out, err = run("--exemplars", photos, "--model", tiny_model, *layers, *args, "--out", tmp_path)
    assert status == 2
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_the_figure_never_replaces_a_photo_searched(run, tiny_model, photos):
    target = photos / "chelsea.png"
    before = target.read_bytes()
    status, out, err = run("--exemplars", photos, "--model", tiny_model, "--layers", "conv_b", "--out", target)
    assert status == 2 and out == ""
    assert err == (f"deepviz: error: --out: {target} is a photo searched, which the figure would replace; "
                   "choose another --out\n")
    assert target.read_bytes() == before


def test_an_exemplar_figure_keeps_what_deepviz_did_not_write_and_replaces_its_own(run, tiny_model, photos, tmp_path):
    someone_elses = tmp_path / "exemplars_conv_b.png"
    Image.new("RGB", (8, 8), (10, 200, 10)).save(someone_elses)  # a photo of that name, not a figure
    before = someone_elses.read_bytes()
    command = ("--exemplars", photos, "--model", tiny_model, "--layers", "conv_b", "--channels", "1", "--json",
               "--quiet", "--out", tmp_path)
    for _ in range(2):  # the second run replaces the first's figure and JSON
        status, out, err = run(*command)
        assert status == 0, err
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "exemplars_conv_b-2.json", "exemplars_conv_b-2.png", "exemplars_conv_b.png"]
    assert someone_elses.read_bytes() == before


def test_a_photo_named_again_is_searched_once(run, tiny_model, photos, tmp_path):
    again = photos / "chelsea.png"
    status, out, err = run("--exemplars", photos, again, again, "--model", tiny_model, "--layers", "conv_b",
                           "--channels", "1", "--per-channel", 9, "--json", "--out", tmp_path)
    assert status == 0, err
    assert "searching each photo once: 2 named again" in err
    assert out.splitlines()[-1].startswith("9 of 10 photos searched")  # the folder's 9 readable and its broken file
    record = json.loads((tmp_path / "exemplars_conv_b.json").read_text())
    listed = [exemplar["path"] for exemplar in record["channels"][0]["exemplars"]]
    assert len(listed) == len(set(listed)) == 9
    viz = deepviz.Visualizer(str(tiny_model))
    with pytest.warns(UserWarning, match="unreadable"):
        found = viz.exemplars([photos, again], "conv_b", channels=[1], per_channel=9)
    assert sorted(e.path.name for e in found[1]) == sorted(os.path.basename(p) for p in listed)


def test_a_silent_channel_s_crop_marks_no_strongest_cell(tmp_path):
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    photo = Image.new("RGB", (40, 30), (90, 120, 150))
    for channel_map, boxes in ((np.zeros((3, 4), np.float32), 0), (np.eye(3, 4, dtype=np.float32), 1)):
        exemplar = exemplars.Exemplar(tmp_path / "a.png", float(channel_map.max()), (0, 0), (3, 4), channel_map)
        axes = Figure().add_subplot()
        exemplar_figure.draw_crop(axes, exemplar, "a.png", photo, "viridis")
        assert sum(isinstance(patch, Rectangle) for patch in axes.patches) == boxes


def test_a_panorama_s_strongest_cell_is_marked_within_its_crop(tmp_path):
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    photo = Image.new("RGB", (3000, 100), (90, 120, 150))
    channel_map = np.zeros((17, 17), np.float32)
    channel_map[16, 0] = 1.0
    exemplar = exemplars.Exemplar(tmp_path / "pano.png", 1.0, (16, 0), (17, 17), channel_map)
    axes = Figure().add_subplot()
    exemplar_figure.draw_crop(axes, exemplar, "pano.png", photo, "viridis")
    [box] = [patch for patch in axes.patches if isinstance(patch, Rectangle)]
    left, top, right, bottom = exemplar_figure.crop_box(photo.size, (16, 0), (17, 17))  # a 100-pixel square
    x, y, width, height = box.get_x(), box.get_y(), box.get_width(), box.get_height()
    assert (x, x + width) == (left, right)  # the cell is 176 pixels wide: its part in the crop
    assert left <= x and x + width <= right and top <= y and y + height <= bottom
    assert height == pytest.approx(100 / 17)


def test_a_ray_cluster_that_does_not_answer_is_refused_at_once(run, tiny_model, photos, tmp_path):
    with socket.socket() as probe:  # a port where nothing listens: bound, never listening
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
        status, out, err = run("--exemplars", photos, "--model", tiny_model, "--layers", "conv_b", "--engine", "ray",
                               "--ray-address", address, "--out", tmp_path)
    assert status == 1 and out == ""
    assert err.startswith(f"deepviz: error: --ray-address {address}: nothing answers at {address} (")
    assert err.endswith("or leave --ray-address out to start a local Ray for this run\n")
    assert not list(tmp_path.iterdir())


def test_the_api_returns_exemplars_per_channel_and_warns_of_unreadable_photos(tiny_model, photos):
    viz = deepviz.Visualizer(str(tiny_model))
    with pytest.warns(UserWarning, match=r"1 of 10 photos unreadable, skipped: .*broken\.jpg"):
        found = viz.exemplars(photos, "conv_a", per_channel=2, rank="mean", max_maps=3)
    assert len(found) == 3 and all(len(row) == 2 for row in found.values())
    first = next(iter(found.values()))[0]
    assert isinstance(first, deepviz.Exemplar) and first.grid == (30, 30) and first.map.shape == (30, 30)
    with pytest.raises(deepviz.UsageError, match="layer conv_a has 4 channels"):
        viz.exemplars(photos, "conv_a", channels=[9])
    with pytest.raises(deepviz.UsageError, match="channels draws exactly the channels listed and max_maps the"):
        viz.exemplars(photos, "conv_a", channels=[1], max_maps=3)


def test_the_local_engine_needs_no_ray_and_the_ray_engine_says_how_to_get_it(tiny_model, photos, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as where it is not installed
    viz = deepviz.Visualizer(str(tiny_model))
    with pytest.warns(UserWarning, match="broken.jpg"):
        assert len(viz.exemplars(photos, "conv_b", channels=[2], per_channel=1)[2]) == 1
    with pytest.raises(deepviz.UsageError, match=r'--engine ray needs Ray: pip install "deepviz\[ray\]"'):
        viz.exemplars(photos, "conv_b", engine="ray")


def test_the_ray_engine_needs_a_model_it_can_build_again(tiny_model, photos):
    viz = deepviz.Visualizer(keras.models.load_model(tiny_model))
    with pytest.raises(deepviz.UsageError, match="model.save"):
        viz.exemplars(photos, "conv_b", engine="ray")


# --- Ray ---------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own settings
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="Ray's start-up is slow; the engines are compared on the TensorFlow run only")
def test_the_ray_engine_finds_what_the_local_engine_finds(tiny_model, photos, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # Ray stays off the network
    ray = pytest.importorskip("ray")
    viz = deepviz.Visualizer(str(tiny_model))
    with pytest.warns(UserWarning, match="broken.jpg"):
        local = viz.exemplars(photos, "conv_b", per_channel=3, max_maps=4, batch_size=3)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.warns(UserWarning, match="broken.jpg"):
            on_ray = viz.exemplars(photos, "conv_b", per_channel=3, max_maps=4, batch_size=3, engine="ray")
    finally:
        ray.shutdown()
    assert list(on_ray) == list(local)
    for channel in local:
        assert [(e.path, e.position) for e in on_ray[channel]] == [(e.path, e.position) for e in local[channel]]
        assert [e.activation for e in on_ray[channel]] == pytest.approx([e.activation for e in local[channel]],
                                                                        rel=1e-5)
