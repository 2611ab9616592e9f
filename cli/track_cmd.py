"""``anomalousnet-batch track``: TIFF videos -> trajectories (trackpy spots, fitted, LAP-linked) in a sharded HDF5 store."""
from __future__ import annotations

import sys

import click

from anomalousnet.tracking.video_tracking import LINKERS, REFINERS, TrackOptions
from anomalousnet_cli.inputs import input_options


@click.command()
@input_options("TIFF videos or folders of them")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Trajectory store directory.")
@click.option("--diameter", type=int, default=None, help="Spot diameter, odd px [estimated per video].")
@click.option("--minmass", type=float, default=None, help="Minimum feature mass [estimated per video].")
@click.option("--search-range", type=float, default=None, help="Largest step linked, px/frame [estimated].")
@click.option("--separation", type=float, default=None, help="Smallest distance between spots, px [3 PSF sigmas].")
@click.option("--memory", type=click.IntRange(min=0), default=None,
              help="Frames a particle may vanish and still be linked; gaps are filled and flagged [8].")
@click.option("--min-length", type=click.IntRange(min=1), default=1, show_default=True, help="Drop trajectories shorter than this.")
@click.option("--refine", type=click.Choice(REFINERS), default=TrackOptions.refine, show_default=True,
              help="Sub-pixel positions: spot fit (gaussian; bilinear: the AnDi generator's spot model; auto: the one "
                   "that fits the video's isolated spots better) or none (centroids).")
@click.option("--linker", type=click.Choice(LINKERS), default=TrackOptions.linker, show_default=True,
              help="lap: global assignment with per-particle motion models and gap closing; trackpy: trackpy.link.")
@click.option("--andi-vip/--no-andi-vip", default=None,
              help="First page is (is not) an AnDi-2 VIP label image [recognised automatically].")
@click.option("--pixel-size", type=float, default=float("nan"), help="Pixel size, um (recorded as provenance).")
@click.option("--frame-interval", type=float, default=float("nan"), help="Frame interval, s (recorded).")
@click.option("--workers", type=int, default=None, help="Local Dask worker processes [CPUs available].")
@click.option("--scheduler-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Use the Dask cluster of this scheduler file instead of a local one.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar over videos.")
def track(inputs, out, diameter, minmass, search_range, separation, memory, min_length, refine, linker, andi_vip, pixel_size,
          frame_interval, workers, scheduler_file, progress) -> None:
    """Track particles in TIFF/OME-TIFF videos (trackpy) into a trajectory store, one shard per video.

    Re-running skips videos whose shard is complete. A video that cannot be tracked is
    named with the reason; the others are still tracked and the command exits 1.

    \b
    Example:
      anomalousnet-batch track --input 'data/*.tif' --out tracks/ --workers 4
    """
    from anomalousnet.io import store as st
    from anomalousnet.tracking.batch import track_videos

    try:
        given = {"memory": memory} if memory is not None else {}
        options = TrackOptions(diameter=diameter, minmass=minmass, search_range=search_range, separation=separation,
                               min_length=min_length,
                               refine=refine, linker=linker, andi_vip=andi_vip, pixel_size_um=pixel_size, frame_interval_s=frame_interval, **given)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        summary = track_videos(inputs, out, options, workers=workers, scheduler_file=scheduler_file,
                               progress=progress)
    except st.StoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{out}: {len(summary.written)} video(s) tracked, {len(summary.kept)} already complete, "
               f"{len(summary.failed)} failed")
    if summary.failed:
        for name, problem in summary.failed.items():
            click.echo(f"FAILED {name}: {problem}", err=True)
        sys.exit(1)
