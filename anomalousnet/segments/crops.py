"""The alpha network run again on each segment alone (``SegmentOptions.crop_min_frames``).

The shipped alpha network sees +-108 frames around each frame, so it blurs a switch of alpha
over 20-40 frames: a 40-frame segment between two others reads partly their alpha (the
directed set's alpha 0.6 segments between alpha 1.9 ones read about 0.13 high). Once the
change points are known, each segment of a track that has them is cut out as a track of
its own and predicted again; its network alpha is the median of that prediction, blended
with its MSD fit as before (:func:`anomalousnet.segments.segmentation.refined_values`), and
a free or directed call follows the new alpha. Whole-track segments, immobile ones, those
shorter than ``crop_min_frames`` and those whose alpha is within ``crop_contrast`` of their
neighbours' keep their values. K, from the MSD fit, is unchanged.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from anomalousnet.core.names import IMMOBILE
from anomalousnet.core.trajectories import Trajectories, measured_points
from anomalousnet.segments.segmentation import SegmentOptions, called_state, refined_values, with_track_noise

# point columns a crop keeps: positions, and what says which of them tracking measured
_CROP_COLUMNS = ("x", "y", "interpolated", "merged")


def crop_rows(segments: Mapping[str, np.ndarray], min_frames: int, contrast: float = 0.0) -> np.ndarray:
    """Rows of the segments table that get their own prediction: segments of tracks with
    more than one segment, at least ``min_frames`` long, not immobile, whose alpha differs
    from a neighbouring segment's by at least ``contrast`` (where the neighbours read alike,
    their blur costs nothing, and a change point between them may be false)."""
    particle = np.asarray(segments["particle"])
    alpha = np.asarray(segments["alpha"], np.float64)
    same_left = np.r_[False, particle[1:] == particle[:-1]]
    same_right = np.r_[particle[:-1] == particle[1:], False]
    jump = np.abs(np.diff(alpha))
    left = np.where(same_left, np.r_[0.0, jump], -np.inf)
    right = np.where(same_right, np.r_[jump, 0.0], -np.inf)
    n = np.asarray(segments["end"]) - np.asarray(segments["start"])
    return np.flatnonzero((np.maximum(left, right) >= contrast) & (n >= min_frames) &
                          (np.asarray(segments["state"]) != IMMOBILE))


def crop_alpha(bundle, traj: Trajectories, segments: Mapping[str, np.ndarray], options: SegmentOptions,
               batch_size: int = 1024) -> dict[str, np.ndarray]:
    """``segments`` (of the tracks of ``traj``, track-relative frames) with alpha, and the free
    or directed call, of the :func:`crop_rows` from the alpha network of ``bundle`` run on
    each of them alone (see the module docstring). Unchanged when ``crop_min_frames`` is
    None or no row qualifies."""
    from anomalousnet.networks.predict import predict

    out = {c: np.array(v, copy=True) for c, v in segments.items()}
    if options.crop_min_frames is None:
        return out
    rows = crop_rows(out, options.crop_min_frames, options.crop_contrast)
    if not len(rows):
        return out
    row_of = {p: i for i, p in enumerate(np.asarray(traj.tracks["particle"]).tolist())}
    first = np.array([traj.offsets[row_of[p]] for p in out["particle"][rows].tolist()], np.int64)
    starts, ends = first + out["start"][rows], first + out["end"][rows]
    columns = [c for c in _CROP_COLUMNS if c in traj.points]
    crops = Trajectories.from_arrays([{c: np.asarray(traj.points[c][a:b]) for c in columns}
                                      for a, b in zip(starts, ends)])
    network = predict(bundle, crops, batch_size=batch_size, targets=("alpha",))["pred_alpha"]
    measured = measured_points(traj.points)
    precision = traj.points.get("precision")
    x, y = np.asarray(traj.points["x"], np.float64), np.asarray(traj.points["y"], np.float64)
    for j, (r, a, b) in enumerate(zip(rows, starts, ends)):
        median = float(np.median(network[crops.offsets[j]:crops.offsets[j + 1]]))
        opts = with_track_noise(options, None if precision is None else precision[a:b])
        fit = (x[a:b], y[a:b], None if measured is None else measured[a:b]) if options.refine else ()
        alpha = refined_values(median, float(out["K"][r]), opts, *fit)[0]
        out["alpha"][r] = alpha
        out["state"][r] = called_state(int(out["state"][r]), alpha, options)
    return out
