"""``anomalousnet-batch infer`` (the main job) and ``anomalousnet-batch segment``."""
from __future__ import annotations

import sys

import click

from anomalousnet.tracking.video_tracking import TrackOptions
from anomalousnet_cli.inputs import input_options


def segment_options(func):
    """Change-point options shared by `infer` and `segment`."""
    from anomalousnet.segments.segmentation import SegmentOptions

    d = SegmentOptions()
    func = click.option("--state-prior", type=_StatePrior(), default=",".join(f"{p:g}" for p in d.state_prior),
                        show_default=True, metavar="I,C,F,D",
                        help="Multipliers of the immobile, confined, free and directed probabilities before a "
                             "segment's state is chosen (1,1,1,1: the network's own balance).")(func)
    func = click.option("--directed-alpha", type=click.FloatRange(min=0, max=2), default=d.directed_alpha,
                        show_default=True,
                        help="A segment called free or directed is directed when its alpha is at least this, as "
                             "AnDi-2 defines directed motion (0: keep the networks' call).")(func)
    func = click.option("--noise", type=click.FloatRange(min=0), default=d.noise, show_default=True,
                        help="Localisation noise sigma in px, subtracted in the segments' MSD fits.")(func)
    func = click.option("--min-dwell", type=click.IntRange(min=1), default=d.min_dwell, show_default=True,
                        help="Shortest state run and segment, frames (short excursions are smoothed away).")(func)
    func = click.option("--window", "width", type=click.IntRange(min=2), default=d.width, show_default=True,
                        help="Sliding-window width of the change-point detector, frames.")(func)
    func = click.option("--penalty", type=click.FloatRange(min=0, min_open=True), default=d.penalty,
                        show_default=True, help="Change-point penalty (L2 cost drop a change point must bring).")(func)
    func = click.option("--zones/--no-zones", default=True, show_default=True,
                        help="The field-of-view stage: find where slow motion is confined (zones.csv) and "
                             "decide confined vs slow free from the whole FOV.")(func)
    func = click.option("--crop-min-frames", type=click.IntRange(min=0), default=d.crop_min_frames,
                        show_default=True,
                        help="Segments of a trajectory with change points, at least this long, get alpha from the "
                             "alpha network run again on each alone: over the whole trajectory it blurs a switch "
                             "over 20-40 frames (0: off).")(func)
    func = click.option("--episode-llr", type=click.FloatRange(min=0), default=d.episode_llr or 0, show_default=True,
                        help="Split out of a segment a brief visit (3+ frames) to the FOV's other K level when the "
                             "log likelihood ratio of its steps exceeds this (the detector's 10-frame window misses "
                             "most visits under 10 frames; 0: off).")(func)
    func = click.option("--pool-values/--no-pool-values", default=d.pool_values, show_default=True,
                        help="Draw each segment's alpha and K toward the mean of its FOV's segments of the same "
                             "state, the more the shorter it is (empirical Bayes; off: each segment alone).")(func)
    return func


class _StatePrior(click.ParamType):
    name = "I,C,F,D"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            values = tuple(float(v) for v in str(value).split(","))
        except ValueError:
            values = ()
        if len(values) != 4 or not all(v > 0 for v in values):
            self.fail(f"{value!r}: need 4 positive numbers separated by commas", param, ctx)
        return values


def dask_options(func):
    func = click.option("--scheduler-file", type=click.Path(exists=True, dir_okay=False),
                        help="Use the Dask cluster of this scheduler file (e.g. on SLURM).")(func)
    func = click.option("--workers", type=click.IntRange(min=1),
                        help="Local Dask workers for tracking and change points [default: CPUs].")(func)
    return func


def units_options(func):
    func = click.option("--frame-interval", type=click.FloatRange(min=0, min_open=True),
                        help="Seconds per frame (with --pixel-size: K also in um^2/s^alpha).")(func)
    func = click.option("--pixel-size", type=click.FloatRange(min=0, min_open=True),
                        help="Micrometres per pixel (with --frame-interval: K also in um^2/s^alpha).")(func)
    return func


def warn_one_scale(pixel_size, frame_interval) -> None:
    """Physical K needs both scales (its unit factor is px^2 / frame^alpha): say so when one is missing."""
    if (pixel_size is None) != (frame_interval is None):
        given, missing = ("--pixel-size", "--frame-interval") if frame_interval is None else \
            ("--frame-interval", "--pixel-size")
        click.echo(f"warning: {given} without {missing}: K stays in px^2/frame^alpha; "
                   f"K in um^2/s^alpha needs both", err=True)


