"""Bad input and odd input: a clear error every time, nothing half-written; odd images work."""

import io
import os
import re
import struct
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepviz
from _deepviz import backend, figure, images, models, output
from conftest import ROOT, SAMPLE_PHOTO, run_cli

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def mean_colour(image):
    return tuple(np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0).round())


def close_to(colour, expected, tolerance=12):
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected))


# --- Images that must work ------------------------------------------------------
def cmyk_jpeg(path):
    Image.new("RGB", (32, 32), RED).convert("CMYK").save(path, "JPEG", quality=95)
    return RED


def grey16_png(path):
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(path)  # half of 65535
    return (128, 128, 128)


def one_bit_png(path):
    Image.new("1", (8, 8), 1).save(path)
    return WHITE


def palette_png_with_transparency(path):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.save(path, transparency=0)  # index 0 (black) is transparent: laid over white
    return WHITE


def la_png(path):
    Image.new("LA", (8, 8), (0, 0)).save(path)  # black, fully transparent
    return WHITE


def rgba_png(path):
    Image.new("RGBA", (8, 8), (255, 0, 0, 255)).save(path)
    return RED


def animated_gif(path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return RED


def multipage_tiff(path):
    pages = [Image.new("RGB", (8, 8), colour) for colour in (GREEN, BLUE)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return GREEN


def webp(path):
    Image.new("RGB", (16, 16), BLUE).save(path, "WEBP", quality=100)
    return BLUE


def bmp(path):
    Image.new("RGB", (8, 8), GREEN).save(path)
    return GREEN


def grey12_in_16_png(path):
    Image.fromarray(np.full((8, 8), 2048, np.uint16)).save(path)  # half of 12 bits' 4095
    return (128, 128, 128)


def float_unit_tiff(path):
    Image.fromarray(np.full((8, 8), 0.5, np.float32), mode="F").save(path)  # half of [0, 1]
    return (128, 128, 128)


@pytest.mark.parametrize(
    "make, name",
    [
        (cmyk_jpeg, "cmyk.jpg"),
        (grey16_png, "grey16.png"),
        (grey12_in_16_png, "grey12.png"),
        (float_unit_tiff, "unit.tif"),
        (one_bit_png, "bits.png"),
        (palette_png_with_transparency, "palette.png"),
        (la_png, "la.png"),
        (rgba_png, "rgba.png"),
        (animated_gif, "animated.gif"),
        (multipage_tiff, "pages.tiff"),
        (webp, "photo.webp"),
        (bmp, "photo.bmp"),
    ],
)
def test_odd_image_modes_load_as_rgb_with_the_right_colours(tmp_path, make, name):
    path = tmp_path / name
    expected = make(path)
    image = images.load_image(path)
    assert image.mode == "RGB"
    assert close_to(mean_colour(image), expected), (mean_colour(image), expected)


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), RED)
    stored.paste(BLUE, (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    image = images.load_image(path)
    assert image.size == (20, 40)
    assert close_to(mean_colour(image.crop((0, 0, 20, 18))), RED, 20)  # left side is now on top
    assert close_to(mean_colour(image.crop((0, 22, 20, 40))), BLUE, 20)


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (4000, 10)])
def test_tiny_and_extreme_shapes_draw_a_readable_figure(run, tmp_path, size):
    path = tmp_path / "odd.png"
    Image.new("RGB", size, (200, 120, 40)).save(path)
    out = tmp_path / "figure.png"
    status, _, err = run(path, "--weights", "none", "--quiet", "--layers", "mixed9", "--dpi", 50, "--out", out)
    assert status == 0, err
    with Image.open(out) as drawn:
        assert drawn.width == int(figure.FIGURE_WIDTH_INCHES * 50)
        pixels = np.asarray(drawn.convert("RGB")).astype(int)
    photo_rows = np.nonzero((np.abs(pixels - (200, 120, 40)).sum(axis=-1) < 10).any(axis=1))[0]
    assert len(photo_rows) >= 1  # the photo is drawn (a 4000x10 panorama fits the width: one row high)...
    assert len(photo_rows) <= round(figure.PHOTO_MAX_HEIGHT_INCHES * 50)  # ...nor swamp the maps


