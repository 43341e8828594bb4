"""Dataset exemplars: the photos of a set, and the place in each, that excite a channel most.

Every photo goes through the network once, in batches. Each batch is reduced at once
to a `Tally` per layer: for each tracked channel the `per_channel` best photos so far
(score, photo index, strongest position, the channel's small map) and, for every channel,
a running sum of its mean activation. A tally's size depends on the layer and
`per_channel`, never on the number of photos, and two tallies merge into one of the
same size: the local engine merges batch after batch, the Ray engine (ray_engine)
merges the tallies its workers send back, in whatever order they come. Ties in
score go to the photo that comes first, so both engines pick the same photos.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .analysis import forward_batch
from .backend import import_keras
from .errors import DeepvizError, UsageError
from .forward import build_feature_model
from .images import load_image
from .layers import check_channels, check_layer_names, layer_paths, output_shape
from .stats import nan_as_lowest

DEFAULT_PER_CHANNEL = 9
MAX_PER_CHANNEL = 100
DEFAULT_RANK = "max"


def peak_scores(maps: np.ndarray) -> np.ndarray:
    return maps.max(axis=(1, 2))  # (n, H, W, C) -> (n, C)


def mean_scores(maps: np.ndarray) -> np.ndarray:
    return maps.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)  # (n, H, W, C) -> (n, C)


RANKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"max": peak_scores, "mean": mean_scores}


@dataclasses.dataclass(frozen=True)
class Exemplar:
    """One photo that excites a channel: where, how much, and what its crop needs."""

    path: Path
    activation: float  # the photo's score for the channel: its map's max, or mean with rank "mean"
    position: tuple[int, int]  # (row, column) of the strongest cell of the channel's map
    grid: tuple[int, int]  # (rows, columns) of the layer's map
    map: np.ndarray = dataclasses.field(compare=False, repr=False)  # (rows, columns): the channel over this photo


@dataclasses.dataclass(frozen=True)
class ExemplarPlan:
    """What to look for: the layers, their channels (None: the top `max_maps` by mean), how many photos each."""

    layers: tuple[str, ...]
    channels: tuple[int, ...] | None = None
    per_channel: int = DEFAULT_PER_CHANNEL
    rank: str = DEFAULT_RANK  # a key of RANKS
    max_maps: int | None = 64  # channels kept when none are named; None: all


EMPTY_PLACE = np.iinfo(np.int64).max  # a Tally's photo index where it has no photo yet


@dataclasses.dataclass
class Tally:
    """The best `k` photos of each tracked channel of one layer, and every channel's running sum.

    Empty places hold score -inf and photo EMPTY_PLACE, after every photo's, even one scored -inf
    or NaN (a model whose values overflowed), whatever the batches. Size: (channels tracked) x k entries, each
    with an (H, W) map, plus C sums: flat in the number of photos.
    """

    channels: np.ndarray  # (T,) channel indices tracked
    scores: np.ndarray  # (T, k) float32, best first
    photos: np.ndarray  # (T, k) int64, index of the photo in the run's list
    positions: np.ndarray  # (T, k, 2) int32: (row, column) of the strongest cell
    maps: np.ndarray  # (T, k, H, W) float32
    sums: np.ndarray  # (C,) float64: the sum over photos of each channel's mean activation
    count: int  # photos tallied

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.channels, self.scores, self.photos, self.positions, self.maps, self.sums))


@dataclasses.dataclass
class Partial:
    """What some photos reduce to: a Tally per layer and the photos that could not be read."""

    tallies: dict[str, Tally]
    failed: list[tuple[int, str]]  # (photo index, reason)


@dataclasses.dataclass
class ExemplarResult:
    """The run's answer: per layer {channel: exemplars, best first}, and what could not be read."""

    exemplars: dict[str, dict[int, list[Exemplar]]]
    channel_means: dict[str, dict[int, float]]  # each shown channel's mean activation over the set
    photos: int  # photos read
    failed: list[tuple[Path, str]]


def each_photo_once(paths: Sequence[Path]) -> list[Path]:
    """`paths` with each file once, where first named (a photo named twice, or by name and in its folder,
    would take two exemplar slots and count twice in its channel's mean)."""
    first_named: dict[str, Path] = {}
    for path in paths:
        first_named.setdefault(os.path.realpath(path), path)
    return list(first_named.values())


# --- Checking the plan ---------------------------------------------------------------
def check_plan(network, plan: ExemplarPlan) -> list[str]:
    """The plan's layer names without repeats, or UsageError before anything is built or read."""
    if plan.rank not in RANKS:
        raise UsageError(f"rank: expected one of {', '.join(RANKS)} for exemplars, received {plan.rank!r}")
    if not 1 <= plan.per_channel <= MAX_PER_CHANNEL:
        raise UsageError(f"per_channel: expected a whole number from 1 to {MAX_PER_CHANNEL}, "
                         f"received {plan.per_channel}")
    if plan.channels is not None and (not plan.channels or min(plan.channels) < 0):
        raise UsageError(f"channels: expected channel indices of 0 or more, received {list(plan.channels)}")
    layer_names = check_layer_names(network, plan.layers)
    paths = layer_paths(network.model)
    for name in layer_names:
        shape = output_shape(paths[name])
        if len(shape) != 3:
            raise UsageError(f"layer {name} gives {shape}, not (height, width, channels) maps: exemplars need "
                             f"a convolutional layer; pick one with `deepviz --list-layers`")
    check_channels(network, layer_names, plan.channels)
    return layer_names