def fill_gaps_option(func):
    return click.option("--fill-gaps", is_flag=True,
                        help="CSV inputs whose trajectories skip frames (trackpy's link with memory): fill the "
                             "missing frames by interpolation and flag them (column 'interpolated') instead of "
                             "refusing the file.")(func)


@click.command()
@input_options("TIFF videos, trajectory stores (directories), shards (.h5), AnDi-style CSVs "
               "(traj_idx,frame,x,y) or folders of videos and CSVs")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Results folder (created; re-running resumes).")
@click.option("--model", default="default", show_default=True,
              help="'default' (the built-in model) or a model bundle directory.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Windows per forward pass of the networks.")
@units_options
@segment_options
@dask_options
@click.option("--report", is_flag=True, help="Also write a PNG figure per field of view (RESULTS/figures/).")
@click.option("--diameter", type=int, help="Tracking (videos): spot diameter, odd px [estimated].")
@click.option("--minmass", type=float, help="Tracking (videos): minimum spot brightness [estimated].")
@click.option("--search-range", type=float, help="Tracking (videos): largest step linked, px [estimated].")
@click.option("--separation", type=float, help="Tracking (videos): smallest distance between spots, px [3 PSF sigmas].")
@click.option("--memory", type=click.IntRange(min=0), default=TrackOptions.memory, show_default=True,
              help="Tracking (videos): frames a particle may vanish and still be linked.")
@click.option("--min-length", type=click.IntRange(min=1), default=10, show_default=True,
              help="Trajectories shorter than this (frames), from any input, stay in the store and tables, "
                   "flagged, but out of the ensembles (fallback ones, under 3 points, always are).")
@fill_gaps_option
@click.option("--columns", "csv_columns", metavar="particle=COL,frame=COL,x=COL,y=COL",
              help="CSV inputs: the columns holding particle, frame, x and y, when not named so (trackpy's "
                   "and TrackMate's exports, TRACK_ID, FRAME, POSITION_X, POSITION_Y, are recognised).")
def infer(inputs, out_dir, model, batch_size, pixel_size, frame_interval, penalty, width, min_dwell, noise,
          directed_alpha, state_prior, zones, pool_values, crop_min_frames, episode_llr, workers, scheduler_file,
          report, diameter, minmass, search_range, separation, memory, min_length, fill_gaps, csv_columns):
    """The main job: track (videos) -> predict -> change points -> ensemble -> write.

    Writes RESULTS/store (HDF5 results store), RESULTS/segments.csv, RESULTS/ensemble.csv,
    RESULTS/zones.csv (zones of the field-of-view stage),
    RESULTS/ensemble/*.txt (AnDi-2 layout), RESULTS/summary.json and, with --report,
    RESULTS/figures/*.png. Exit status 1 when an input could not be processed (named on
    stderr; the others are processed).

    \b
    Example:
      anomalousnet-batch infer --input 'data/*.tif' --out results --pixel-size 0.1 --frame-interval 0.05
    """
    import os

    warn_one_scale(pixel_size, frame_interval)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from anomalousnet.batch import pipeline
    from anomalousnet.networks.bundle import BundleError
    from anomalousnet.segments.segmentation import SegmentOptions
    from anomalousnet.segments.zones import ZoneOptions

    try:
        nan = float("nan")
        track = TrackOptions(diameter=diameter, minmass=minmass, search_range=search_range, separation=separation,
                             memory=memory,
                             pixel_size_um=pixel_size or nan,
                             frame_interval_s=frame_interval or nan)
        seg = SegmentOptions(penalty=penalty, width=width, min_dwell=min_dwell, noise=noise, state_prior=state_prior,
                              directed_alpha=directed_alpha or None, pool_values=pool_values,
                              crop_min_frames=crop_min_frames or None,
                              episode_llr=episode_llr or None)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    from anomalousnet.io.andi_files import parse_column_map

    try:
        columns = parse_column_map(csv_columns) or None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--columns") from None
    options = pipeline.InferOptions(model=model, batch_size=batch_size, pixel_size_um=pixel_size,
                                    frame_interval_s=frame_interval, segment=seg, report=report, workers=workers,
                                    zones=ZoneOptions() if zones else None,
                                    scheduler_file=scheduler_file, track_options=track, fill_gaps=fill_gaps,
                                    csv_columns=columns, min_length=min_length)
    try:
        summary = pipeline.run_infer(list(inputs), out_dir, options)
    except BundleError as exc:
        raise click.ClickException(f"model: {exc}") from None
    if not summary.written and not summary.kept:
        for item, reason in summary.failed.items():
            click.echo(f"FAILED {item}: {reason}", err=True)
        raise click.ClickException(f"no results: {len(summary.failed)} input(s) given, every one failed"
                                   if summary.failed else "no results: no input given")
    click.echo(f"results: {summary.out / pipeline.STORE_DIR} ({len(summary.written)} written, "
               f"{len(summary.kept)} kept from an earlier run)")
    click.echo(f"segments: {summary.out / 'segments.csv'}")
    click.echo(f"ensemble: {summary.out / 'ensemble.csv'}")
    if summary.info.get("figures"):
        click.echo(f"figures: {summary.out / pipeline.FIGURES_DIR} ({len(summary.info['figures'])} PNG)")
    if summary.info.get("stale_figures_removed"):
        click.echo(f"removed {len(summary.info['stale_figures_removed'])} figure(s) drawn from earlier results "
                   f"(--report draws them anew)")
    if summary.info.get("device"):
        click.echo(f"networks ran on {summary.info['device']}")
    click.echo("time (s): " + ", ".join(f"{stage} {s:.1f}" for stage, s in summary.seconds.items()))
    if summary.failed:
        for item, reason in summary.failed.items():
            click.echo(f"FAILED {item}: {reason}", err=True)
        click.echo(f"{len(summary.failed)} input(s) failed; see {summary.out / 'summary.json'}", err=True)
        sys.exit(1)


