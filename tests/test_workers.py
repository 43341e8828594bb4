"""Drawing in worker processes: plain data in, files out, reports in input order, failures and Ctrl-C."""

import concurrent.futures
import multiprocessing
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from _deepviz import analysis, figure, run as run_module, stats, workers
from _deepviz.errors import DeepvizError
from conftest import deepviz_on_small_photos

NETWORK_LIBRARIES = ("keras", "tensorflow", "torch", "jax")
SMALL_RUN = ("--weights", "none", "--quiet", "--layers", "mixed9", "--max-maps", 8, "--dpi", 30)


def small_job(out_path):
    maps = np.random.default_rng(0).random((4, 4, 8), np.float32)
    layer = stats.summarize_layer("layer", maps, 8, "mean")
    style = figure.FigureStyle("title", "channel", "viridis", 20)
    return workers.DrawJob(Image.new("RGB", (40, 30), "red"), [layer], None, style, out_path, {}, {"maps": maps})


def collector() -> tuple[list, object]:
    """A list, and a `deliver(tag, report)` for DrawingPool that appends (tag, report) to it."""
    reports = []
    return reports, lambda tag, report: reports.append((tag, report))


def test_workers_draw_without_importing_a_network_library_and_ignore_ctrl_c(tmp_path):
    with workers.DrawingPool(2) as pool:
        worker_ids = {pool.executor.submit(os.getpid).result() for _ in range(4)}
        for worker_id in worker_ids:  # as a terminal's Ctrl-C reaches every process of the group
            os.kill(worker_id, signal.SIGINT)
        jobs = [small_job(tmp_path / f"{i}.png") for i in range(4)]
        reports, deliver = collector()
        for job in jobs:
            pool.submit(job, job.out_path, deliver)
        pool.finish(deliver)
        modules = set().union(*(pool.executor.submit(workers.loaded_modules).result() for _ in range(4)))
    assert worker_ids and os.getpid() not in worker_ids
    assert [tag for tag, _ in reports] == [job.out_path for job in jobs]  # in submission order
    for job, (_, report) in zip(jobs, reports):
        assert report.error is None
        assert report.written == [job.out_path, job.out_path.with_suffix(".json"), job.out_path.with_suffix(".npz")]
        with Image.open(job.out_path) as image:
            assert image.format == "PNG"
    assert "matplotlib" in modules
    assert [name for name in modules if name.split(".")[0] in NETWORK_LIBRARIES] == []


def make_photos(folder, sizes):
    folder.mkdir()
    paths = []
    for i, size in enumerate(sizes):
        paths.append(folder / f"{'abc'[i]}.png")
        Image.new("RGB", size, (60 * i, 200, 90)).save(paths[-1])
    return paths


def test_workers_write_the_same_files_and_stdout_as_one_process_in_input_order(run, tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)  # the default: two workers
    photos = make_photos(tmp_path / "in", [(1000, 750), (40, 30), (50, 80)])  # the first takes longest to draw
    runs = {}
    for name, option in [("default", []), ("one", ["--workers", 1])]:
        status, out, err = run(*photos, *SMALL_RUN, "--json", "--save-arrays", "--out", tmp_path / name, *option)
        assert (status, err) == (0, "")
        runs[name] = out.replace(str(tmp_path / name), "OUT")
    assert runs["default"] == runs["one"]
    *block_lines, summary = runs["default"].splitlines()
    assert summary == "3 of 3 images drawn"
    blocks = "\n".join(block_lines).split("== ")[1:]
    assert [block.splitlines()[0] for block in blocks] == [str(photo) for photo in photos]
    for block, photo in zip(blocks, photos):  # each block whole: header, predictions, layer, its three files
        assert block.splitlines()[-3:] == [f"wrote OUT/{photo.stem}{suffix}" for suffix in (".png", ".json", ".npz")]
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "default").iterdir()) and len(names) == 9
    for name in names:
        one, default = tmp_path / "one" / name, tmp_path / "default" / name
        if name.endswith(".npz"):  # zip entries carry the time they were written
            with np.load(one) as expected, np.load(default) as found:
                assert sorted(expected) == sorted(found)
                for key in expected:
                    np.testing.assert_array_equal(found[key], expected[key])
        else:
            assert default.read_bytes() == one.read_bytes(), name


