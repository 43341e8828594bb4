"""The command line: help, version, argument checks, layer names, --list-layers."""

import re
import subprocess
import sys

import pytest

import deepviz
from _deepviz import analysis
from conftest import ROOT, SAMPLE_PHOTO, run_cli

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


def help_text(run):
    status, out, _ = run("--help")
    assert status == 0
    return out


def test_help_lists_every_option_with_its_default(run):
    text = help_text(run)
    for option in ["--layers", "--list-layers", "--model", "--list-models", "--weights", "--preprocess",
                   "--labels", "--top", "--max-maps", "--rank", "--norm", "--cmap", "--dpi", "--out",
                   "--recursive", "--batch-size", "--quiet", "--version"]:
        assert option in text
    squashed = " ".join(text.split())
    preprocess = ("(default: a built-in model's own; for a saved model, that of the built-in architecture it is "
                  "built on, 'none' if it scales its pixels itself, else 'inception')")
    for default in ["for InceptionV3 conv2d_1 mixed0 mixed3 mixed7 mixed10)", "(default: imagenet)",
                    "(default: inception_v3)", preprocess,
                    "(default: 3)", "(default: 64)", "(default: mean)", "(default: channel)",
                    "(default: viridis)", "(default: 100)", "(default: 8)"]:
        assert default in squashed
    assert "(299x299 for InceptionV3) without cropping" in squashed


def test_readme_documents_every_flag(run):
    flags = set(OPTION.findall(help_text(run))) - {"--help"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = sorted(flag for flag in flags if f"`{flag}" not in readme)
    assert not missing, f"flags missing from the README: {missing}"


def test_pip_install_asks_for_what_requirements_txt_asks_for():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    required = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    assert sorted(declared) == sorted(required)


def test_version(run):
    status, out, _ = run("--version")
    assert status == 0
    assert re.fullmatch(r"deepviz \d+\.\d+\.\d+\n", out)


HEAVY = ("tensorflow", "keras", "matplotlib")


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["--top", "0"], ["--max-maps", "x"],
                                  ["images/grace_hopper.jpg", "--weights", "foo.bin"],
                                  ["images/grace_hopper.jpg", "--out", "x.gif"]])
def test_help_and_argument_errors_import_no_heavy_library(args):
    probe = (
        "import sys, deepviz\n"
        f"status = deepviz.main({args!r})\n"
        f"print(status, [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    status, imported = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert imported == "[]"
    assert status == ("0" if args[0] in ("--help", "--version") else "2")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--top", "0"], "argument --top: expected a whole number from 1 to 1000, got 0"),
        (["--top", "1001"], "argument --top: expected a whole number from 1 to 1000, got 1001"),
        (["--max-maps", "0"], "argument --max-maps: expected a whole number of at least 1 or 'all', got 0"),
        (["--max-maps", "-3"], "argument --max-maps: expected a whole number of at least 1 or 'all', got -3"),
        (["--max-maps", "x"], "argument --max-maps: expected a whole number of at least 1 or 'all', got 'x'"),
        (["--dpi", "0"], "argument --dpi: expected a whole number from 10 to 1200, got 0"),
        (["--rank", "median"], "argument --rank: invalid choice: 'median'"),
        (["--norm", "global"], "argument --norm: invalid choice: 'global'"),
        (["--cmap", "viridiss"], "argument --cmap: unknown colormap 'viridiss'; did you mean viridis"),
        (["--layers"], "argument --layers: expected at least one argument"),
        (["--channels", "5,5,7"], "argument --channels: expected each channel once, got 5 twice in '5,5,7'"),
    ],
)
def test_bad_option_values_are_usage_errors(run, args, expected):
    status, out, err = run(SAMPLE_PHOTO, *args)
    assert status == 2
    assert err.startswith(f"deepviz: error: {expected}") and err.count("\n") == 1  # not argparse's usage block
    assert out == ""


