"""The exemplar search scaled out with Ray Data: photo paths as the dataset, one network per worker.

`map_batches` runs `ExemplarWorker`, an actor class that builds the network once and
reduces each batch of paths to a `Partial` (a bounded tally per layer); the driver merges
the partials as they stream back, so its memory stays flat too. Each worker takes a GPU
when the cluster has them. Ray is imported only here, and only with `--engine ray`.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import socket
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import DeepvizError, UsageError
from .exemplars import ExemplarPlan, Partial, build_maps_model, check_plan, merge_partials, reduce_batch
from .models import NetworkChoice, build_network

CPUS_PER_CPU_WORKER = 2  # a CPU worker's framework uses several threads; one worker per two CPUs
RAY_CONNECT_TIMEOUT_SECONDS = 5
START_A_CLUSTER = ("check the address (`ray status` on the head prints it), start a cluster with `ray start --head`, "
                   "or leave --ray-address out to start a local Ray for this run")


def import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never report usage over the network
    try:
        import ray
        import ray.data  # configures its loggers on import
    except ImportError:
        raise UsageError('--engine ray needs Ray: pip install "deepviz[ray]" (or "ray[data]>=2.9"), '
                         "or use the default --engine local") from None
    return ray


class ExemplarWorker:
    """A Ray Data actor: the network and its maps model built once, then one Partial per batch of paths."""

    def __init__(self, choice: NetworkChoice, plan: ExemplarPlan, batch_size: int):
        self.network = build_network(choice)
        self.plan = plan
        self.layer_names = check_plan(self.network, plan)
        self.maps_model = build_maps_model(self.network, self.layer_names)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        indexed_paths = list(zip(batch["index"].tolist(), batch["path"].tolist()))
        partial = reduce_batch(self.network, self.maps_model, self.plan, self.layer_names, indexed_paths,
                               self.batch_size)
        photos = np.array([len(indexed_paths)])
        return {"partial": np.array([pickle.dumps(partial)], dtype=object), "photos": photos}


def search_ray(choice: NetworkChoice, plan: ExemplarPlan, paths: Sequence[Path], batch_size: int,
               address: str | None = None, advance: Callable[[int], None] = lambda done: None) -> Partial:
    """The same search as exemplars.search_local, run by Ray Data workers; `address` None starts a local Ray."""
    ray = import_ray()
    for name in ("ray", "ray.data"):  # Ray's notes go to its session logs (/tmp/ray), not the terminal
        logging.getLogger(name).setLevel(logging.ERROR)
    check_reachable(address)
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     runtime_env={"env_vars": worker_environment()})
        except ConnectionError as error:  # "auto" and no cluster here, or a head that went away
            raise DeepvizError(f"--ray-address {address}: no Ray cluster to join ({first_sentence(error)}); "
                               f"{START_A_CLUSTER}") from None
    ray.data.DataContext.get_current().enable_progress_bars = False
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    workers = gpus or max(1, int(resources.get("CPU", 1)) // CPUS_PER_CPU_WORKER)
    dataset = ray.data.from_items([{"index": i, "path": str(path)} for i, path in enumerate(paths)])
    partials = dataset.map_batches(
        ExemplarWorker, fn_constructor_args=(choice, plan, batch_size), batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1,
    )
    total = None
    for row in partials.iter_rows():  # streamed: merged as each batch comes back
        total = merge_partials(total, pickle.loads(row["partial"]), plan.per_channel)
        advance(int(row["photos"]))
    return total or Partial({}, [])


@functools.lru_cache(maxsize=8)  # once a run: the command line asks before the network is built, then the search
def check_reachable(address: str | None) -> None:
    """A cluster's head named by host and port answers there, or a clear error at once: Ray
    itself would retry for minutes."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address}: expected HOST:PORT of the cluster's head "
                         "(as `ray start --head` prints it), ray://HOST:PORT, auto or local")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_SECONDS).close()
    except OSError as error:
        raise DeepvizError(f"--ray-address {address}: nothing answers at {host}:{port} "
                           f"({error.strerror or error}); {START_A_CLUSTER}") from None


def first_sentence(error: Exception) -> str:
    return str(error).strip().split(". ")[0].rstrip(".")


def worker_environment() -> dict[str, str]:
    """What the workers share with the driver: the package, the Keras backend, quiet logs, no usage reports."""
    names = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "RAY_USAGE_STATS_ENABLED")
    environment = {name: os.environ[name] for name in names if name in os.environ}
    package_parent = str(Path(__file__).resolve().parent.parent)  # _deepviz importable from a checkout too
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    return environment
