"""Reference methods the AnomalousNet pipeline is measured against.

* :func:`naive`: one segment per trajectory, the same alpha and K for all, free state:
  what a submission scores by knowing nothing.
* :func:`classical`: change points from ruptures on the step sizes (the log of squared
  frame-to-frame displacements, where a change of K or alpha is a change of mean), then per
  segment a time-averaged MSD fit, ``MSD(lag) = 4 K lag^alpha + 4 sigma^2`` in 2D (the
  AnDi-2 convention: each coordinate's increments have variance ``2 K lag^alpha``), and the
  state from thresholds on the fitted values (immobile segments get alpha 0, as in AnDi-2).

Both map :class:`anomalousnet.core.trajectories.Trajectories` (one field of view, length units px,
time in frames) to one :class:`anomalousnet.io.andi_files.TrajectoryLabel` per track, indexed by the
track's ``particle``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from anomalousnet.core.names import CONFINED, DIRECTED, FREE, IMMOBILE
from anomalousnet.core.trajectories import Trajectories
from anomalousnet.io.andi_files import TrajectoryLabel
from anomalousnet.segments.msd import ANDI_NOISE, log_steps, msd_fit


def naive(traj: Trajectories, alpha: float = 1.0, K: float = 1.0) -> list[TrajectoryLabel]:
    """One free segment per trajectory with the given alpha and K (default: Brownian, the
    AnDi-2 baseline K of 1 px^2/frame)."""
    return [TrajectoryLabel(int(p), (float(K),), (float(alpha),), (FREE,), (), int(n))
            for p, n in zip(traj.tracks["particle"], traj.lengths)]


@dataclasses.dataclass(frozen=True)
class ClassicalOptions:
    """Settings of the classical baseline.

    penalty: ruptures penalty per change point, in units of the step signal's variance
        times log(n) (a BIC-like scale, so one value fits all lengths).
    min_size: shortest segment in frames the detector may cut.
    max_lag: largest MSD lag used in a fit (frames); a segment uses at most a quarter of its length.
    noise: localisation noise sigma (px) subtracted in the MSD model (AnDi-2 default 0.12).
    immobile_K: K below which a segment is called immobile (px^2/frame^alpha).
    confined_alpha, directed_alpha: alpha below / above which a mobile segment is called
        confined / directed.
    """

    penalty: float = 4.0
    min_size: int = 5
    max_lag: int = 4
    noise: float = ANDI_NOISE
    immobile_K: float = 0.005
    confined_alpha: float = 0.4
    directed_alpha: float = 1.8


def detect_changepoints(signal: np.ndarray, penalty: float, min_size: int) -> list[int]:
    """Change points of a 1-D signal with ruptures' kernel CPD (linear kernel = L2 cost, in C).

    Returns indices into the signal where a new segment starts (0 < cp < len(signal)).
    """
    import ruptures as rpt

    n = len(signal)
    if n < 2 * min_size:
        return []
    var = np.var(signal) if n > 1 else 1.0
    algo = rpt.KernelCPD(kernel="linear", min_size=min_size).fit(signal.reshape(-1, 1))
    bkps = algo.predict(pen=penalty * max(var, 1e-12) * np.log(n))
    return [int(b) for b in bkps[:-1]]


def classify_state(alpha: float, K: float, options: ClassicalOptions) -> int:
    """0 immobile, 1 confined, 2 free, 3 directed from thresholds on the fitted values."""
    if K < options.immobile_K:
        return IMMOBILE
    if alpha < options.confined_alpha:
        return CONFINED
    if alpha > options.directed_alpha:
        return DIRECTED
    return FREE


def classical_track(particle: int, x: np.ndarray, y: np.ndarray,
                    options: ClassicalOptions = ClassicalOptions()) -> TrajectoryLabel:
    """Segments of one trajectory: change points in the step signal, then MSD fits."""
    n = len(x)
    # a change of the step signal at index i starts a new segment at frame i + 1
    cps = [c + 1 for c in detect_changepoints(log_steps(x, y), options.penalty, options.min_size)] if n > 2 else []
    bounds = [0, *cps, n]
    alphas, Ks, states = [], [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        alpha, K = msd_fit(x[a:b], y[a:b], options.max_lag, options.noise)
        states.append(classify_state(alpha, K, options))
        alphas.append(0.0 if states[-1] == IMMOBILE else alpha)  # AnDi-2: a particle held in place has alpha 0
        Ks.append(K)
    return TrajectoryLabel.from_segments(particle, bounds[:-1], bounds[1:], alphas, Ks, states)


def classical(traj: Trajectories, options: ClassicalOptions = ClassicalOptions()) -> list[TrajectoryLabel]:
    """The classical baseline on every track of a field of view."""
    return [classical_track(int(traj.tracks["particle"][i]), t["x"], t["y"], options)
            for i, t in enumerate(traj)]