def test_a_photo_failing_in_a_worker_is_reported_and_the_run_goes_on(run, tmp_path):
    photos = make_photos(tmp_path / "in", [(40, 30), (40, 30), (40, 30)])
    (tmp_path / "out" / "b.json").mkdir(parents=True)  # the second photo's JSON cannot be written...
    earlier = PngImagePlugin.PngInfo()
    earlier.add_text("Software", "Matplotlib version3.8.0, https://matplotlib.org/")
    Image.new("RGB", (4, 4)).save(tmp_path / "out" / "b.png", pnginfo=earlier)  # ...beside an earlier run's figure
    status, out, err = run(*photos, *SMALL_RUN, "--json", "--workers", 2, "--out", tmp_path / "out")
    assert status == 1
    assert err == f"deepviz: error: could not write the JSON {tmp_path / 'out' / 'b.json'}: Is a directory\n"
    lines = out.splitlines()
    assert lines[-1] == f"2 of 3 images drawn; failed: {photos[1]}"
    assert f"wrote {tmp_path / 'out' / 'a.json'}" in lines and f"wrote {tmp_path / 'out' / 'c.json'}" in lines
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json", "a.png", "b.json", "b.png", "c.json",
                                                                    "c.png"]
    assert list((tmp_path / "out" / "b.json").iterdir()) == []


def test_ctrl_c_with_workers_stops_them_and_leaves_no_partial_file(run, tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "in", [(40, 30), (40, 30), (40, 30)])
    first_figure = tmp_path / "out" / "a.png"
    real_forward_pass = analysis.run_forward_pass
    calls = []

    def interrupted_at_the_third_batch_once_a_worker_wrote_the_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            deadline = time.monotonic() + 60
            while not first_figure.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            raise KeyboardInterrupt
        return real_forward_pass(*args, **kwargs)

    monkeypatch.setattr(analysis, "run_forward_pass", interrupted_at_the_third_batch_once_a_worker_wrote_the_first)
    status, out, err = run(*photos, *SMALL_RUN, "--workers", 2, "--batch-size", 1, "--out", tmp_path / "out")
    assert (status, err) == (130, "interrupted\n")
    assert multiprocessing.active_children() == []  # the workers are gone
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] in (["a.png"], ["a.png", "b.png"])  # each whole: b's job was written or dropped
    for path in written:
        with Image.open(path) as image:
            image.verify()
    # each figure written is reported, in input order, as --workers 1 reports the photos drawn before Ctrl-C
    assert [line for line in out.splitlines() if line.startswith(("== ", "wrote "))] == [
        line for path, photo in zip(written, photos) for line in (f"== {photo}", f"wrote {path}")]


class InterruptedWait(concurrent.futures.Future):
    """A job whose first wait is cut by Ctrl-C, as a terminal's would be; it is written meanwhile."""

    def result(self, timeout=None):
        if not self.done():
            self.set_result("report b")
            raise KeyboardInterrupt
        return super().result(timeout)


def test_reports_delivered_or_awaited_when_ctrl_c_comes_are_each_delivered_once():
    pool = workers.DrawingPool(1)
    written = concurrent.futures.Future()
    written.set_result("report a")
    pool.pending.extend(workers.InFlight(tag, None, future, {}, 0) for tag, future in [("a", written),
                                                                                        ("b", InterruptedWait())])
    reports, deliver = collector()
    with pytest.raises(KeyboardInterrupt):
        pool.finish(deliver)  # a's report was delivered, then the wait for b's was interrupted
    pool.stop(deliver)
    assert reports == [("a", "report a"), ("b", "report b")]


