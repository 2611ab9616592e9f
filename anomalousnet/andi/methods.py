"""Methods an AnDi-2 submission can be written with, and the tracker of track-1 videos.

A method maps one field of view's Trajectories (px, frames) to one
:class:`~anomalousnet.io.andi_files.TrajectoryLabel` per trajectory: ``model`` (the
AnomalousNet pipeline with a model bundle), ``classical`` and ``naive`` (the baselines of
:mod:`anomalousnet.andi.baselines`). :func:`write_submission` is the whole of ``andi run``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from anomalousnet.andi import baselines
from anomalousnet.andi.submission import run_public
from anomalousnet.batch.summary import Summary
from anomalousnet.core.trajectories import Trajectories
from anomalousnet.io import store as st
from anomalousnet.io.andi_files import TrajectoryLabel, find_public, labels_from_segments
from anomalousnet.segments.zones import ZoneOptions, zone_stage_by

METHODS = ("model", "classical", "naive")


def model_method(spec: str = "default", options=None, batch_size: int = 1024, zones=ZoneOptions()):
    """The AnomalousNet pipeline as a method: per-frame predictions of the model bundle
    ``spec`` (:func:`anomalousnet.networks.predict.predict`), then change points and segments
    (:func:`anomalousnet.segments.segmentation.segment_trajectories`; the alpha of segments of
    tracks with change points from the network run on each alone,
    :func:`anomalousnet.segments.crops.crop_alpha`), then the field-of-view
    stage (:func:`anomalousnet.segments.zones.zone_stage_by`, per value of the ``fov`` track
    column when the trajectories of several FOVs come together, its verdicts pooled over the
    ``experiment`` column when there is one; ``zones=None``: off), then brief episodes of each
    experiment's other K level (:func:`anomalousnet.segments.episodes.add_episodes_by`;
    ``options.episode_llr`` None: off), then segment values pooled per experiment
    (:func:`anomalousnet.segments.pooling.pool_by`). Tracks
    for which the network only gives its documented fallback (too short) get no label here,
    so the submission writer counts them as fallbacks."""
    from anomalousnet.networks.bundle import load_bundle
    from anomalousnet.networks.predict import predict, with_predictions
    from anomalousnet.segments.crops import crop_alpha
    from anomalousnet.segments.episodes import add_episodes_by
    from anomalousnet.segments.pooling import pool_by
    from anomalousnet.segments.segmentation import SegmentOptions, segment_trajectories

    bundle = load_bundle(spec)
    options = options or SegmentOptions()

    def method(traj: Trajectories) -> list[TrajectoryLabel]:
        pred = predict(bundle, traj, batch_size=batch_size)
        predicted = with_predictions(traj, pred)
        segments = crop_alpha(bundle, predicted, segment_trajectories(predicted, options), options, batch_size)
        if zones is not None:
            segments = zone_stage_by(predicted, segments, "fov" if "fov" in traj.tracks else None, zones,
                                     pool="experiment" if "experiment" in traj.tracks else None)[0]
        group = next((c for c in ("experiment", "fov") if c in traj.tracks), None)
        fallback = np.asarray(pred["fallback"], bool)
        flagged = predicted.with_tracks({"fallback": fallback})
        segments = add_episodes_by(flagged, segments, options, group)
        if options.pool_values:  # over the FOVs of one experiment: one condition, one set of states
            segments = pool_by(flagged, segments, options, group)
        labels = labels_from_segments(segments)
        skip = set(traj.tracks["particle"][fallback].tolist())
        return [l for l in labels if l.idx not in skip]

    method.bundle = bundle
    return method


def make_method(name: str, model: str = "default"):
    """``model`` (the pipeline with bundle ``model``), ``classical`` or ``naive`` -> a method
    (Trajectories -> list of TrajectoryLabel)."""
    if name == "model":
        return model_method(model)
    if name == "classical":
        return baselines.classical
    if name == "naive":
        return baselines.naive
    raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")


def default_tracker(options=None, store_dir: os.PathLike | str | None = None):
    """A tracker for track 1: one video -> Trajectories with a per-track ``vip`` column, through
    :func:`anomalousnet.tracking.video_tracking.track_video`. With ``store_dir`` the shard of each
    video is kept there (named by :func:`anomalousnet.batch.inputs.shard_name`) and reused when
    complete - see :func:`track_public` to track every video in parallel first; without it,
    each video is tracked into a temporary shard."""
    from anomalousnet.batch.inputs import shard_name
    from anomalousnet.tracking.video_tracking import TrackOptions, track_video

    options = options or TrackOptions()

    def tracker(video: Path) -> Trajectories:
        if store_dir is not None:
            shard = Path(store_dir) / shard_name(video)
            if st.needs_writing(shard):
                Path(store_dir).mkdir(parents=True, exist_ok=True)
                track_video(video, shard, options, command="andi run")
            return st.read_shard(shard).trajectories
        with tempfile.TemporaryDirectory(prefix="andi-track-") as tmp:
            shard = track_video(video, Path(tmp) / "video.h5", options, command="andi run")
            return st.read_shard(shard).trajectories

    return tracker


def track_public(public_dir: os.PathLike | str, store_dir: os.PathLike | str, options=None,
                 workers: int | None = None, progress: bool = True):
    """Track every track-1 video of the public data into ``store_dir`` (one shard per video,
    Dask over videos, complete shards kept) with :func:`anomalousnet.tracking.batch.track_videos`;
    :func:`default_tracker` with the same ``store_dir`` then reads them. Returns its summary."""
    from anomalousnet.tracking.batch import track_videos
    from anomalousnet.tracking.video_tracking import TrackOptions

    videos = [str(f.video) for f in find_public(public_dir, [1])]
    return track_videos(videos, store_dir, options or TrackOptions(), workers=workers, progress=progress)


def write_submission(public_dir: os.PathLike | str, sub_dir: os.PathLike | str, method: str = "model",
                     model: str = "default", tracks: Sequence[int] = (1, 2),
                     tracks_store: os.PathLike | str | None = None, workers: int | None = None,
                     progress: bool = True) -> Summary:
    """``andi run``: a submission for the public data with method ``method`` (bundle ``model``).

    Track-1 videos are first tracked in parallel into ``tracks_store`` (kept for a re-run;
    default: a temporary folder); a video that cannot be tracked is in ``failed`` and its
    VIPs get fallback lines. See :func:`anomalousnet.andi.submission.run_public`.
    """
    with tempfile.TemporaryDirectory(prefix="andi-tracks-") as tmp:
        store = tracks_store or tmp
        tracker, failed = None, {}
        if 1 in tracks:
            tracked = track_public(public_dir, store, workers=workers, progress=progress)
            failed = {f"tracking {video}": problem for video, problem in tracked.failed.items()}
            tracker = default_tracker(store_dir=store)
        summary = run_public(public_dir, sub_dir, make_method(method, model), tracks, tracker=tracker,
                             progress=progress)
    summary.failed = {**failed, **summary.failed}
    return summary