@pytest.mark.parametrize("name", ["my photo.png", "fotó ñandú.png", "-starts-with-dash.png", "a$\\q$.png",
                                  "c" * 246 + ".png"])  # the longest name most systems take
def test_awkward_file_names(run, tmp_path, name):
    path = tmp_path / name
    Image.new("RGB", (20, 20), RED).save(path)
    os.chdir(tmp_path)
    try:
        status, out, err = run("--weights", "none", "--quiet", "--layers", "mixed9", "--out", "figs", "--", name)
    finally:
        os.chdir(ROOT)
    assert status == 0, err
    assert out.splitlines()[-1] == f"wrote figs/{path.stem}.png"
    assert (tmp_path / "figs" / f"{path.stem}.png").is_file()


def test_a_name_that_is_not_utf8_is_printed_as_its_bytes_and_titled_with_a_replacement_character(tmp_path):
    name = os.fsdecode(b"b\xff.png")  # Python's stand-in for the byte: a lone surrogate
    Image.new("RGB", (20, 20), RED).save(tmp_path / name)
    Image.new("RGB", (20, 20), RED).save(tmp_path / "c.png")
    done = subprocess.run([sys.executable, ROOT / "deepviz.py", tmp_path, "--weights", "none", "--quiet",
                           "--layers", "mixed9", "--workers", "2", "--out", tmp_path / "out"],
                          capture_output=True, env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"}, timeout=300)
    assert (done.returncode, done.stderr) == (0, b"")
    out = os.fsencode(tmp_path / "out")
    assert b"wrote " + out + b"/b\xff.png\n" in done.stdout and b"wrote " + out + b"/c.png\n" in done.stdout
    assert figure.photo_title(name, Image.new("RGB", (20, 20)), types.SimpleNamespace(
        class_names=None, no_predictions_reason="none"), []).startswith("b\ufffd.png (20×20)")


def test_a_file_named_like_an_option_is_refused_with_how_to_pass_it(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (20, 20), RED).save("-cat.jpg")
    status, out, err = run("-cat.jpg", "--weights", "none")
    assert (status, out) == (2, "")
    assert err == ("deepviz: error: unrecognized arguments: -cat.jpg; a file whose name starts with '-' goes after "
                   "--: deepviz -- -cat.jpg; see deepviz --help\n")
    status, _, err = run("-dog.jpg", "--weights", "none")  # no such file: no hint
    assert status == 2 and err == "deepviz: error: unrecognized arguments: -dog.jpg; see deepviz --help\n"


def test_the_input_layer_is_drawn_as_the_preprocessed_image(run, tmp_path):
    status, out, _ = run(SAMPLE_PHOTO, "--weights", "none", "--quiet", "--layers", "input_layer", "--out", tmp_path)
    assert status == 0
    line = [line for line in out.splitlines() if line.startswith("input_layer")][0]
    assert line.startswith("input_layer (299, 299, 3): min -")
    assert " max 1 " in line  # preprocess_input scales pixels to [-1, 1]


# --- Images that must be refused ----------------------------------------------
def truncated_jpeg(path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def png_with_corrupt_chunk(path):
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 40] = bytes(30)  # damage the compressed pixels
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "name, make",
    [
        ("notes.jpg", lambda p: p.write_text("this is not an image\n")),
        ("empty.png", lambda p: p.write_bytes(b"")),
        ("truncated.jpg", truncated_jpeg),
        ("corrupt.png", png_with_corrupt_chunk),
    ],
)
def test_unreadable_images_fail_with_pillows_reason(run, tmp_path, name, make):
    path = tmp_path / name
    make(path)
    out_dir = tmp_path / "out"
    status, out, err = run(path, "--weights", "none", "--quiet", "--out", out_dir)
    assert status == 1
    assert err.startswith(f"deepviz: error: {path}: not a readable image (")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""
    assert not out_dir.exists()