class InterruptedDelivery:
    """A deliver(tag, report) that Ctrl-C reaches as it prints its first report's lines."""

    def __init__(self):
        self.reports = []

    def __call__(self, tag, report):
        if not self.reports:
            signal.raise_signal(signal.SIGINT)
        self.reports.append((tag, report))


def test_ctrl_c_as_a_report_is_delivered_lets_it_be_delivered_whole_and_once():
    pool = workers.DrawingPool(1)
    for tag in ("a", "b"):
        written = concurrent.futures.Future()
        written.set_result(f"report {tag}")
        pool.pending.append(workers.InFlight(tag, None, written, {}, 0))
    deliver = InterruptedDelivery()
    with pytest.raises(KeyboardInterrupt):
        pool.finish(deliver)  # interrupted once a's report was delivered, before b's
    pool.stop(deliver)
    assert deliver.reports == [("a", "report a"), ("b", "report b")]


def test_a_job_whose_worker_died_as_ctrl_c_came_is_reported_with_the_files_it_wrote(tmp_path):
    pool = workers.DrawingPool(1)
    stopped = concurrent.futures.Future()
    stopped.set_exception(concurrent.futures.process.BrokenProcessPool("stopped"))
    for name in ("a", "b"):  # b, never started, wrote nothing: dropped, as Ctrl-C drops the jobs not started
        job = small_job(tmp_path / f"{name}.png")
        pool.pending.append(workers.InFlight(name, job, stopped, dict.fromkeys(workers.planned_files(job)), 0))
    (tmp_path / "a.png").write_bytes(b"a figure")
    reports, deliver = collector()
    pool.stop(deliver)
    [(tag, report)] = reports
    assert (tag, report.written) == ("a", [tmp_path / "a.png"])
    assert report.error.startswith(f"could not write {tmp_path / 'a.json'}: the process writing it died")


def test_an_error_before_the_first_photo_stops_the_workers(run, tmp_path):
    photos = make_photos(tmp_path / "in", [(40, 30), (40, 30)])
    status, _, err = run(*photos, "--weights", "none", "--quiet", "--layers", "no_such_layer", "--workers", 2,
                         "--out", tmp_path / "out")
    assert status == 2 and err.startswith("deepviz: error: ")
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("cores, photos, expected", [(16, 64, 16), (16, 3, 3), (1, 64, 1)])
def test_default_workers_are_the_usable_cores_at_most_one_per_photo(monkeypatch, cores, photos, expected):
    monkeypatch.setattr(workers, "usable_cores", lambda: cores)
    assert workers.default_workers(photos) == expected


@pytest.mark.parametrize("count", [1, 2])
def test_a_figure_that_cannot_be_made_fails_its_photo_and_the_next_are_drawn(tmp_path, count):
    jobs = [small_job(tmp_path / f"{i}.png") for i in range(3)]
    jobs[1].style = figure.FigureStyle("title", "channel", "no_such_colormap", 20)  # Matplotlib raises KeyError
    reports, deliver = collector()
    with workers.DrawingPool(count) as pool:
        for job in jobs:
            pool.submit(job, job.out_path, deliver)
        pool.finish(deliver)
    assert [tag for tag, _ in reports] == [job.out_path for job in jobs]
    (_, first), (_, failed), (_, third) = reports
    assert first.error is third.error is None and len(first.written) == len(third.written) == 3
    assert failed.written == []
    assert failed.error.startswith(f"could not make the figure {jobs[1].out_path}: KeyError: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.json", "0.npz", "0.png", "2.json", "2.npz", "2.png"]


class DiesWhenWritten:
    """Arrays whose worker dies as it writes them, as a crash in a library would end it: no exception, no cleanup."""

    def __array__(self, dtype=None, copy=None):
        os._exit(1)