def test_unsupported_figure_suffix_lists_formats(run, tmp_path):
    status, _, err = run(SAMPLE_PHOTO, "--out", tmp_path / "figure.xyz")
    assert status == 2
    assert err == (
        f"deepviz: error: --out {tmp_path / 'figure.xyz'}: unsupported figure format '.xyz'; "
        "use one of .png, .pdf, .svg, .jpg, .jpeg\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "typed, suggestion",
    [("mixed33", "'mixed3'"), ("Mixed3", "'mixed3'"), ("conv2d1", "'conv2d_1'"), ("MIXED10", "'mixed10'")],
)
def test_unknown_layer_is_a_usage_error_with_suggestions(run, tmp_path, typed, suggestion):
    status, out, err = run(SAMPLE_PHOTO, "--weights", "none", "--quiet", "--layers", "mixed3", typed, "--out", tmp_path)
    assert status == 2
    assert err.startswith(f"deepviz: error: InceptionV3 has no layer '{typed}'; did you mean {suggestion}")
    assert err.endswith("See all 313 with `deepviz --list-layers` (in Python: Visualizer.layers()).\n")
    assert "Traceback" not in err
    assert "wrote" not in out
    assert list(tmp_path.iterdir()) == []


def test_an_image_swallowed_by_layers_gets_a_hint(run):
    status, _, err = run("--weights", "none", "--layers", "mixed3", SAMPLE_PHOTO)
    assert status == 2
    assert "is a file: put images before --layers, or end the layer list with --" in err


def test_duplicate_layers_are_drawn_once(run, tmp_path):
    status, out, _ = run(SAMPLE_PHOTO, "--weights", "none", "--layers", "mixed3", "mixed3", "--out", tmp_path)
    assert status == 0
    assert sum(line.startswith("mixed3 ") for line in out.splitlines()) == 1


def test_list_layers(run):
    status, out, _ = run("--list-layers", "--quiet")
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 313
    assert re.fullmatch(r"\s+4  conv2d_1\s+Conv2D\s+\(147, 147, 32\)", lines[4])
    marked = [line.split()[1] for line in lines if line.endswith("<- block output")]
    assert marked == [f"mixed{i}" for i in range(11)]
    assert re.fullmatch(r"\s+312  predictions\s+Dense\s+\(1000,\)", lines[-1])


def test_list_layers_without_classifier_head(run, backbone_weights):
    status, out, _ = run("--list-layers", "--quiet", "--weights", backbone_weights)
    assert status == 0
    names = [line.split()[1] for line in out.splitlines()]
    assert names[-1] == "mixed10"
    assert "predictions" not in names


def test_subprocess_prints_exact_formats(tmp_path):
    result = run_cli(SAMPLE_PHOTO, "--weights", "none", "--layers", "mixed3", "avg_pool",
                     "--out", tmp_path / "fig.png")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "untrained network (--weights none): these predictions are meaningless"
    assert all(re.fullmatch(rf"{rank}\. [a-z_0-9'-]+ +\d+\.\d\d%", line, re.I) for rank, line in zip("123", lines[1:4]))
    number = r"-?\d[\d.e+-]*"
    assert re.fullmatch(
        rf"mixed3 \(17, 17, 768\): min {number} mean {number} max {number} zeros \d+\.\d% dead \d+", lines[4]
    )
    assert re.fullmatch(rf"avg_pool \(2048,\): min {number} mean {number} max {number} zeros \d+\.\d%", lines[5])
    assert lines[6] == f"wrote {tmp_path / 'fig.png'}"
    assert len(lines) == 7
    assert "Traceback" not in result.stderr
    assert "I0000" not in result.stderr  # TensorFlow's start-up logging stays off the terminal
    again = run_cli(SAMPLE_PHOTO, "--weights", "none", "--layers", "mixed3", "avg_pool", "--out", tmp_path / "2.png")
    assert again.stdout.splitlines()[:6] == lines[:6]  # random weights, but the same on every run


def broken_step(*args, **kwargs):
    raise RuntimeError("the step broke\nsecond line")


def test_an_internal_error_is_one_line_with_a_hint_and_nothing_written(run, tmp_path, monkeypatch):
    monkeypatch.setattr(analysis, "layer_summary", broken_step)
    out = tmp_path / "figure.png"
    status, stdout, err = run(SAMPLE_PHOTO, "--weights", "none", "--layers", "mixed0", "--quiet", "--out", out)
    assert status == 1
    assert err == ("deepviz: internal error: RuntimeError: the step broke\n"
                   "Rerun with --debug (or DEEPVIZ_DEBUG=1) for the full traceback, and report it.\n")
    assert stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", [["--debug"], []])