def build_maps_model(network, layer_names: Sequence[str]):
    """One model from the network's input to the layers' maps only, so no later layer runs."""
    if any("/" in name for name in layer_names):
        return build_feature_model(network, layer_names)  # nested layers: re-traced, with the output too
    keras = import_keras()
    model = network.model
    return keras.Model(model.input, {name: model.get_layer(name).output for name in layer_names})


# --- One batch -----------------------------------------------------------------------
def reduce_batch(network, maps_model, plan: ExemplarPlan, layer_names: Sequence[str],
                 indexed_paths: Sequence[tuple[int, Path]], batch_size: int) -> Partial:
    """Read and run a batch of (index, path) photos; reduce its maps to a Tally per layer at once."""
    photos, indices, failed = [], [], []
    for index, path in indexed_paths:
        try:
            photos.append(load_image(Path(path), notes=[]))
            indices.append(int(index))
        except DeepvizError as error:
            failed.append((int(index), str(error)))
    tallies = {}
    if photos:
        outputs = forward_batch(network, maps_model, photos, batch_size)
        for name in layer_names:
            maps = np.asarray(outputs[name][:len(photos)], dtype=np.float32)  # (n, H, W, C)
            tallies[name] = tally_maps(maps, np.asarray(indices), plan.channels, plan.per_channel, plan.rank)
    return Partial(tallies, failed)


def tally_maps(maps: np.ndarray, photos: np.ndarray, channels: Sequence[int] | None, k: int, rank: str) -> Tally:
    """A Tally of one batch's maps (n, H, W, C) of photos numbered `photos` (n,)."""
    n, height, width, num_channels = maps.shape
    tracked = np.arange(num_channels) if channels is None else np.asarray(channels)
    chosen = maps[..., tracked]  # (n, H, W, T)
    scores = nan_as_lowest(RANKS[rank](chosen)).T  # (T, n)
    flat_peaks = chosen.reshape(n, height * width, -1).argmax(axis=1).T  # (T, n)
    positions = np.stack(np.unravel_index(flat_peaks, (height, width)), axis=-1).astype(np.int32)  # (T, n, 2)
    candidate = Tally(
        channels=tracked,
        scores=scores.astype(np.float32),
        photos=np.broadcast_to(photos, scores.shape).astype(np.int64),
        positions=positions,
        maps=np.moveaxis(chosen, (0, 3), (1, 0)),  # (T, n, H, W)
        sums=maps.mean(axis=(1, 2), dtype=np.float64).sum(axis=0),
        count=n,
    )
    return keep_best(candidate, k)


def keep_best(tally: Tally, k: int) -> Tally:
    """The k best entries of each channel: highest score first, the earlier photo first on a tie."""
    order = np.lexsort((tally.photos, -tally.scores), axis=-1)[:, :k]  # (T, k)
    rows = np.arange(len(tally.channels))[:, None]
    scores, photos = tally.scores[rows, order], tally.photos[rows, order]
    positions, maps = tally.positions[rows, order], tally.maps[rows, order]
    missing = k - order.shape[1]
    if missing > 0:  # fewer photos than k so far: pad with empty places
        scores = np.pad(scores, ((0, 0), (0, missing)), constant_values=-np.inf)
        photos = np.pad(photos, ((0, 0), (0, missing)), constant_values=EMPTY_PLACE)
        positions = np.pad(positions, ((0, 0), (0, missing), (0, 0)))
        maps = np.pad(maps, ((0, 0), (0, missing), (0, 0), (0, 0)))
    return Tally(tally.channels, scores, photos, positions, np.ascontiguousarray(maps), tally.sums, tally.count)


def merge_tallies(first: Tally, second: Tally, k: int) -> Tally:
    """One Tally of the photos of both, of the same size: the order of merging does not matter."""
    joined = Tally(
        channels=first.channels,
        scores=np.concatenate([first.scores, second.scores], axis=1),
        photos=np.concatenate([first.photos, second.photos], axis=1),
        positions=np.concatenate([first.positions, second.positions], axis=1),
        maps=np.concatenate([first.maps, second.maps], axis=1),
        sums=first.sums + second.sums,
        count=first.count + second.count,
    )
    return keep_best(joined, k)


def merge_partials(first: Partial | None, second: Partial, k: int) -> Partial:
    if first is None:
        return second
    tallies = dict(first.tallies)
    for name, tally in second.tallies.items():
        tallies[name] = merge_tallies(tallies[name], tally, k) if name in tallies else tally
    return Partial(tallies, first.failed + second.failed)


