"""Draw and write each photo's figure (and its JSON and arrays) in worker processes.

The forward-pass loop stays in the main process and hands each photo's reduced result
to a pool of processes that draw and write it; reports come back in input order. A
worker that dies costs the photo it was drawing, not the run (DrawingPool.recover). The
workers start with `spawn` (never `fork`, which would copy the main process's Keras
backend, its threads and locks) and import only what drawing needs: NumPy, Matplotlib,
Pillow and deepviz's drawing and output modules, never Keras or a backend.
With one worker everything runs in the main process, as the same function.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import gc
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

from PIL import Image

from .errors import DeepvizError
from .figure import FigureStyle, draw_figure
from .output import (arrays_path, arrays_write, file_identity, json_path, json_write, save_figure, temporaries_of,
                     write_in_turn)
from .synthesis_figure import draw_synthesis_figure
from .stats import LayerSummary


START_METHOD = "spawn"
JOBS_PER_WORKER = 2  # jobs handed over and not yet reported, per worker: enough to keep each one busy
CLOCK_SLACK_SECONDS = 1.0  # a file's time is the kernel's coarse clock, which may trail time.time()
JOB_IN_HAND = threading.Lock()  # held while this process draws and writes a job: a worker ends only between jobs
ENDING = threading.Event()  # set in a worker told to end (SIGTERM, or its main process gone): it starts no more jobs


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(photos: int) -> int:
    return max(1, min(usable_cores(), photos))


@dataclasses.dataclass
class DrawJob:
    """Everything one photo's files are made of: plain data, no network."""

    photo: Image.Image  # as shown in the figure (at most figure.PHOTO_DISPLAY_MAX_PIXELS a side)
    layers: list[LayerSummary]
    cams: list | None  # [(class name, probability, heatmap)]
    style: FigureStyle
    out_path: Path
    record: dict | None = None  # --json: what <stem>.json says
    arrays: dict | None = None  # --save-arrays
    patterns: dict | None = None  # --synthesize: {layer: {channel: Pattern}}, drawn beside the channels' maps


@dataclasses.dataclass
class DrawReport:
    written: list[Path]  # in the order written
    error: str | None = None  # why the next file could not be written


@dataclasses.dataclass(eq=False)  # each one itself
class InFlight:
    """A job handed to the workers, with what its files were before: which ones it wrote, if its worker dies."""

    tag: object
    job: DrawJob
    future: concurrent.futures.Future
    before: dict  # {path: file_identity(path)} of each file the job writes, as it was handed over
    handed_over_at: float  # time.time()

    @classmethod
    def hand_over(cls, tag, job: DrawJob, executor) -> InFlight:
        before = {path: file_identity(path) for path in planned_files(job)}
        handed_over_at = time.time()
        return cls(tag, job, executor.submit(draw_and_write, job), before, handed_over_at)

    def written(self) -> list[Path]:
        """The job's files that are new since it was handed over, in the order it writes them."""
        return [path for path, identity in self.before.items() if file_identity(path) != identity]

    def report_by_files(self) -> DrawReport:
        """The report of a job whose worker ended before it reported: the files it wrote (none of them partial),
        and if it did not write them all, that its worker died."""
        self.remove_temporaries()
        written = self.written()
        unwritten = [path for path in self.before if path not in written]
        if not unwritten:  # it ended once it had written them all
            return DrawReport(written)
        return DrawReport(written, f"could not write {unwritten[0]}: the process writing it died "
                                   "(killed, out of memory, or a crash in Matplotlib or Pillow)")

    def remove_temporaries(self) -> None:
        """Delete the temporary files its worker made and left, killed as it wrote (each file is written atomically).

        Older ones, of an earlier run that was killed, are left as they are.
        """
        for path in temporaries_of(self.job.out_path):  # its JSON's and arrays' too: they share the stem
            with contextlib.suppress(OSError):
                if path.stat().st_mtime >= self.handed_over_at - CLOCK_SLACK_SECONDS:
                    path.unlink()


def planned_files(job: DrawJob) -> list[Path]:
    """The files a job writes, in order: the figure, then the JSON and the arrays where asked for."""
    files = [job.out_path]
    if job.record is not None:
        files.append(json_path(job.out_path))
    if job.arrays is not None:
        files.append(arrays_path(job.out_path))
    return files


def draw_and_write(job: DrawJob) -> DrawReport:
    """Draw the figure and write it, then the JSON and the arrays; stop at the first write that fails."""
    with JOB_IN_HAND:
        if ENDING.is_set():  # told to end as it waited for this job: end_when_idle was waiting for the lock
            os._exit(0)
        with collected_once():
            return write_files(job)


