"""The benchmark scripts: bad arguments are one line each, and the default section runs on random weights."""

import subprocess
import sys

import pytest

from conftest import ROOT

BAD_ARGUMENTS = [
    ("bench.py", ["--weights", "none", "--photos", "/no/such/folder"], "--photos /no/such/folder: expected a folder"),
    ("bench.py", ["--weights", "/no/such.h5"], "--weights /no/such.h5: no such file"),
    ("bench.py", ["--weights", "none", "--repeats", "0"], "--repeats: expected a whole number from 1"),
    ("bench.py", ["--weights", "none", "--throughput-photos", "1"], "--throughput-photos: expected a whole number"),
    ("bench_png.py", ["README.md"], "README.md: expected a PNG figure"),
    ("bench_synthesis.py", ["--weights", "none", "--channels", "0"], "--channels: expected a whole number from 1"),
    ("synthesis_eval.py", ["--weights", "none", "--photos", "images", "--per-layer", "0"],
     "--per-layer: expected a whole number from 1"),
    ("bench_exemplars.py", ["--weights", "none", "--counts", "100,4"], "--counts 100,4: expected photo counts"),
]


def bench(script, *args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


@pytest.mark.parametrize("script, args, message", BAD_ARGUMENTS)
def test_a_bad_argument_is_one_line_naming_it(script, args, message):
    result = bench(script, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr


def test_the_floor_section_runs_on_random_weights():
    result = bench("bench.py", "--weights", "none", "--only", "floor", "--repeats", "1", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| floor: import Keras, build, load weights, one forward pass", "| deepviz IMAGE --layers conv2d_1 mixed3",
        "| deepviz --help"]