def png_header_declaring(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_declaring(40000, 40000))
    probe = (  # VmHWM: this process's peak resident memory (ru_maxrss would include pytest's, across exec)
        "import re, deepviz\n"
        f"status = deepviz.main([{str(path)!r}, '--quiet'])\n"
        "peak_kib = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
        "print(status, int(peak_kib) // 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    status, peak_mib = map(int, result.stdout.split())
    assert status == 1
    assert result.stderr.startswith(f"deepviz: error: {path}: 1,600,000,000 pixels, over Pillow's limit of "
                                    "89,478,485 (its guard against decompression bombs); refused before decoding.")
    assert "178956970" not in result.stderr  # Pillow's own figure, twice the limit, would contradict it
    assert peak_mib < 400  # 40000x40000 RGB would need 4.8 GB


def test_a_figure_never_replaces_a_photo_given(run, tmp_path):
    Image.new("RGB", (20, 20), RED).save(tmp_path / "a.jpg")
    Image.new("RGB", (20, 20), BLUE).save(tmp_path / "a.png")
    photos = {name: (tmp_path / name).read_bytes() for name in ("a.jpg", "a.png")}
    status, out, err = run(tmp_path, "--weights", "none", "--quiet", "--layers", "mixed9", "--dpi", 20,
                           "--workers", 1, "--out", tmp_path)
    assert status == 0, err
    written = [line for line in out.splitlines() if line.startswith("wrote")]
    assert written == [f"wrote {tmp_path / 'a-2.png'}", f"wrote {tmp_path / 'a-3.png'}"]
    assert {name: (tmp_path / name).read_bytes() for name in photos} == photos
    status, out, err = run(tmp_path / "a.png", "--weights", "none", "--quiet", "--out", tmp_path / "a.png")
    assert status == 2
    assert err == (f"deepviz: error: --out {tmp_path / 'a.png'} is the image itself, which the figure would replace; "
                   "choose another name or a directory\n")
    assert (tmp_path / "a.png").read_bytes() == photos["a.png"]
    with pytest.raises(deepviz.UsageError, match="is the image itself"):
        deepviz.Visualizer(weights="none").save(tmp_path / "a.png", tmp_path / "a.png")
    # a photo of the figure's name in the folder, not given this run, is kept too; an earlier figure is replaced
    Image.new("RGB", (20, 20), GREEN).save(tmp_path / "c.png")
    photos["c.png"] = (tmp_path / "c.png").read_bytes()
    (tmp_path / "in").mkdir()
    Image.new("RGB", (20, 20), RED).save(tmp_path / "in" / "c.jpg")
    for _ in range(2):
        status, out, err = run(tmp_path / "in" / "c.jpg", "--weights", "none", "--quiet", "--layers", "mixed9",
                               "--dpi", 20, "--out", tmp_path)
        assert status == 0, err
        assert out.splitlines()[-1] == f"wrote {tmp_path / 'c-2.png'}"
    assert (tmp_path / "c.png").read_bytes() == photos["c.png"]
    assert output.named_paths(["synthesis"], "synthesis.png") == [Path("synthesis.png")]  # no photo to keep


def test_a_folder_s_names_skip_anything_but_figures_and_differ_in_more_than_case(tmp_path):
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Software", "Matplotlib version3.8.0, https://matplotlib.org/")  # an older deepviz figure's
    Image.new("RGB", (4, 4)).save(tmp_path / "old.png", pnginfo=text)
    Image.new("RGB", (4, 4)).save(tmp_path / "photo.png")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "link.png").symlink_to(tmp_path / "nowhere.png")
    names = [p.name for p in output.named_paths(["old", "photo", "folder", "link", "Dog", "dog"], str(tmp_path))]
    assert names == ["old.png", "photo-2.png", "folder-2.png", "link-2.png", "Dog.png", "dog-2.png"]
    (tmp_path / "notes.json").write_text("{}")  # someone's JSON, no figure beside it
    (tmp_path / "old.json").write_text("{}")  # an earlier run's, beside its figure
    assert [p.name for p in output.named_paths(["notes", "old"], str(tmp_path), siblings=[".json"])] == [
        "notes-2.png", "old.png"]
    assert output.named_paths(["notes"], str(tmp_path))[0].name == "notes.png"  # no JSON written: no matter
    assert output.named_paths(["synthesis"], str(tmp_path)) == [tmp_path / "synthesis.png"]


