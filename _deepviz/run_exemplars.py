"""The command line's --exemplars mode: stream the photos once, then a figure (and JSON) per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .cli import Reporter
from .errors import UsageError
from .exemplar_figure import ROWS_MAX, distinct_names, draw_exemplars, synthesized_patterns
from .exemplars import (DEFAULT_RANK, RANKS, ExemplarPlan, ExemplarResult, each_photo_once, exemplar_records,
                         find_exemplars)
from .output import is_directory_target, json_write, library_versions, named_paths, save_figure
from .ray_engine import check_reachable
from .run import build_visualizer, listed_photos, write_all


def run_exemplars(args, reporter: Reporter, make_visualizer) -> int:
    """`deepviz --exemplars PHOTOS... --layers L [--channels I,J] [--per-channel K] [--engine ray]`."""
    # options of other modes are refused by run.check_mode_options
    rank = args.rank or DEFAULT_RANK
    if rank not in RANKS:
        raise UsageError(f"--rank {rank}: exemplars are ranked by {' or '.join(RANKS)} activation")
    listed = listed_photos([*args.exemplars, *args.images], args.recursive, reporter)
    photo_paths = each_photo_once(listed)
    if len(photo_paths) < len(listed):
        reporter.status(f"searching each photo once: {len(listed) - len(photo_paths)} named again (twice, or by "
                        "name and in its folder)")
    siblings = [".json"] if args.json else []
    if args.layers:  # a mistake in --out is found before the network is built
        exemplar_figure_paths(tuple(dict.fromkeys(args.layers)), args.out, photo_paths, siblings)
    if args.engine == "ray":  # and a cluster that does not answer
        check_reachable(args.ray_address)
    visualizer = build_visualizer(args, reporter, make_visualizer)
    layers = tuple(dict.fromkeys(args.layers or visualizer.default_layers))
    out_paths = exemplar_figure_paths(layers, args.out, photo_paths, siblings)
    plan = ExemplarPlan(layers, args.channels, args.per_channel, rank, args.max_maps)
    with reporter.progress(len(photo_paths), "searching") as progress:
        task = progress.add_task("searching", total=len(photo_paths)) if progress else None
        advance = (lambda done: progress.advance(task, done)) if progress else (lambda done: None)
        result = find_exemplars(visualizer.network, visualizer.choice, plan, photo_paths, args.engine,
                                args.batch_size, args.ray_address, advance)
    for path, reason in result.failed:
        reporter.warn(f"skipped: {reason}")
    names = distinct_names(photo_paths)  # the same name for a photo in every layer's figure
    for layer in result.exemplars:
        report_layer(layer, result, visualizer.network, plan, out_paths[layer], names, args)
    skipped = f"; unreadable, skipped: {', '.join(str(p) for p, _ in result.failed)}" if result.failed else ""
    print(f"{result.photos} of {len(photo_paths)} photos searched{skipped}")
    return 0


def exemplar_title(layer: str, photos: int, channels: int, plan: ExemplarPlan, network) -> str:
    """What the figure shows: "mixed5: the 9 of 120 photos that excite each channel most (max activation); ..."."""
    if plan.per_channel >= photos:
        shown = f"all {photos} photos, ordered by how much they excite each channel"
    else:
        shown = f"the {plan.per_channel} of {photos} photos that excite each channel most"
    drawn = f"; the first {ROWS_MAX} of {channels} channels drawn, all printed" if channels > ROWS_MAX else ""
    return (f"{layer}: {shown} ({plan.rank} activation){drawn}; {network.label}, weights {network.weights_label}")


def exemplar_figure_paths(layers, out: str | None, photos: Sequence[Path],
                          siblings: Sequence[str] = ()) -> dict[str, Path]:
    """exemplars_<layer>.png in --out's directory (default result/), named as output.named_paths names
    figures, or --out itself for one layer; UsageError where that is one of the `photos` searched,
    which the figure would replace. `siblings`: the suffixes written beside each figure (".json")."""
    searched = {photo.resolve() for photo in photos}
    if out is None or is_directory_target(out):
        stems = [f"exemplars_{layer.replace('/', '_')}" for layer in layers]
        return dict(zip(layers, named_paths(stems, out, searched, siblings)))
    if len(layers) > 1:
        raise UsageError(f"--out {out} names one file but {len(layers)} layers were given; pass a directory")
    if Path(out).resolve() in searched:
        raise UsageError(f"--out: {out} is a photo searched, which the figure would replace; choose another --out")
    return {layers[0]: Path(out)}


def report_layer(layer: str, result: ExemplarResult, network, plan: ExemplarPlan, out_path: Path,
                 names: dict[Path, str], args) -> None:
    """Print each channel's exemplars, draw the layer's figure and write it (and its JSON).

    `names`: what to call each photo searched (exemplar_figure.distinct_names).
    """
    rows = result.exemplars[layer]
    for channel, exemplars in rows.items():
        found = ", ".join(f"{names[e.path]} {e.activation:.4g}" for e in exemplars)
        print(f"{layer} channel {channel}: {found}")
    figure = draw_exemplars(layer, rows, result.channel_means[layer], synthesized_patterns(network, layer, list(rows)),
                            exemplar_title(layer, result.photos, len(rows), plan, network), args.cmap, args.dpi, names,
                            grey=network.input_channels == 1)
    writes = [(out_path, lambda: save_figure(figure, out_path, args.dpi), "the figure")]
    if args.json:
        record = {
            "layer": layer, "model": network.label, "weights": network.weights_label, "rank": plan.rank,
            "per_channel": plan.per_channel, "photos_searched": result.photos,
            "unreadable": [{"path": str(path), "reason": reason} for path, reason in result.failed],
            "versions": library_versions(), "channels": exemplar_records(result, layer),
        }
        writes.append(json_write(out_path, record))
    write_all(writes)
