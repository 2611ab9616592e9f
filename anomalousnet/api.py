"""The Python API on DataFrames, in trackpy's style: ``track`` -> ``predict`` / ``analyse``.

Tables use trackpy's vocabulary: one row per position with ``particle``, ``frame``, ``x``,
``y`` (px, frames; other columns are carried along). K is in px^2/frame^alpha; multiply by
``pixel_size_um**2 / frame_interval_s**alpha`` for um^2/s^alpha. A particle whose frames
have gaps (trackpy's ``link`` with ``memory``) is rejected with the particle and frame
named, unless ``fill_gaps=True``: then the missing frames are filled by linear
interpolation and flagged in the ``interpolated`` column.
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from anomalousnet import ensemble as ens
from anomalousnet.core.names import PRED_COLUMNS, STATE_NAMES
from anomalousnet.core.trajectories import FrameGapError, Trajectories

REQUIRED_COLUMNS = ("particle", "frame", "x", "y")


def track(video, **track_options) -> pd.DataFrame:
    """Track one video: a trackpy-style table (particle, frame, x, y, mass, interpolated, vip).

    ``video``: a TIFF file (path) or an array of frames (T, Y, X). ``track_options``: those
    of :class:`~anomalousnet.tracking.video_tracking.TrackOptions` (``diameter``, ``minmass``,
    ``search_range``, ``memory``, ...); the ones not given are estimated from the video.
    The parameters used are in the table's ``attrs["tracking"]``. Frames a particle was not
    seen in are filled and flagged ``interpolated``; ``vip`` is the AnDi-2 VIP index (-1 for
    others). Raises :class:`~anomalousnet.io.video.VideoError` for an unusable video.
    """
    from anomalousnet.tracking.video_tracking import TrackOptions, track_dataframe

    options = TrackOptions(**track_options)
    if isinstance(video, (str, os.PathLike)):
        table, info = track_dataframe(Path(video), options)
    else:
        import tifffile

        frames = np.asarray(video)
        if frames.ndim != 3:
            raise ValueError(f"video must be a TIFF path or an array of frames (T, Y, X), not shape {frames.shape}")
        with tempfile.TemporaryDirectory(prefix="anomalousnet-track-") as tmp:
            path = Path(tmp) / "video.tif"
            tifffile.imwrite(path, frames, photometric="minisblack")
            table, info = track_dataframe(path, options)
    table = table.reset_index(drop=True)
    table.attrs["tracking"] = info
    return table


def predict(trajectories: pd.DataFrame, model="default", fill_gaps: bool = False,
            batch_size: int = 1024) -> pd.DataFrame:
    """Per-frame predictions of the networks: the input table (sorted by particle and frame)
    with ``pred_alpha``, ``pred_K`` (px^2/frame^alpha), ``pred_state`` (0 immobile, 1 confined,
    2 free, 3 directed), the state probabilities ``pred_p_*`` and ``fallback`` (True for a
    trajectory too short for the networks: alpha 1, free, K from its steps).

    ``model``: "default" (the shipped model) or a model bundle directory.
    """
    from anomalousnet.networks.predict import predict as predict_points

    traj = _trajectories(trajectories, fill_gaps)
    preds = predict_points(_bundle(str(model)), traj, batch_size=batch_size)
    return _points_table(traj, preds)


def analyse(trajectories: pd.DataFrame, model="default", fill_gaps: bool = False, batch_size: int = 1024,
            zones: bool = True, **segment_options) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The AnomalousNet pipeline on a trajectory table: ``(points, segments, ensemble)``.

    ``points``: as :func:`predict`. ``segments``: one row per segment: ``particle``,
    ``start``, ``end`` (index within the trajectory, end exclusive), ``frame_start``,
    ``alpha``, ``K``, ``state``, ``state_name``. ``ensemble``: per state, the frame-weighted
    mean and variance of alpha and K, the state's share of frames (``weight``), segments and
    frames. ``segment_options``: those of
    :class:`~anomalousnet.segments.segmentation.SegmentOptions` (``penalty``, ``width``,
    ``min_dwell``, ``noise``, ``state_prior``, ...).

    The table is one field of view: with ``zones`` the field-of-view stage
    (:mod:`anomalousnet.segments.zones`) decides confined against slow free motion from all its
    trajectories, and ``segments.attrs["zones"]`` holds its zones, one dict per zone (``x``,
    ``y``, ``radius``, ``kind``, ...; ``pd.DataFrame(segments.attrs["zones"])`` makes the table).
    Then alpha and K are pooled over the table's segments of one state
    (:mod:`anomalousnet.segments.pooling`; ``pool_values=False``: each segment alone).
    """
    from anomalousnet.networks.predict import predict as predict_points
    from anomalousnet.networks.predict import with_predictions
    from anomalousnet.segments.segmentation import SegmentOptions, with_frames
    from anomalousnet.segments.zones import ZoneOptions, segments_with_zones

    options = SegmentOptions(**segment_options)
    traj = _trajectories(trajectories, fill_gaps)
    bundle = _bundle(str(model))
    preds = predict_points(bundle, traj, batch_size=batch_size)
    flagged = traj.with_tracks({"fallback": np.asarray(preds["fallback"], bool)})  # left out of the pooling
    segments, zone_table = segments_with_zones(with_predictions(flagged, preds), options,
                                               ZoneOptions() if zones else None, bundle=bundle, batch_size=batch_size)
    segments = with_frames(segments, traj)
    segments_df = pd.DataFrame({c: segments[c] for c in ("particle", "start", "end", "frame_start", "alpha", "K",
                                                         "state")})
    segments_df["state_name"] = [STATE_NAMES[s] for s in segments_df["state"]]
    segments_df.attrs["zones"] = pd.DataFrame(zone_table).to_dict("records")  # plain data: attrs are copied
    ensemble_df = pd.DataFrame(ens.fov_ensemble(segments))
    ensemble_df.insert(1, "state_name", [STATE_NAMES[s] for s in ensemble_df["state"]])
    return _points_table(traj, preds), segments_df, ensemble_df


def _trajectories(df: pd.DataFrame, fill_gaps: bool) -> Trajectories:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"trajectory table lacks column(s) {', '.join(missing)}; it needs particle, frame, x, y "
                         f"(found {', '.join(map(str, df.columns))})")
    if df.empty:
        raise ValueError("trajectory table has no rows")
    for c in ("particle", "frame"):
        values = df[c].to_numpy()
        if not np.all(np.isfinite(values.astype(float))) or np.any(values != np.round(values.astype(float))):
            raise ValueError(f"column {c} must hold integers")
    table = df.astype({"particle": np.int64, "frame": np.int64})
    try:
        return Trajectories.from_dataframe(table, fill_gaps=fill_gaps)
    except FrameGapError as exc:
        raise FrameGapError(f"{exc}; pass fill_gaps=True to fill missing frames by interpolation (flagged "
                            "in the 'interpolated' column)") from None


@functools.lru_cache(maxsize=4)
def _bundle(spec: str):
    """Model bundles stay open between calls (their networks are built on first use)."""
    from anomalousnet.networks.bundle import load_bundle

    return load_bundle(spec)


def _points_table(traj: Trajectories, preds: dict) -> pd.DataFrame:
    table = traj.with_points({c: preds[c] for c in PRED_COLUMNS}).to_dataframe()
    table["fallback"] = np.repeat(np.asarray(preds["fallback"], bool), traj.lengths)
    return table