def test_a_directory_gives_its_images_by_suffix_not_hidden_ones_and_broken_links_to_fail(tmp_path):
    for name in ("b.JPG", "c.jfif", "d.ppm", "._a.jpg", "notes.txt"):
        Image.new("RGB", (4, 4)).save(tmp_path / name, "PPM" if name.endswith(("ppm", "txt")) else "JPEG")
    (tmp_path / ".thumbnails").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / ".thumbnails" / "e.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    assert [p.name for p in images.expand_inputs([str(tmp_path)], recursive=True)] == [
        "b.JPG", "c.jfif", "d.ppm", "gone.png"]
    with pytest.raises(deepviz.DeepvizError, match="no such file"):
        images.load_image(tmp_path / "gone.png")


def test_hidden_folders_are_not_walked(tmp_path, monkeypatch):
    for folder in ("sub", ".git/objects"):
        (tmp_path / folder).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / folder / "a.png")
    walked = []
    real_walk = os.walk

    def spy(top, *args, **kwargs):
        for root, folders, names in real_walk(top, *args, **kwargs):
            walked.append(Path(root).relative_to(tmp_path).as_posix())
            yield root, folders, names

    monkeypatch.setattr(os, "walk", spy)
    assert images.expand_inputs([str(tmp_path)], recursive=True) == [tmp_path / "sub" / "a.png"]
    assert sorted(walked) == [".", "sub"]
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    with pytest.raises(deepviz.DeepvizError) as no_images:  # nor does a hidden folder call for --recursive
        images.expand_inputs([str(tmp_path / "repo")], recursive=False)
    assert str(no_images.value).endswith(".pbm, .pnm)")


def test_a_rerun_into_the_photos_folder_draws_the_photos_not_its_own_figures(run, tmp_path):
    Image.new("RGB", (20, 20), RED).save(tmp_path / "a.jpg")
    Image.new("RGB", (20, 20), GREEN).save(tmp_path / "b.png")
    command = (tmp_path, "--weights", "none", "--layers", "mixed9", "--dpi", 20, "--out", tmp_path)
    status, out, err = run(*command)
    assert status == 0, err
    assert "left out" not in err
    assert {p.name for p in tmp_path.iterdir()} == {"a.jpg", "a.png", "b.png", "b-2.png"}
    first = {name: (tmp_path / name).read_bytes() for name in ("a.jpg", "b.png")}
    status, out, err = run(*command)
    assert status == 0, err
    assert f"deepviz: left out 2 figures deepviz drew: {tmp_path / 'a.png'}, {tmp_path / 'b-2.png'}\n" in err
    assert [line for line in out.splitlines() if line.startswith("==")] == [f"== {tmp_path / 'a.jpg'}",
                                                                            f"== {tmp_path / 'b.png'}"]
    assert {p.name for p in tmp_path.iterdir()} == {"a.jpg", "a.png", "b.png", "b-2.png"}  # replaced, no -3
    assert all((tmp_path / name).read_bytes() == data for name, data in first.items())
    status, out, err = run(tmp_path / "a.png", "--weights", "none", "--quiet", "--layers", "mixed9", "--dpi", 20,
                           "--out", tmp_path / "figure_of_a_figure.png")  # named on its own: drawn
    assert status == 0, err
    elsewhere = tmp_path / "plots"
    elsewhere.mkdir()
    from matplotlib.image import imsave

    imsave(elsewhere / "plot.png", np.zeros((8, 8, 3)))  # Matplotlib's own image, not deepviz's: a photo
    assert images.expand_inputs([str(elsewhere)], recursive=False) == [elsewhere / "plot.png"]
    only_figures = tmp_path / "figures"
    only_figures.mkdir()
    (tmp_path / "a.png").rename(only_figures / "a.png")
    status, out, err = run(only_figures, "--quiet")
    assert status == 1
    assert err.startswith(f"deepviz: error: {only_figures}: directory holds no images (only 1 figure deepviz drew)")