@click.command(short_help="Change points alone, on stores that already hold predictions.")
@input_options("results stores (e.g. RESULTS/store) that hold predictions")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for segments.csv and ensemble.csv [each store's parent folder].")
@units_options
@segment_options
@click.option("--report", is_flag=True, help="Also redraw the figures (RESULTS/figures/); without it, "
              "figures drawn from the old segments are removed.")
@dask_options
def segment(inputs, out_dir, pixel_size, frame_interval, penalty, width, min_dwell, noise, directed_alpha,
            state_prior, zones, pool_values, crop_min_frames, episode_llr, report, workers, scheduler_file):
    """Change points alone, on stores that already hold predictions (e.g. RESULTS/store).

    Recomputes each shard's segments, ensemble and zones tables in place (atomically) and
    rewrites segments.csv, ensemble.csv and zones.csv. With --crop-min-frames the alpha
    network of the model that predicted the store runs again on segments (a shard whose
    model is gone or changed keeps the whole-track values, with a warning). (Results stores have no frame gaps: CSVs with
    gaps are read by `infer --fill-gaps`.)
    """
    warn_one_scale(pixel_size, frame_interval)
    from anomalousnet.batch import pipeline
    from anomalousnet.batch.inputs import expand_inputs
    from anomalousnet.io import store as st
    from anomalousnet.segments.segmentation import SegmentOptions
    from anomalousnet.segments.zones import ZoneOptions

    try:
        seg = SegmentOptions(penalty=penalty, width=width, min_dwell=min_dwell, noise=noise, state_prior=state_prior,
                              directed_alpha=directed_alpha or None, pool_values=pool_values,
                              crop_min_frames=crop_min_frames or None,
                              episode_llr=episode_llr or None)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    found, failed = expand_inputs(inputs, kinds=("store",))
    for name, problem in failed.items():
        click.echo(f"FAILED {name}: {problem}", err=True)
    for store_dir in found["store"]:
        try:
            paths = pipeline.segment_store(store_dir, seg, out_dir, workers=workers or 1,
                                           scheduler_file=scheduler_file, pixel_size_um=pixel_size,
                                           frame_interval_s=frame_interval, report=report,
                                           zones=ZoneOptions() if zones else None)
        except st.StoreError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"segmented {len(paths)} shard(s) of {store_dir}")
    if failed:
        sys.exit(1)


@click.command(short_help="Merge the results folders of an infer job array into one set of tables.")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the merged segments.csv, ensemble.csv and summary.json.")
def merge(folders, out_dir):
    """Merge the results folders of an infer job array into one set of tables.

    Concatenates the folders' segments.csv and ensemble.csv in the order given and writes one
    summary.json (their written, kept and failed inputs). Exit 1, writing nothing, when a
    folder lacks a table or its columns differ.

    \b
    anomalousnet-batch merge results/task-* --out results
    """
    from anomalousnet.batch.merge import MergeError, merge_results

    try:
        written = merge_results(sorted(folders), out_dir)
    except MergeError as exc:
        raise click.ClickException(str(exc)) from None
    for name, path in written.items():
        click.echo(f"{name}: {path}")