# --- The local engine ------------------------------------------------------------------
def search_local(network, plan: ExemplarPlan, paths: Sequence[Path], batch_size: int,
                 advance: Callable[[int], None] = lambda done: None) -> Partial:
    """Stream the photos through the network batch by batch, in this process; merge as it goes."""
    layer_names = check_plan(network, plan)
    maps_model = build_maps_model(network, layer_names)
    total = None
    for start in range(0, len(paths), batch_size):
        batch = list(enumerate(paths[start:start + batch_size], start=start))
        total = merge_partials(total, reduce_batch(network, maps_model, plan, layer_names, batch, batch_size),
                               plan.per_channel)
        advance(len(batch))
    return total or Partial({}, [])


def finish(partial: Partial, plan: ExemplarPlan, paths: Sequence[Path]) -> ExemplarResult:
    """Pick each layer's channels (the named ones, or the top `max_maps` by mean) and list their exemplars."""
    exemplars, channel_means = {}, {}
    for name, tally in partial.tallies.items():
        means = tally.sums / max(tally.count, 1)  # (C,)
        if plan.channels is not None:
            rows = range(len(tally.channels))
        else:
            order = np.argsort(-means[tally.channels], kind="stable")
            rows = order if plan.max_maps is None else order[:plan.max_maps]
        exemplars[name] = {int(tally.channels[row]): exemplars_of(tally, row, paths) for row in rows}
        channel_means[name] = {channel: float(means[channel]) for channel in exemplars[name]}
    failed = sorted(partial.failed)
    photos = next(iter(partial.tallies.values())).count if partial.tallies else 0
    return ExemplarResult(exemplars, channel_means, photos, [(Path(paths[i]), reason) for i, reason in failed])


def exemplars_of(tally: Tally, row: int, paths: Sequence[Path]) -> list[Exemplar]:
    grid = tuple(int(side) for side in tally.maps.shape[2:])
    return [
        Exemplar(Path(paths[photo]), float(score), (int(position[0]), int(position[1])), grid, tally.maps[row, place])
        for place, (score, photo, position) in enumerate(zip(tally.scores[row], tally.photos[row],
                                                             tally.positions[row]))
        if photo != EMPTY_PLACE
    ]


def exemplar_records(result: ExemplarResult, layer: str) -> list[dict]:
    """--json's list for one layer: each channel with its exemplars (path, activation, position)."""
    return [
        {"channel": channel, "mean_over_set": result.channel_means[layer][channel],
         "exemplars": [{"path": str(e.path), "activation": e.activation, "position": list(e.position),
                        "grid": list(e.grid)} for e in exemplars]}
        for channel, exemplars in result.exemplars[layer].items()
    ]


# --- Either engine ---------------------------------------------------------------------
def run_local(network, choice, plan: ExemplarPlan, paths: Sequence[Path], batch_size: int, address: str | None,
              advance: Callable[[int], None]) -> Partial:
    return search_local(network, plan, paths, batch_size, advance)


def run_on_ray(network, choice, plan: ExemplarPlan, paths: Sequence[Path], batch_size: int, address: str | None,
               advance: Callable[[int], None]) -> Partial:
    if choice is None:
        raise UsageError("engine 'ray' builds the network again in each worker, so it needs a built-in model name "
                         "or a saved model's path, not a model in memory: model.save('model.keras') and pass "
                         "'model.keras'")
    check_plan(network, plan)  # before Ray starts
    from .ray_engine import search_ray  # Ray is imported only when asked for

    return search_ray(choice, plan, paths, batch_size, address, advance)


ENGINES: dict[str, Callable[..., Partial]] = {"local": run_local, "ray": run_on_ray}
DEFAULT_ENGINE = "local"


def find_exemplars(network, choice, plan: ExemplarPlan, paths: Sequence[Path], engine: str = DEFAULT_ENGINE,
                   batch_size: int = 8, address: str | None = None,
                   advance: Callable[[int], None] = lambda done: None) -> ExemplarResult:
    """The exemplars of the plan's channels among `paths`, found by `engine` ("local" or "ray").

    `choice` (a models.NetworkChoice) is what Ray workers build the network from; `address`
    is the Ray cluster to join (None: start a local Ray; "auto": the running one).
    """
    if engine not in ENGINES:
        raise UsageError(f"engine: expected one of {', '.join(ENGINES)}, received {engine!r}")
    paths = [Path(path) for path in paths]
    result = finish(ENGINES[engine](network, choice, plan, paths, batch_size, address, advance), plan, paths)
    if paths and result.photos == 0:
        if len(paths) == 1:
            raise DeepvizError(f"the photo could not be read: {result.failed[0][1]}")
        raise DeepvizError(f"none of the {len(paths)} photos could be read; the first: {result.failed[0][1]}")
    return result