def test_characters_missing_from_the_font_give_no_python_warnings(tmp_path):
    path = tmp_path / "狗 dog.png"
    Image.new("RGB", (20, 20), RED).save(path)
    result = run_cli(path, "--weights", "none", "--layers", "mixed9", "--dpi", 20, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "Glyph" not in result.stderr and "Warning" not in result.stderr
    assert (tmp_path / "out" / "狗 dog.png").is_file()


def test_missing_path(run, tmp_path):
    status, _, err = run(tmp_path / "nope.jpg", "--quiet")
    assert (status, err) == (1, f"deepviz: error: {tmp_path / 'nope.jpg'}: no such file; check the path\n")


def test_a_directory_without_images(run, tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    status, _, err = run(tmp_path, "--quiet")
    assert status == 1
    assert err.startswith(f"deepviz: error: {tmp_path}: directory holds no images (.jpg, .jpeg, .jpe, .jfif, .png")
    assert "--recursive" not in err
    (tmp_path / "holiday").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "holiday" / "beach.png")
    status, _, err = run(tmp_path, "--quiet")
    assert status == 1 and err.endswith("; it has subdirectories: add --recursive to look in them\n")


def test_an_unreadable_file(run, tmp_path, monkeypatch):
    path = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    status, _, err = run(path, "--quiet", "--weights", "none")
    assert (status, err) == (1, f"deepviz: error: {path}: permission denied; make the file readable (chmod +r)\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_file_for_real(tmp_path):
    path = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(path)
    path.chmod(0)
    with pytest.raises(deepviz.DeepvizError, match="permission denied"):
        images.load_image(path)


# --- Weights ------------------------------------------------------------------
def test_weights_file_missing(run, tmp_path):
    path = tmp_path / "missing.weights.h5"
    status, _, err = run(SAMPLE_PHOTO, "--quiet", "--weights", path)
    assert (status, err) == (1, f"deepviz: error: --weights {path}: no such file; check the path\n")


def test_weights_file_not_hdf5(run, tmp_path):
    path = tmp_path / "fake.weights.h5"
    path.write_text("not hdf5")
    status, _, err = run(SAMPLE_PHOTO, "--quiet", "--weights", path)
    assert status == 1
    assert err == (
        f"deepviz: error: --weights {path}: not an HDF5 file, so not Keras weights; "
        "pass a .h5 or .weights.h5 file saved by Keras\n"
    )


def test_weights_suffix_must_be_a_keras_one(run, tmp_path):
    status, _, err = run(SAMPLE_PHOTO, "--quiet", "--weights", tmp_path / "weights.pt")
    assert status == 2
    assert "expected 'imagenet', 'none' or a Keras weights file ending in .weights.h5 or .h5" in err


def test_weights_of_another_architecture(run, tmp_path):
    keras = backend.import_keras()
    other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Dense(2)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(str(path))
    status, _, err = run(SAMPLE_PHOTO, "--quiet", "--weights", path)
    assert status == 1
    assert err.startswith(f"deepviz: error: --weights {path}: not InceptionV3 weights; Keras could not load it "
                          "into InceptionV3 with the classifier head (")  # it has a Dense layer
    assert re.search(r"\(the weights of \d+ layers did not fit; the first: Layer 'conv2d' expected", err)
    assert err.endswith("Pass weights saved from keras.applications.InceptionV3, or --weights imagenet.\n")
    assert err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--weights", "imagnet"], "--weights imagnet: expected 'imagenet', 'none' or a Keras weights file ending in "
                               ".weights.h5 or .h5"),
    (["--model", "missing.keras"], "--model missing.keras: no such file; check the path"),
    (["--labels", "classes.txt"], "--labels names the classes of a model of your own (--model FILE); inception_v3 "
                                  "predicts the 1,000 ImageNet classes, whose names deepviz has: leave it out"),
    (["--model", "vgg16.weights.h5"], "--model vgg16.weights.h5: a file of weights alone, not a saved model; pass it "
                                      "as --weights vgg16.weights.h5 with the built-in --model it was saved from, or "
                                      "save your whole model with model.save('my_model.keras')"),
])
def test_a_bad_model_weights_or_labels_option_is_refused_before_the_build(run, args, message):
    status, out, err = run(SAMPLE_PHOTO, *args)
    assert (status, out) == (1 if "no such file" in message else 2, "")
    assert err == f"deepviz: error: {message}\n"  # and no "building ..." line before it