def test_debug_shows_the_full_traceback(run, tmp_path, monkeypatch, how):
    monkeypatch.setattr(analysis, "layer_summary", broken_step)
    if not how:
        monkeypatch.setenv("DEEPVIZ_DEBUG", "1")
    status, _, err = run(SAMPLE_PHOTO, "--weights", "none", "--layers", "mixed0", "--quiet", *how,
                         "--out", tmp_path / "figure.png")
    assert status == 1
    assert err.startswith("Traceback (most recent call last):")
    assert err.rstrip().endswith("RuntimeError: the step broke\nsecond line")


def test_an_out_path_that_cannot_be_written_is_refused_before_any_work(run, tmp_path):
    a_file = tmp_path / "photo.jpg"
    a_file.write_text("a file, not a folder")
    status, out, err = run(SAMPLE_PHOTO, "--weights", "none", "--out", a_file / "figure.png")
    assert status == 2 and out == ""
    assert err == f"deepviz: error: --out {a_file / 'figure.png'}: {a_file} is a file, not a directory; " \
                  "choose another path\n"
    status, out, err = run(SAMPLE_PHOTO, "--weights", "none", "--out", "")
    assert status == 2 and out == ""
    assert err.startswith("deepviz: error: --out: expected a figure file or a directory, received an empty path")


@pytest.mark.parametrize("option, value", [("--steps", 8), ("--steps", 256), ("--size", 64), ("--seed", 0)])
def test_synthesis_settings_without_synthesize_are_a_usage_error(run, option, value):
    status, out, err = run(SAMPLE_PHOTO, "--weights", "none", option, value)  # even at the default value
    assert status == 2 and out == ""
    assert err == f"deepviz: error: {option} sets up --synthesize; add --synthesize, or leave it out\n"


@pytest.mark.parametrize("option, value", [("--top", 3), ("--norm", "layer"), ("--rank", "max"), ("--batch-size", 8)])
def test_photo_options_with_patterns_alone_are_a_usage_error(run, option, value):
    status, out, err = run("--weights", "none", "--synthesize", "--channels", 1, option, value)  # even at the default
    assert status == 2 and out == ""
    assert err == (f"deepviz: error: {option} applies to photos, and --synthesize without IMAGE draws the patterns "
                   "alone; add an IMAGE, or leave it out\n")


@pytest.mark.parametrize("image", [[], [SAMPLE_PHOTO]])
def test_workers_with_synthesize_are_a_usage_error(run, image):
    status, out, err = run(*image, "--weights", "none", "--synthesize", "--channels", 1, "--workers", 2)
    assert status == 2 and out == ""
    assert err == ("deepviz: error: --workers 2: --synthesize draws in this process, where the network makes the "
                   "patterns; leave --workers out\n")


@pytest.mark.parametrize("args, message", [
    (["--cam-layer", "mixd10"],
     "--cam-layer mixd10 picks the layer --cam explains; add --cam, or leave --cam-layer out"),
    (["--per-channel", 9], "--per-channel sets up --exemplars; add --exemplars PHOTO ..., or leave it out"),
    (["--engine", "ray"], "--engine sets up --exemplars; add --exemplars PHOTO ..., or leave it out"),
    (["--channels", "5,6", "--max-maps", 64],
     "--channels draws exactly the channels listed and --max-maps the top-ranked ones; pass one of them"),
    (["--synthesize", "--cam"], "--cam is not drawn with --synthesize, whose figure pairs each channel's map with its "
                                "pattern; leave one of them out"),
    (["--cmap", "viridiss", "--out", "/sys/kernel/deepviz/x.png"],  # the usage error, before the folder is tried
     "argument --cmap: unknown colormap 'viridiss'; did you mean viridis or viridis_r or cividis? "
     "(see matplotlib.colormaps)"),
])
def test_an_option_of_another_mode_is_refused_not_ignored(run, monkeypatch, args, message):
    monkeypatch.setattr(deepviz, "Visualizer", None)  # refused before anything is built
    status, out, err = run(SAMPLE_PHOTO, *args)
    assert (status, out, err) == (2, "", f"deepviz: error: {message}\n")


def test_an_unknown_layer_without_suggestions_reads_as_a_sentence(run):
    status, _, err = run(SAMPLE_PHOTO, "--weights", "none", "--quiet", "--layers", "zzzzzz")
    assert status == 2
    assert err == ("deepviz: error: InceptionV3 has no layer 'zzzzzz'. See all 313 with `deepviz --list-layers` "
                   "(in Python: Visualizer.layers()).\n")