@contextlib.contextmanager
def collected_once():
    """Python's automatic garbage collection held off while a figure is built and written, then one collection.

    A figure is tens of thousands of new objects, which set the collector off again and
    again over the whole heap (0.07 s of a default figure's 0.43 s in a worker). Its
    reference cycles are freed by the one collection after, at once (a worker would
    otherwise grow by a figure or more: 263 MiB after 12 default figures instead of 179 MiB).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect()


def write_files(job: DrawJob) -> DrawReport:
    """The figure, then the JSON and the arrays, as draw_and_write says."""
    writes = [(job.out_path, lambda: save_figure(job_figure(job), job.out_path, job.style.dpi), "the figure")]
    if job.record is not None:
        writes.append(json_write(job.out_path, job.record))
    if job.arrays is not None:
        writes.append(arrays_write(job.out_path, job.arrays))
    written = []
    failure = write_in_turn(writes, written.append)
    return DrawReport(written, failure)


def job_figure(job: DrawJob):
    if job.patterns is None:
        return draw_figure(job.photo, job.layers, job.style, job.cams)
    chosen = [(layer.name, list(layer.channels)) for layer in job.layers]
    return draw_synthesis_figure(job.photo, job.style.photo_title, chosen, job.patterns,
                                 {layer.name: layer for layer in job.layers}, job.style.cmap)


def start_worker() -> None:
    """Each worker: Ctrl-C is the main process's to handle; it stops the pool once the jobs in hand are written.

    SIGTERM (sent to the whole group, or by the pool as it stops after a worker died), or
    the main process ending without stopping the pool (killed, out of memory), ends the
    worker once the job in hand is written.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=end_when_idle, name="deepviz-end-when-idle", daemon=True).start()
    threading.Thread(target=end_with_the_main_process, name="deepviz-main-process-watch", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda signum, frame: ENDING.set())
    import matplotlib.backends.backend_agg  # noqa: F401  (loaded while the main process builds the network)

    gc.freeze()  # the modules just loaded stay: garbage collections skip them


def end_with_the_main_process() -> None:
    """Wait for the main process to end, then end this worker: no one is left to hand over more or to hear
    back, and the pool's queue would otherwise keep it waiting forever."""
    multiprocessing.connection.wait([multiprocessing.parent_process().sentinel])
    ENDING.set()


def end_when_idle() -> None:
    """Once told to end, end this worker: at once, or once the job in hand is written."""
    ENDING.wait()
    with JOB_IN_HAND:
        os._exit(0)


def loaded_modules() -> list[str]:
    """The modules a worker has imported (for tests)."""
    return sorted(sys.modules)