def test_legacy_h5_weights_as_keras_distributes_them(run, random_weights_file, tmp_path):
    keras = backend.import_keras()
    model = models.build_model(deepviz.MODELS["inception_v3"], include_top=True)
    model.load_weights(str(random_weights_file))
    legacy = tmp_path / "inception_v3_weights.h5"
    model.save(str(legacy))  # the legacy HDF5 format, readable by load_weights
    status, out, err = run(SAMPLE_PHOTO, "--quiet", "--weights", legacy, "--layers", "mixed9", "--out", tmp_path)
    assert status == 0, err
    status, reference, _ = run(SAMPLE_PHOTO, "--quiet", "--weights", random_weights_file, "--layers", "mixed9",
                               "--out", tmp_path)
    assert out.splitlines()[:4] == reference.splitlines()[:4]
    assert keras is not None


# --- Output paths -----------------------------------------------------------------
def test_out_in_a_missing_directory_is_created(run, tmp_path):
    out = tmp_path / "new" / "deeper" / "figure.png"
    status, _, _ = run(SAMPLE_PHOTO, "--quiet", "--weights", "none", "--layers", "mixed9", "--out", out)
    assert status == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_out_in_a_read_only_directory(run, tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(output.tempfile, "mkstemp", read_only)
    out = tmp_path / "figure.png"
    status, _, err = run(SAMPLE_PHOTO, "--quiet", "--weights", "none", "--layers", "mixed9", "--out", out)
    assert (status, err) == (1, f"deepviz: error: could not write the figure {out}: Read-only file system\n")
    assert not out.exists()


@pytest.mark.parametrize("out", [None, "figure.png", "new/deeper/"])
def test_an_out_folder_that_takes_no_file_is_refused_before_the_network_is_built(run, tmp_path, monkeypatch, out):
    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(output, "try_making_a_file", refused)
    monkeypatch.setattr(deepviz, "Visualizer", None)  # building the network would fail: it is not built
    status, stdout, err = run(SAMPLE_PHOTO, *(["--out", out] if out else []))
    named = f"--out {out}" if out else "the default output folder"
    assert (status, stdout) == (1, "")
    assert err == f"deepviz: error: {named}: cannot write into {tmp_path} (Permission denied); choose another --out\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="sysfs, where no file can be made, is Linux's")
def test_out_where_no_file_can_be_made_for_real(run):
    status, _, err = run(SAMPLE_PHOTO, "--weights", "none", "--out", "/sys/kernel/deepviz/figure.png")
    assert status == 1
    assert err.startswith("deepviz: error: --out /sys/kernel/deepviz/figure.png: cannot write into /sys/kernel (")
    status, _, err = run(SAMPLE_PHOTO, "--weights", "none", "--out", "/proc/deepviz/")  # which answers "no such file"
    assert status == 1
    assert err == ("deepviz: error: --out /proc/deepviz/: cannot write into /proc (it takes no new files); "
                   "choose another --out\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_out_in_a_read_only_directory_for_real(run, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    status, _, err = run(SAMPLE_PHOTO, "--quiet", "--weights", "none", "--layers", "mixed9", "--out", folder / "f.png")
    assert status == 1
    assert "Permission denied" in err


def test_out_over_an_existing_file_replaces_it(run, tmp_path):
    out = tmp_path / "figure.png"
    out.write_bytes(b"old figure")
    status, _, _ = run(SAMPLE_PHOTO, "--quiet", "--weights", "none", "--layers", "mixed9", "--out", out)
    assert status == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_nothing_is_written_outside_the_announced_path(run, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "figures" / "figure.png"
    status, stdout, _ = run(SAMPLE_PHOTO, "--weights", "none", "--layers", "mixed9", "--out", out)
    assert status == 0
    assert stdout.splitlines()[-1] == f"wrote {out}"
    assert list(work.iterdir()) == []
    assert [p.name for p in out.parent.iterdir()] == ["figure.png"]


# --- One odd photo never ends a run; library noise is one line per photo -------------
def dds_in_an_unimplemented_format(path):
    """A DDS header whose pixel format flags Pillow does not implement: it raises NotImplementedError."""
    header = (struct.pack("<7I", 124, 0x1007, 4, 4, 16, 0, 0) + b"\0" * 44
              + struct.pack("<8I", 32, 0x80000000, 0, 0, 0, 0, 0, 0) + struct.pack("<5I", 0x1000, 0, 0, 0, 0))
    path.write_bytes(b"DDS " + header + b"\0" * 64)
    return path


def test_any_decoding_failure_is_that_photos_failure_and_the_run_goes_on(run, tmp_path):
    odd = dds_in_an_unimplemented_format(tmp_path / "odd.dds")
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20), RED).save(good)
    status, out, err = run(odd, good, "--weights", "none", "--quiet", "--layers", "mixed0", "--out", tmp_path / "out")
    assert status == 1
    assert re.fullmatch(rf"deepviz: error: {re.escape(str(odd))}: not a readable image \([^\n]+\)\n", err)  # Pillow why
    assert f"wrote {tmp_path / 'out' / 'good.png'}" in out
    assert out.splitlines()[-1] == f"1 of 2 images drawn; failed: {odd}"


def warn_twice_then_open(real_open):
    def noisy_open(path, *args, **kwargs):
        import warnings

        os.write(2, b"TIFFFetchNormalTag: Defined set_get_field_type of custom tag 903\n")  # C-level chatter
        warnings.warn("Tag data larger than file. Skipping tag 42112", UserWarning)
        warnings.warn("Invalid APNG, will use default PNG image if possible", UserWarning)
        return real_open(path, *args, **kwargs)

    return noisy_open


def test_reading_warnings_are_one_line_per_photo_and_c_chatter_stays_off(tmp_path, monkeypatch, capfd):
    photo = tmp_path / "noisy.png"
    Image.new("RGB", (20, 20), RED).save(photo)
    monkeypatch.setattr(Image, "open", warn_twice_then_open(Image.open))
    status = deepviz.main([str(photo), "--weights", "none", "--quiet", "--layers", "mixed0", "--out", str(tmp_path)])
    err = capfd.readouterr().err
    assert status == 0
    assert err == f"deepviz: warning: {photo}: Tag data larger than file. Skipping tag 42112 (and 1 more)\n"


def test_debug_shows_every_warning_and_the_c_chatter(tmp_path, monkeypatch, capfd):
    photo = tmp_path / "noisy.png"
    Image.new("RGB", (20, 20), RED).save(photo)
    monkeypatch.setattr(Image, "open", warn_twice_then_open(Image.open))
    with pytest.warns(UserWarning) as shown:  # pytest takes the warnings that would go to stderr
        status = deepviz.main([str(photo), "--weights", "none", "--quiet", "--debug", "--layers", "mixed0",
                               "--out", str(tmp_path)])
    err = capfd.readouterr().err
    assert status == 0
    messages = [str(warning.message) for warning in shown]
    assert "Tag data larger than file. Skipping tag 42112" in messages
    assert "Invalid APNG, will use default PNG image if possible" in messages
    assert "TIFFFetchNormalTag" in err and "deepviz: warning:" not in err
