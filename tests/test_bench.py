"""The benchmark scripts: bad arguments are one line each, and the default section runs on random weights."""

import os
import re
import signal
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


def test_each_row_is_printed_once_measured_so_a_run_cut_short_keeps_them(tmp_path):
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bench.py"), "--weights", "none", "--only",
                                "throughput", "--throughput-photos", "2", "--batch-size", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                               start_new_session=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        lines = [process.stdout.readline() for _ in range(5)]  # "Measured on", blank, header, rule, first row
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # long before the section ends; the runs it started too
        process.communicate()
    assert lines[0].startswith("Measured on: ") and lines[2].startswith("| measurement |")
    assert lines[4].startswith("| network alone, batches of 2 |  | ") and "images/s" in lines[4]


def test_the_startup_section_gives_each_phase_of_a_run_before_its_first_figure():
    result = bench("bench.py", "--weights", "none", "--only", "startup", "--batch-size", "2", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    row = [line for line in result.stdout.splitlines() if line.startswith("| start-up")][0]
    phases = [float(number) for number in re.findall(r"(?:Keras|network|model|of 2|batch) (\d+\.\d+)", row)]
    assert len(phases) == 5 and all(seconds >= 0 for seconds in phases) and phases[1] > 0, row  # a network is built
    total = float(row.split(" | ")[1].removesuffix(" s"))
    assert total == pytest.approx(sum(phases[:4]), abs=0.26)  # before the first figure: the second batch left out
    shown = [line.split(":")[1].strip() for line in result.stderr.splitlines() if line.startswith("bench:   ")]
    assert shown == ["import", "network", "feature model", "first batch", "second batch"]  # as each phase ends