def dying_job(out_path):
    job = small_job(out_path)
    job.arrays = {"maps": DiesWhenWritten()}  # written last, after the figure and the JSON
    return job


class SlowToWrite:
    """Arrays that take a while to write: the last file of a job, after its figure and JSON."""

    def __array__(self, dtype=None, copy=None):
        time.sleep(1.5)
        return np.zeros(3, np.float32)


def test_a_worker_sent_sigterm_writes_the_job_in_hand_whole_and_starts_no_other(tmp_path):
    executor = workers.start_executor(1)
    worker_id = executor.submit(os.getpid).result()
    slow, later = small_job(tmp_path / "a.png"), small_job(tmp_path / "b.png")
    slow.arrays = {"maps": SlowToWrite()}
    futures = [executor.submit(workers.draw_and_write, job) for job in (slow, later)]
    deadline = time.monotonic() + 60
    while not (tmp_path / "a.png").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(worker_id, signal.SIGTERM)  # as the arrays are written
    concurrent.futures.wait(futures, timeout=60)
    executor.shutdown(wait=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npz", "a.png"]  # whole; b never started
    assert isinstance(futures[1].exception(), concurrent.futures.process.BrokenProcessPool)


@pytest.mark.parametrize("count", [1, 2])  # with two, the other worker is stopped too, maybe as it writes
def test_a_worker_that_dies_fails_its_photo_and_the_others_are_drawn(tmp_path, count):
    jobs = [small_job(tmp_path / "a.png"), dying_job(tmp_path / "b.png"), small_job(tmp_path / "c.png")]
    later = small_job(tmp_path / "d.png")
    warnings = []
    reports, deliver = collector()
    with workers.DrawingPool(count + 1, warnings.append) as pool:  # the jobs in flight: all but the later one
        for job in jobs:
            pool.submit(job, job.out_path.stem, deliver)
        pool.submit(later, "d", deliver)  # to a fresh pool
        pool.finish(deliver)
        assert pool.workers == count + 1  # as many: a photo was to blame, not the memory
    assert [tag for tag, _ in reports] == ["a", "b", "c", "d"]
    assert len(warnings) == 1 and warnings[0].startswith("a drawing worker process died; drawing the ")
    for tag, report in reports:
        files = [tmp_path / f"{tag}{suffix}" for suffix in (".png", ".json", ".npz")]
        if tag == "b":  # reported with the files it wrote, and the one it could not
            assert report.written == files[:2]
            assert report.error == (f"could not write {files[2]}: the process writing it died "
                                    "(killed, out of memory, or a crash in Matplotlib or Pillow)")
        else:
            assert (report.written, report.error) == (files, None)
    # each file whole, none left half-written: the temporary files of the stopped writes are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{tag}{suffix}" for tag in "abcd"
                                                          for suffix in (".json", ".npz", ".png")
                                                          if (tag, suffix) != ("b", ".npz")]
    assert multiprocessing.active_children() == []


def test_a_run_whose_worker_dies_reports_that_photo_and_draws_the_others(run, tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "in", [(40, 30), (40, 30), (40, 30)])
    real_draw_job = run_module.draw_job

    def the_second_kills_its_worker(path, *args):
        job = real_draw_job(path, *args)
        if path == photos[1]:
            job.arrays = {"maps": DiesWhenWritten()}
        return job

    monkeypatch.setattr(run_module, "draw_job", the_second_kills_its_worker)
    status, out, err = run(*photos, *SMALL_RUN, "--workers", 2, "--batch-size", 3, "--out", tmp_path / "out")
    out_folder = tmp_path / "out"
    assert status == 1
    warning, error = err.splitlines()
    assert re.fullmatch("deepviz: warning: a drawing worker process died; drawing the [123] photos? in hand again, "
                        "one at a time", warning)
    assert error == (f"deepviz: error: could not write {out_folder / 'b.npz'}: the process writing it died "
                     "(killed, out of memory, or a crash in Matplotlib or Pillow)")
    assert [line for line in out.splitlines() if line.startswith(("== ", "wrote "))] == [
        f"== {photos[0]}", f"wrote {out_folder / 'a.png'}", f"== {photos[1]}", f"wrote {out_folder / 'b.png'}",
        f"== {photos[2]}", f"wrote {out_folder / 'c.png'}"]
    assert out.splitlines()[-1] == f"2 of 3 images drawn; failed: {photos[1]}"
    assert sorted(p.name for p in out_folder.iterdir()) == ["a.png", "b.png", "c.png"]
    assert multiprocessing.active_children() == []