class DrawingPool:
    """Draws DrawJobs in `workers` processes (in this one when `workers` is 1); each report is handed to
    `deliver(tag, report)` in submission order, with Ctrl-C and SIGTERM held back meanwhile, so that a
    report is either delivered whole or kept for `stop`.

    At most JOBS_PER_WORKER jobs per worker are handed over and undelivered at any time, so
    memory stays flat however many photos there are: `submit` waits for the oldest beyond that.
    `warn(message)` is told when a worker died and how the pool goes on.
    """

    def __init__(self, workers: int, warn: Callable[[str], None] = lambda message: None):
        self.in_process = workers == 1
        self.workers = workers
        self.warn = warn
        self.pending: collections.deque[InFlight] = collections.deque()  # oldest first
        self.executor = None if self.in_process else start_executor(workers)  # None too after a worker died

    def submit(self, job: DrawJob, tag, deliver: Callable) -> None:
        """Hand `job` over; deliver the reports due now."""
        if self.in_process:
            with interruptions_deferred():  # as a worker does: the job in hand is written whole and reported
                deliver(tag, draw_and_write(job))
            return
        if self.executor is None:  # after a worker died
            self.executor = start_working_executor(self.workers)
        try:
            self.hand_over(tag, job)
        except BrokenProcessPool:  # a worker died since the last report
            self.recover()
            self.executor = start_working_executor(self.workers)
            try:
                self.hand_over(tag, job)
            except BrokenProcessPool:  # and one of the fresh ones, at once
                raise workers_dying(self.workers) from None
        while self.pending and (len(self.pending) > JOBS_PER_WORKER * self.workers or self.pending[0].future.done()):
            self.deliver_oldest(deliver)

    def hand_over(self, tag, job: DrawJob) -> None:
        """Hand `job` to the workers and keep it pending, with Ctrl-C and SIGTERM held back: a job handed
        over is one `stop` knows of, so its files are reported."""
        with interruptions_deferred():
            self.pending.append(InFlight.hand_over(tag, job, self.executor))

    def finish(self, deliver: Callable) -> None:
        """Deliver every report still to come."""
        while self.pending:
            self.deliver_oldest(deliver)

    def stop(self, deliver: Callable) -> None:
        """Stop the workers (see close); deliver the report of each job finished and not yet delivered.

        After Ctrl-C: a job whose report was awaited when it came is kept, so every file written is
        reported; so is a job whose worker ended before it reported (SIGTERM to every process), by its files.
        """
        self.close()
        with interruptions_deferred():
            while self.pending:
                flight = self.pending.popleft()
                if flight.future.cancelled():
                    continue
                if flight.future.exception() is None:
                    deliver(flight.tag, flight.future.result())
                elif isinstance(flight.future.exception(), BrokenProcessPool):
                    report = flight.report_by_files()
                    if report.written:  # else not started: dropped, as Ctrl-C drops those
                        deliver(flight.tag, report)

    def deliver_oldest(self, deliver: Callable) -> None:
        """Wait for the oldest job, then deliver its report; an interrupted wait leaves it pending."""
        oldest = self.pending[0]
        try:
            report = oldest.future.result()
        except BrokenProcessPool:
            self.recover()  # every job pending has its report now
            return
        with interruptions_deferred():
            self.pending.popleft()
            deliver(oldest.tag, report)

    def recover(self) -> None:
        """Go on after a worker died, which stopped the pool's other workers in the middle of their jobs.

        The jobs stopped are drawn again, one at a time (redraw_alone): a job whose worker dies
        again is to blame, and fails with the files it wrote; the others are written as if nothing
        had happened. Where no job was to blame, the worker was killed from outside, most likely
        for memory, and the next pool has half as many workers. It starts with the next job.
        """
        self.executor.shutdown(wait=True)
        self.executor = None
        unfinished = []
        for flight in self.pending:
            if isinstance(flight.future.exception(), BrokenProcessPool):
                report = flight.report_by_files()
                if report.error is None:  # every file written before its worker was stopped
                    flight.future = future_with(report)
                else:
                    unfinished.append(flight)
        again = f"; drawing the {counted(len(unfinished), 'photo')} in hand again, one at a time" if unfinished else ""
        self.warn(f"a drawing worker process died{again}")
        if not self.redraw_alone(unfinished):
            self.workers = max(1, self.workers // 2)
            self.warn(f"no photo was to blame (a worker killed, or out of memory): going on with "
                      f"{counted(self.workers, 'drawing worker')}")

    def redraw_alone(self, unfinished: list[InFlight]) -> int:
        """Draw each job again in a worker of its own; how many of them killed it (their report says so)."""
        to_blame = 0
        for flight in unfinished:
            self.executor = self.executor or start_working_executor(1)
            flight.future = self.executor.submit(draw_and_write, flight.job)
            try:
                flight.future.result()
            except BrokenProcessPool:
                self.executor.shutdown(wait=True)
                self.executor = None
                flight.future = future_with(flight.report_by_files())
                to_blame += 1
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
        return to_blame

    def __enter__(self) -> DrawingPool:
        return self

    def __exit__(self, *exception) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers: jobs not yet started are dropped, those being written are finished."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def start_working_executor(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """`workers` processes, started and seen to work: a DeepvizError where they die as they start."""
    executor = start_executor(workers)
    try:
        executor.submit(int).result()
    except BrokenProcessPool:
        executor.shutdown(wait=True)
        raise workers_dying(workers) from None
    return executor


def workers_dying(workers: int) -> DeepvizError:
    return DeepvizError(f"drawing worker processes die as they start ({counted(workers, 'worker')}; killed, or out "
                        "of memory); rerun with --workers 1, which draws in the main process")


def future_with(report: DrawReport) -> concurrent.futures.Future:
    future = concurrent.futures.Future()
    future.set_result(report)
    return future


@contextlib.contextmanager
def interruptions_deferred():
    """Ctrl-C (and SIGTERM, where the command line raises it) held back while the block runs, then delivered.

    Only in the main thread, whose handlers they are to set, and for handlers set in Python, which can be put back.
    """
    deferred = [signum for signum in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(signum))]
    if threading.current_thread() is not threading.main_thread() or not deferred:
        yield
        return
    received = []
    with signals_blocked(deferred):  # the handlers swapped together: none left in place by a signal in between
        previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                    for signum in deferred}
    try:
        yield
    finally:
        with signals_blocked(deferred):
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        for signum in sorted(set(received), key=[signal.SIGTERM, signal.SIGINT].index):  # SIGTERM first: it ends more
            signal.raise_signal(signum)  # to the handler as it was: KeyboardInterrupt or Terminated, as a rule


@contextlib.contextmanager
def signals_blocked(signums: list):
    """The signals held by the system while the block runs, and delivered after (where it can: not on Windows)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def start_executor(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """`workers` processes, started now so that they load Matplotlib while the network is built.

    They are started with Ctrl-C ignored, as their start-up would otherwise print tracebacks.
    """
    executor = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context(START_METHOD), initializer=start_worker
    )
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
    try:
        for _ in range(workers):  # each call while none is idle starts one more process
            executor.submit(int)
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
    return executor

