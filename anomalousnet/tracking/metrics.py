"""Accuracy of tracking against known positions: localisation RMSE, coverage of a true
trajectory by one tracked particle, VIPs recovered (``benchmarks/bench_tracking.py``, tests)."""
from __future__ import annotations

import numpy as np

from anomalousnet.core.trajectories import Trajectories


def localisation_rmse(tracked, truth, tol: float = 1.5) -> tuple[float, float]:
    """RMSE (px) of detected positions against true ones, and the fraction of true positions found.

    ``tracked``: a trajectory table (frame, x, y, interpolated); ``truth``: frame, x, y in the
    same convention (x = column, y = row), optionally ``visible``. Each true position is matched
    to the nearest detection (filled points excluded) of its frame; matches beyond ``tol`` px
    count as misses, not errors.
    """
    from scipy.spatial import cKDTree

    observed = tracked[~tracked["interpolated"].astype(bool)]
    if "visible" in truth:
        truth = truth[truth["visible"]]
    by_frame = {f: g[["x", "y"]].to_numpy() for f, g in observed.groupby("frame")}
    errors = []
    for frame, t in truth.groupby("frame"):
        found = by_frame.get(frame)
        if found is not None and len(found):
            d, _ = cKDTree(found).query(t[["x", "y"]].to_numpy())
            errors.extend(d[d < tol])
    rmse = float(np.sqrt(np.mean(np.square(errors)))) if errors else float("nan")
    return rmse, len(errors) / max(len(truth), 1)


def track_coverage(tracked, particle: int, truth_track, tol: float = 1.5) -> float:
    """Fraction of a true trajectory's frames (frame, x, y) at which tracked ``particle`` is
    within ``tol`` px of it: 1.0 means linked to the right particle all along."""
    mine = tracked[tracked["particle"] == particle][["frame", "x", "y"]]
    both = mine.merge(truth_track[["frame", "x", "y"]], on="frame", suffixes=("", "_true"))
    close = np.hypot(both["x"] - both["x_true"], both["y"] - both["y_true"]) < tol
    return float(close.sum()) / max(len(truth_track), 1)


def vip_recovery(traj: Trajectories, truth, vips, tol: float = 1.5, min_coverage: float = 0.9
                 ) -> tuple[float, dict[int, float]]:
    """Fraction of VIPs recovered: their tagged trajectory follows the right particle over at
    least ``min_coverage`` of its frames. ``truth``: traj_idx, frame, x, y (video pixels).
    Returns (fraction, {vip: coverage}); an untagged VIP has coverage 0."""
    tracked = traj.to_dataframe()
    coverage = {}
    for vip in vips:
        rows = np.flatnonzero(traj.tracks["vip"] == vip)
        true_track = truth[truth["traj_idx"] == vip]
        coverage[int(vip)] = track_coverage(tracked, int(traj.tracks["particle"][rows[0]]), true_track, tol) \
            if len(rows) else 0.0
    fraction = float(np.mean([c >= min_coverage for c in coverage.values()])) if coverage else float("nan")
    return fraction, coverage
