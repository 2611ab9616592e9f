"""Brief episodes of a field of view's other diffusive state, found from the raw steps.

The change-point detector compares windows of 10 frames and needs a change to pay a penalty,
so a visit of 3-10 frames to another state inside a long segment mostly goes unseen (AnDi-2's
two-state model switches with probability 0.01 per frame: about 9 % of its dwells are under
10 frames). One trajectory cannot tell a short slow stretch from chance; a field of view (or
the FOVs of one condition) can: its segments already show which diffusive states it holds,
and how large each one's steps are.

Per group (a FOV, or the FOVs of one condition):

1. **Levels.** The segments' log10 K, frame-weighted, split in two clusters more than
   ``episode_decades`` apart (:func:`anomalousnet.segments.pooling.k_clusters`); one
   cluster: nothing to do. Each level's step size is the robust variance of its segments'
   frame-to-frame steps (median of the squared 2D step / 2 ln 2 per axis: a one-frame jump
   does not move it), its values the frame-weighted medians of its segments' alpha and K,
   and its state the one most of its frames are called.
2. **Episodes.** Inside each segment, every step gets the log likelihood ratio of the other
   level's step size against its own (2D Gaussian steps), capped at ``episode_step_cap`` so
   that one outlying step (a tracking jump, a dimer letting go for one frame) cannot make an
   episode alone. The run of at least ``episode_min_frames`` steps with the highest sum
   becomes an episode of the other level when that sum exceeds ``episode_llr``; the rest of
   the segment is searched again. Runs stay ``episode_margin`` steps clear of a segment's
   inner ends (there the detector has already placed a change point, and a run beside it is
   a matter of where, not whether).
3. **Values.** An episode takes its level's alpha, K and state (a few frames say little
   more) and is marked in the ``episode`` column: it has no values of its own, so pooling
   leaves it out and its ``alpha_single`` and ``K_single`` are NaN (the ensembles' moments
   come from measured segments; its frames count in its state's weight). What is left of
   the segment on each side is valued again as the segment stage values a segment
   (:func:`~anomalousnet.segments.segmentation.refined_values`: the median of the network's
   alpha over its frames, with ``pred_alpha`` in the points, blended with an MSD fit of its
   positions; K from the fit), since the episode's steps had pulled the segment's values;
   too short for a fit, it keeps its alpha and takes its level's K.

Step t (frame t to t + 1) belongs to frame t: andi-datasets draws the displacement from frame
t to t + 1 with the state labelled at t.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from anomalousnet.core.names import IMMOBILE, N_STATES
from anomalousnet.core.trajectories import Trajectories, measured_points
from anomalousnet.segments.msd import squared_steps
from anomalousnet.segments.pooling import k_clusters, segment_groups
from anomalousnet.segments.segmentation import called_state, refined_values, with_track_noise

# a 2D Gaussian step of per-axis variance v has r^2 = 2 v Exp(1): its median is 2 v ln 2
_LN2x2 = 2.0 * np.log(2.0)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    return float(values[order][np.searchsorted(np.cumsum(weights[order]), weights.sum() / 2)])


def best_run(d: np.ndarray, min_len: int) -> tuple[float, int, int]:
    """(sum, a, b) of the contiguous run d[a:b] of at least ``min_len`` entries with the highest
    sum; (-inf, 0, 0) when ``d`` is shorter than ``min_len``."""
    n = len(d)
    if n < min_len or min_len < 1:
        return -np.inf, 0, 0
    prefix = np.r_[0.0, np.cumsum(d)]
    # for each end b (exclusive) >= min_len: the start a <= b - min_len with the least prefix
    ends = np.arange(min_len, n + 1)
    starts = prefix[:n - min_len + 1]
    # the first index of each running minimum of the prefix sums
    new_low = np.r_[True, starts[1:] < np.minimum.accumulate(starts)[:-1]]
    low_at = np.maximum.accumulate(np.where(new_low, np.arange(len(starts)), 0))
    sums = prefix[ends] - starts[low_at]
    k = int(np.argmax(sums))
    return float(sums[k]), int(low_at[k]), int(ends[k])


def _step_llr(r2: np.ndarray, v_other: float, v_own: float) -> np.ndarray:
    """Log likelihood ratio of 2D Gaussian steps (squared lengths ``r2``) with per-axis variance
    ``v_other`` against ``v_own``."""
    return np.log(v_own / v_other) - r2 / 2.0 * (1.0 / v_other - 1.0 / v_own)


def find_episodes(r2: np.ndarray, ok: np.ndarray, v_own: float, v_other: float, options,
                  open_left: bool, open_right: bool) -> list[tuple[int, int]]:
    """Episodes (a, b), step ranges of the other level, inside one segment whose steps have
    squared lengths ``r2`` (``ok``: measured); ``open_left``/``open_right``: the segment's
    start/end is a track end (no margin kept there)."""
    d = np.minimum(_step_llr(r2, v_other, v_own), options.episode_step_cap)
    d[~ok] = 0.0
    lo = 0 if open_left else options.episode_margin
    hi = len(d) - (0 if open_right else options.episode_margin)
    found, ranges = [], [(lo, hi)]
    while ranges:
        a0, b0 = ranges.pop()
        total, a, b = best_run(d[a0:b0], options.episode_min_frames)
        if total <= options.episode_llr:
            continue
        found.append((a0 + a, a0 + b))
        # the rest on each side, one step apart (the next episode is one of its own)
        ranges += [r for r in ((a0, a0 + a - 1), (a0 + b + 1, b0)) if r[1] - r[0] >= options.episode_min_frames]
    return sorted(found)


def _levels(segments: Mapping[str, np.ndarray], rows: np.ndarray, r2_of: dict, options):
    """The group's two levels (per level: row indices, per-axis step variance, alpha, K,
    state) or None."""
    n = (segments["end"][rows] - segments["start"][rows]).astype(np.float64)
    logk = np.log10(np.maximum(segments["K"][rows].astype(np.float64), options.k_floor))
    parts = k_clusters(logk, n, options.episode_decades)
    if len(parts) < 2:
        return None
    levels = []
    for part in parts:
        r = rows[part]
        steps = np.concatenate([r2_of[i] for i in r]) if len(r) else np.zeros(0)
        if len(steps) < 10:
            return None
        w = n[part]
        state = int(np.argmax(np.bincount(segments["state"][r].astype(np.int64), weights=w, minlength=N_STATES)))
        levels.append({"rows": set(r.tolist()), "v": max(float(np.median(steps)) / _LN2x2, 1e-12),
                       "alpha": _weighted_median(segments["alpha"][r], w), "K": _weighted_median(segments["K"][r], w),
                       "state": state})
    return levels


def add_episodes(traj: Trajectories, segments: Mapping[str, np.ndarray], options, groups: np.ndarray | None = None,
                 exclude: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``segments`` (of the tracks of ``traj``, in track order, with positions ``x``, ``y``)
    with brief episodes of the other level split out (see the module docstring); ``options`` a
    :class:`~anomalousnet.segments.segmentation.SegmentOptions` (``episode_llr`` None: unchanged).
    ``groups``: one value per segment (None: one group); ``exclude``: segments left as they are
    (and out of the levels), e.g. those of tracks too short for the networks. With the stage
    on, the result has a bool column ``episode`` (True: a brief episode it split out)."""
    segments = {c: np.asarray(v) for c, v in segments.items()}
    if options.episode_llr is None:
        return segments
    segments.setdefault("episode", np.zeros(len(segments["particle"]), bool))
    if not len(segments["particle"]):
        return segments
    row_of = {p: i for i, p in enumerate(np.asarray(traj.tracks["particle"]).tolist())}
    x, y = np.asarray(traj.points["x"], np.float64), np.asarray(traj.points["y"], np.float64)
    measured = measured_points(traj.points)
    network = np.asarray(traj.points["pred_alpha"], np.float64) if "pred_alpha" in traj.points else None
    precision = traj.points.get("precision")
    track_start = np.array([traj.offsets[row_of[p]] for p in segments["particle"].tolist()], np.int64)
    track_len = np.array([traj.lengths[row_of[p]] for p in segments["particle"].tolist()], np.int64)
    a_pt, b_pt = track_start + segments["start"], track_start + segments["end"]
    ok_pt = np.ones(len(x), bool) if measured is None else measured
    r2_all = np.r_[squared_steps(x, y), 0.0]   # step from point i to i + 1
    ok_all = np.r_[ok_pt[1:] & ok_pt[:-1], False]
    # a segment's steps: from each of its frames but the last to the next
    r2_of = {i: r2_all[a:b - 1] for i, (a, b) in enumerate(zip(a_pt, b_pt))}
    ok_of = {i: ok_all[a:b - 1] for i, (a, b) in enumerate(zip(a_pt, b_pt))}
    clean = {i: r2_of[i][ok_of[i]] for i in r2_of}
    groups = np.zeros(len(a_pt), np.int64) if groups is None else np.asarray(groups)
    use = np.ones(len(a_pt), bool) if exclude is None else ~np.asarray(exclude, bool)
    split: dict[int, list[tuple[int, int, int]]] = {}  # row -> [(start, end, level)] in track frames
    level_of_split: dict[int, list[dict]] = {}
    for g in np.unique(groups[use]):
        rows = np.flatnonzero(use & (groups == g))
        levels = _levels(segments, rows, clean, options)
        if levels is None:
            continue
        for i in rows.tolist():
            own = 0 if i in levels[0]["rows"] else 1
            other = levels[1 - own]
            eps = find_episodes(r2_of[i], ok_of[i], levels[own]["v"], other["v"], options,
                                open_left=segments["start"][i] == 0, open_right=segments["end"][i] == track_len[i])
            if eps:
                split[i] = [(segments["start"][i] + a, segments["start"][i] + b, 1 - own) for a, b in eps]
                level_of_split[i] = levels
    if not split:
        return segments
    out = {c: [] for c in segments}
    for i in range(len(a_pt)):
        if i not in split:
            for c in segments:
                out[c].append(segments[c][i:i + 1])
            continue
        levels, own = level_of_split[i], 1 - split[i][0][2]
        pieces, pos = [], int(segments["start"][i])
        for a, b, level in split[i]:
            if a > pos:
                pieces.append((pos, a, None))
            pieces.append((a, b, level))
            pos = b
        if pos < segments["end"][i]:
            pieces.append((pos, int(segments["end"][i]), None))
        for a, b, level in pieces:
            row = {c: segments[c][i:i + 1].copy() for c in segments}
            row["start"][0], row["end"][0] = a, b
            if level is not None:
                row["alpha"][0], row["K"][0], row["state"][0] = (levels[level]["alpha"], levels[level]["K"],
                                                                 levels[level]["state"])
                row["episode"][0] = True
            else:
                p, q = track_start[i] + a, track_start[i] + b
                if b - a >= options.min_fit_frames:
                    opts = with_track_noise(options, None if precision is None else precision[p:q])
                    net = float(row["alpha"][0]) if network is None else np.median(network[p:q])
                    alpha, K = refined_values(net, levels[own]["K"], opts, x[p:q], y[p:q],
                                              None if measured is None else measured[p:q])
                    if row["state"][0] != IMMOBILE or not options.immobile_alpha_zero:
                        row["alpha"][0] = alpha
                    row["K"][0] = K
                    row["state"][0] = called_state(int(row["state"][0]), float(row["alpha"][0]), options)
                else:
                    row["K"][0] = levels[own]["K"]
            for c in segments:
                out[c].append(row[c])
    return {c: np.concatenate(v) for c, v in out.items()}


def add_episodes_by(traj: Trajectories, segments: Mapping[str, np.ndarray], options, column: str | None = None
                    ) -> dict[str, np.ndarray]:
    """:func:`add_episodes` grouped by the track column ``column`` (None: one group), the
    segments of tracks flagged in the track column ``fallback`` left as they are."""
    return add_episodes(traj, segments, options, *segment_groups(traj, segments, column))
