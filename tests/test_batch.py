"""Many photos in one run: directories, batches, one figure each, failures skipped, progress."""

import numpy as np
import pytest
from PIL import Image

import deepviz
from _deepviz import analysis, forward, images, models
from conftest import SAMPLE_PHOTO


def make_photos(folder, names, colour=(200, 80, 40)):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (40, 30), colour).save(folder / name)
    return [folder / name for name in names]


def test_directories_expand_to_their_images_sorted(tmp_path):
    make_photos(tmp_path, ["b.png", "a.jpg", "c.webp"])
    make_photos(tmp_path / "sub", ["d.png"])
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in images.expand_inputs([str(tmp_path)], recursive=False)] == ["a.jpg", "b.png", "c.webp"]
    assert [p.name for p in images.expand_inputs([str(tmp_path)], recursive=True)] == [
        "a.jpg", "b.png", "c.webp", "d.png"]
    files_first = images.expand_inputs([str(tmp_path / "sub" / "d.png"), str(tmp_path)], recursive=False)
    assert [p.name for p in files_first] == ["d.png", "a.jpg", "b.png", "c.webp"]


def test_images_go_through_the_network_in_batches(run, tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "in", [f"p{i}.png" for i in range(5)])
    calls = []
    real_forward_pass = forward.run_forward_pass

    def spy(feature_model, batch, compiled=False):
        calls.append((batch.shape[0], compiled))
        return real_forward_pass(feature_model, batch, compiled)

    monkeypatch.setattr(analysis, "run_forward_pass", spy)
    status, out, _ = run(*photos, "--weights", "none", "--quiet", "--layers", "mixed9", "--batch-size", 2,
                         "--out", tmp_path / "out")
    assert status == 0
    assert calls == [(2, True), (2, True), (2, True)]  # the last batch padded to the same shape
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"p{i}.png" for i in range(5)]
    assert out.splitlines()[-1] == "5 of 5 images drawn"


def test_a_batched_forward_pass_equals_one_photo_at_a_time():
    network = models.build_network(models.NetworkChoice(weights="none"))
    feature_model = forward.build_feature_model(network, ["conv2d_1", "mixed7"])
    photos = [images.load_image(SAMPLE_PHOTO), Image.new("RGB", (50, 80), (10, 200, 30))]
    batch = np.stack([images.preprocess(photo, network) for photo in photos])
    together = forward.run_forward_pass(feature_model, batch, compiled=True)
    for i in range(2):
        alone = forward.run_forward_pass(feature_model, batch[i : i + 1], compiled=False)
        for name in ("conv2d_1", "mixed7", forward.OUTPUT_KEY):
            np.testing.assert_allclose(together[name][i], alone[name][0], rtol=1e-4, atol=1e-5)


def test_each_image_gets_its_own_figure_even_with_the_same_stem(run, tmp_path):
    first = make_photos(tmp_path / "a", ["cat.png"])[0]
    second = make_photos(tmp_path / "b", ["cat.jpg"], colour=(0, 0, 255))[0]
    status, out, _ = run(first, second, "--weights", "none", "--quiet", "--layers", "mixed9", "--out", tmp_path / "o")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"== {first}"
    assert f"wrote {tmp_path / 'o' / 'cat.png'}" in lines
    assert f"wrote {tmp_path / 'o' / 'cat-2.png'}" in lines
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["cat-2.png", "cat.png"]


def test_a_failing_image_is_reported_and_the_others_are_drawn(run, tmp_path):
    good = make_photos(tmp_path / "in", ["a.png", "c.png"])
    bad = tmp_path / "in" / "b.jpg"
    bad.write_text("not a photo")
    status, out, err = run(tmp_path / "in", "--weights", "none", "--quiet", "--layers", "mixed9",
                           "--out", tmp_path / "out")
    assert status == 1
    assert err.startswith(f"deepviz: error: {bad}: not a readable image (")
    assert out.splitlines()[-1] == f"2 of 3 images drawn; failed: {bad}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in good]


def test_when_no_image_is_readable_nothing_is_built(run, tmp_path, monkeypatch):
    (tmp_path / "b.jpg").write_text("not a photo")
    monkeypatch.setattr(deepviz, "Visualizer", None)  # building the network would fail: it is not built
    status, out, err = run(tmp_path / "a.jpg", tmp_path / "b.jpg", "--out", tmp_path / "out")
    assert status == 1
    assert err.splitlines() == [f"deepviz: error: {tmp_path / 'a.jpg'}: no such file; check the path",
                                f"deepviz: error: {tmp_path / 'b.jpg'}: not a readable image (cannot identify image "
                                f"file {str(tmp_path / 'b.jpg')!r})"]
    assert out == f"0 of 2 images drawn; failed: {tmp_path / 'a.jpg'}, {tmp_path / 'b.jpg'}\n"
    assert not (tmp_path / "out").exists()


def test_one_out_file_for_several_images_is_a_usage_error(run, tmp_path):
    photos = make_photos(tmp_path, ["a.png", "b.png"])
    status, _, err = run(*photos, "--out", tmp_path / "one.png")
    assert status == 2
    assert err == (f"deepviz: error: --out {tmp_path / 'one.png'} names one file but 2 images were given; "
                   "pass a directory\n")


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_for_several_images_unless_quiet(run, tmp_path, quiet):
    photos = make_photos(tmp_path / "in", ["a.png", "b.png", "c.png"])
    args = [*photos, "--weights", "none", "--layers", "mixed9", "--out", tmp_path / "out"]
    status, _, err = run(*args, *(["--quiet"] if quiet else []))
    assert status == 0
    if quiet:
        assert err == ""
    else:
        assert "drawing" in err and "3/3" in err