def test_a_worker_killed_as_it_wrote_leaves_no_temporary_file_and_reports_what_it_wrote(tmp_path):
    job = small_job(tmp_path / "a.png")
    (tmp_path / "a.json").write_text("{}")  # an earlier run's, replaced by this one's
    stale = tmp_path / ".a.earlier.part"  # an earlier run's, killed as it wrote: not this run's to delete
    stale.write_bytes(b"")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        flight = workers.InFlight.hand_over("a", job, executor)
        assert flight.future.result().error is None
    (tmp_path / "a.npz").unlink()  # as if the worker was killed as it wrote the arrays...
    (tmp_path / ".a.xyz.part").write_bytes(b"half")  # ...leaving its temporary file
    report = flight.report_by_files()
    assert report.written == [tmp_path / "a.png", tmp_path / "a.json"]
    assert report.error.startswith(f"could not write {tmp_path / 'a.npz'}: the process writing it died")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.earlier.part", "a.json", "a.png"]


def test_a_worker_killed_from_outside_halves_the_pool_which_goes_on(tmp_path):
    warnings = []
    with workers.DrawingPool(2, warnings.append) as pool:
        os.kill(pool.executor.submit(os.getpid).result(), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the pool knows: its next job is refused at once
            try:
                pool.executor.submit(int).result()
            except concurrent.futures.process.BrokenProcessPool:
                break
        job = small_job(tmp_path / "a.png")
        reports, deliver = collector()
        pool.submit(job, "a", deliver)
        pool.finish(deliver)
        [(tag, report)] = reports
        assert pool.workers == 1
    assert (tag, report.error) == ("a", None) and report.written == workers.planned_files(job)
    assert warnings == ["a drawing worker process died",
                        "no photo was to blame (a worker killed, or out of memory): going on with 1 drawing worker"]


def test_workers_that_die_as_they_start_stop_the_run_with_an_error(monkeypatch):
    def dying_at_start(workers_count):
        return concurrent.futures.ProcessPoolExecutor(
            workers_count, mp_context=multiprocessing.get_context("spawn"), initializer=os._exit, initargs=(1,))

    monkeypatch.setattr(workers, "start_executor", dying_at_start)
    with pytest.raises(DeepvizError, match=r"^drawing worker processes die as they start \(2 workers; .*\); "
                                           "rerun with --workers 1, which draws in the main process$"):
        workers.start_working_executor(2)
    assert multiprocessing.active_children() == []


def test_ctrl_c_in_the_one_process_lets_the_figure_in_hand_be_written_whole_and_reported(tmp_path, monkeypatch):
    real_draw_and_write = workers.draw_and_write

    def interrupted_while_drawing(job):
        signal.raise_signal(signal.SIGINT)  # as a terminal's Ctrl-C, between the figure and its JSON
        return real_draw_and_write(job)

    monkeypatch.setattr(workers, "draw_and_write", interrupted_while_drawing)
    job = small_job(tmp_path / "a.png")
    pool = workers.DrawingPool(1)
    reports, deliver = collector()
    with pytest.raises(KeyboardInterrupt):
        pool.submit(job, "a", deliver)
    pool.stop(deliver)
    [(tag, report)] = reports  # delivered, then the Ctrl-C held back: as a worker's job in hand is
    assert tag == "a" and report.written == [job.out_path, job.out_path.with_suffix(".json"),
                                               job.out_path.with_suffix(".npz")]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_and_sigterm_held_back_are_delivered_after_the_block_sigterm_first_to_the_handlers_put_back():
    calls = []

    def on_sigterm(signum, frame):
        calls.append("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with pytest.raises(KeyboardInterrupt):
            with workers.interruptions_deferred():
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGTERM)
                calls.append("the block, whole")
        assert calls == ["the block, whole", "SIGTERM"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is on_sigterm
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_failed_photos_are_listed_in_input_order_however_they_were_found(tmp_path, capsys):
    paths = [tmp_path / name for name in ("a.jpg", "b.jpg", "c.jpg")]
    failures = run_module.FailureLog(several=True)
    failures.record(paths[2], DeepvizError("unreadable"))  # read ahead of the drawing...
    failures.record(paths[0], DeepvizError("could not write"))  # ...whose failure is known later
    assert run_module.report_totals(paths, failures) == 1
    assert capsys.readouterr().out == f"1 of 3 images drawn; failed: {paths[0]}, {paths[2]}\n"


def processes_marked(marker: str) -> list[int]:
    """The live processes whose environment holds `marker` (Linux's /proc): a run's and its workers'."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            marked = marker.encode() in (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # not a process, gone, or not ours to read
            continue
        if marked and state != "Z":
            found.append(int(entry.name))
    return found


def start_a_long_run(tmp_path, marker: str) -> tuple[subprocess.Popen, str]:
    """deepviz over 300 small photos with two workers, one photo a batch, in a process group of its own;
    started, and its first "wrote" line."""
    command = deepviz_on_small_photos(tmp_path, 300)
    process = subprocess.Popen(
        [*command, "--workers", "2", "--batch-size", "1", "--quiet", "--out", tmp_path / "figures"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "MPLBACKEND": "Agg", "DEEPVIZ_TEST_RUN": marker})
    for line in process.stdout:
        if line.startswith("wrote "):
            return process, line
    raise AssertionError(f"no figure written: {process.communicate(timeout=60)}")


def gone_within(seconds: float, marker: str) -> bool:
    deadline = time.monotonic() + seconds
    while processes_marked(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_marked(marker) == []


needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads processes from Linux's /proc")


@needs_proc
@pytest.mark.parametrize("to_every_process", [False, True])  # as kill does; as a job scheduler or systemd does
def test_sigterm_stops_the_workers_reports_each_file_written_and_leaves_no_partial_file(tmp_path, to_every_process):
    marker = uuid.uuid4().hex
    process, first = start_a_long_run(tmp_path, marker)
    if to_every_process:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    out, err = process.stdout.read(), process.stderr.read()  # stdout's lines read ahead are in its buffer
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGTERM  # ended by the signal, once the workers were stopped
    assert err.endswith("terminated\n")
    reported = [line.removeprefix("wrote ") for line in [first, *out.splitlines()] if line.startswith("wrote ")]
    written = [str(path) for path in (tmp_path / "figures").iterdir()]  # no temporary file among them
    assert sorted(written) == sorted(path.strip() for path in reported) and len(written) < 300  # it stopped
    assert gone_within(10, marker)


@needs_proc
def test_the_workers_end_when_the_main_process_is_killed(tmp_path):
    marker = uuid.uuid4().hex
    process, _ = start_a_long_run(tmp_path, marker)
    assert len(processes_marked(marker)) >= 3  # the run and its two workers (and Python's resource tracker)
    process.kill()  # as the system's out-of-memory killer would: no chance to stop the pool
    process.communicate(timeout=60)
    assert gone_within(30, marker)  # each worker ends once its job in hand is written
    assert [path for path in (tmp_path / "figures").iterdir() if path.suffix != ".png"] == []
