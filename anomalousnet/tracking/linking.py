"""Linking detections into trajectories by global assignment with per-particle motion models.

trackpy's ``link`` chooses links by distance alone. Where a slow or trapped particle and a
fast one pass close to each other, or two particles are seen as one spot for a few frames,
distance alone swaps them. :func:`link` instead solves, frame by frame, one linear
assignment problem (``scipy.optimize.linear_sum_assignment``; the LAP approach of u-track
and TrackMate) between the particles alive in the last ``memory`` frames and the new
detections, with the cost of a link the negative log-likelihood of the step under that
particle's own motion: a 2D Gaussian step of variance ``2 s_i^2 g + 2 sigma_loc^2`` per
axis over a gap of ``g`` frames, where ``s_i^2`` is the particle's recent mean squared step
per axis (shrunk towards the population's while it has few steps). A trapped particle then
keeps its spot, a fast one is allowed its long steps, and a particle hidden in a merged
spot or blinking resumes its own track when it reappears (gap closing).

Alternatives in each assignment: a detection may start a new particle (``birth_cost``) and a
particle may stay undetected this frame (``gap_cost``, then closed later or ended after
``memory`` frames). When two particles could both take the same detection within
``ambiguity`` of the links they took (the swapped pair of links costs less than ``ambiguity``
more), both tracks end there and the two detections start new ones: a split is safer than a
swap.

Input and output are trackpy tables: ``frame``, ``x``, ``y`` (+ any columns) in, the same
with ``particle`` out.
"""
from __future__ import annotations

import dataclasses

import numpy as np

FORBIDDEN = 1e9


@dataclasses.dataclass(frozen=True)
class LinkOptions:
    """search_range: largest step linked in one frame, px (grows as sqrt(gap) over gaps).
    memory: frames a particle may go undetected and still be linked.
    noise: localisation precision, px per axis (its variance enters every step's variance).
    outlier: weight of a broad step distribution (per-axis variance (search_range / 3)^2 per
        frame) mixed into each particle's own, for changes of motion.
    history: recent steps over which a particle's step variance is averaged.
    prior_steps: weight, in steps, of the prior step variance in a particle's estimate (the
        population's mean, at least half the broad variance).
    gap_cost, birth_cost: costs (negative log-likelihood units) of leaving a particle
        undetected in a frame and of starting a new one.
    ambiguity: cost margin (negative log-likelihood units); two links whose swap costs less
        than this much more are ambiguous: both particles end and their detections start new
        particles (0 disables).
    predict: predict the next position from the last step and the particle's lag-1 step
        correlation (anomalous diffusion: negative for alpha < 1 and trapped particles with
        localisation noise, positive for alpha > 1), which also narrows the step variance.
    prior_pairs: weight, in step pairs, of zero correlation in a particle's estimate.
    merges: a detection taken by one particle while another, undetected this frame, could have
        taken it too, and at least ``merge_mass_ratio`` times as bright as the frame's median
        detection (when a ``mass`` column is given), is a merged spot (two particles seen as
        one): the taker's position is recorded but its anchor (last position, used for the
        next links) is not moved, for up to ``memory`` frames, so when the two part, each is
        matched from where it was before they merged.
    """

    search_range: float = 5.0
    memory: int = 8
    noise: float = 0.1
    history: int = 10
    prior_steps: float = 3.0
    gap_cost: float = 10.0
    birth_cost: float = 20.0
    ambiguity: float = 0.0
    predict: bool = False
    prior_pairs: float = 5.0
    merges: bool = True
    merge_mass_ratio: float = 1.2
    outlier: float = 0.05


class _Particle:
    __slots__ = ("pid", "x", "y", "frame", "seen", "sx", "sy", "sq_steps", "last", "pairs")

    def __init__(self, pid: int, x: float, y: float, frame: int):
        self.pid, self.x, self.y, self.frame = pid, x, y, frame  # anchor: last position used for links
        self.seen, self.sx, self.sy = frame, x, y  # last frame and position with a detection (merged spots included)
        self.sq_steps: list[float] = []  # per-axis mean squared step of each observed step, px^2
        self.last: tuple[float, float] | None = None  # last one-frame step (dx, dy)
        self.pairs: list[tuple[float, float]] = []  # (s_t . s_t-1, |s_t-1|^2) of consecutive steps

    def correlation(self, options: "LinkOptions") -> float:
        """Lag-1 correlation of the particle's steps, shrunk towards 0 and clipped to [-0.6, 0.6]."""
        recent = self.pairs[-options.history:]
        if not recent:
            return 0.0
        num = sum(p[0] for p in recent)
        den = sum(p[1] for p in recent)
        mean_sq = den / len(recent)
        return float(np.clip(num / (den + options.prior_pairs * mean_sq + 1e-12), -0.6, 0.6))


def _step_variance(p: _Particle, prior: float, options: LinkOptions) -> float:
    recent = p.sq_steps[-options.history:]
    return (options.prior_steps * prior + sum(recent)) / (options.prior_steps + len(recent))


def link(features, options: LinkOptions = LinkOptions()):
    """``features`` (frame, x, y, ...) with a ``particle`` column, linked as described above."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import cKDTree

    features = features.sort_values("frame", kind="stable").reset_index(drop=True)
    particle = np.full(len(features), -1, np.int64)
    xs, ys = features["x"].to_numpy(float), features["y"].to_numpy(float)
    mass = features["mass"].to_numpy(float) if "mass" in features else np.full(len(features), np.nan)
    noise2 = options.noise ** 2
    alive: list[_Particle] = []
    next_pid = 0
    all_sq: list[float] = []
    for frame, rows in features.groupby("frame", sort=True).indices.items():
        frame = int(frame)
        alive = [p for p in alive if frame - p.seen <= options.memory + 1]
        px, py = xs[rows], ys[rows]
        n_p, n_d = len(alive), len(rows)
        broad = (options.search_range / 3) ** 2  # per-axis variance of a step that fills the search range
        prior = max(float(np.mean(all_sq[-2000:])) if all_sq else 0.0, broad / 2, noise2)
        cost = np.full((n_p, n_d), FORBIDDEN)
        if n_p and n_d:
            gap = frame - np.array([p.frame for p in alive])
            var = np.array([_step_variance(p, prior, options) for p in alive]) * gap + 2 * noise2
            ax = np.array([p.x for p in alive])
            ay = np.array([p.y for p in alive])
            if options.predict:
                for i, p in enumerate(alive):
                    if gap[i] == 1 and p.last is not None:
                        rho = p.correlation(options)
                        ax[i] += rho * p.last[0]
                        ay[i] += rho * p.last[1]
                        var[i] *= 1 - rho ** 2
            tree = cKDTree(np.c_[px, py])
            reach = options.search_range * np.sqrt(gap)
            # A particle inside a merged spot was there when last seen: it cannot be further from
            # that spot than a step's reach since, however old its anchor is.
            seen_reach = options.search_range * np.sqrt(frame - np.array([p.seen for p in alive]))
            sx = np.array([p.sx for p in alive])
            sy = np.array([p.sy for p in alive])
            for i, js in enumerate(tree.query_ball_point(np.c_[ax, ay], reach)):
                if js:
                    js = np.asarray(js)
                    js = js[np.hypot(px[js] - sx[i], py[js] - sy[i]) <= seen_reach[i]]
                if len(js):
                    d2 = (px[js] - ax[i]) ** 2 + (py[js] - ay[i]) ** 2
                    cost[i, js] = step_cost(d2, var[i], broad * gap[i] + 2 * noise2, options.outlier)
        # Augmented matrix (Jaqaman et al. 2008): links | particle undetected; detection born | filler.
        size = n_p + n_d
        big = np.full((size, size), FORBIDDEN)
        big[:n_p, :n_d] = cost
        big[:n_p, n_d:][np.arange(n_p), np.arange(n_p)] = options.gap_cost
        big[n_p:, :n_d][np.arange(n_d), np.arange(n_d)] = options.birth_cost
        big[n_p:, n_d:] = np.where(cost.T < FORBIDDEN, 0.0, FORBIDDEN / 2)  # filler: free for linkable pairs
        r, c = linear_sum_assignment(big)
        taken = np.zeros(n_d, bool)
        links = [(i, j) for i, j in zip(r, c) if i < n_p and j < n_d and big[i, j] < FORBIDDEN / 2]
        if options.ambiguity > 0 and len(links) > 1:
            ambiguous = _ambiguous_links(cost, links, options.ambiguity)
            if ambiguous:
                ended = {i for i, _ in links if i in ambiguous}
                links = [(i, j) for i, j in links if i not in ambiguous]
                alive = [p for k, p in enumerate(alive) if k not in ended]
                remap = {old: new for new, old in enumerate(k for k in range(n_p) if k not in ended)}
                links = [(remap[i], j) for i, j in links]
                cost = cost[[k for k in range(n_p) if k not in ended]]
        merged = _merged_detections(cost, links, mass[rows], options.merge_mass_ratio) if options.merges else set()
        for i, j in links:
            p = alive[i]
            particle[rows[j]] = p.pid
            taken[j] = True
            p.seen, p.sx, p.sy = frame, px[j], py[j]
            if j in merged and frame - p.frame <= options.memory:
                continue  # a merged spot: keep the anchor where the particle was before
            if frame - p.frame == 1:
                step = (px[j] - p.x, py[j] - p.y)
                step2 = max((step[0] ** 2 + step[1] ** 2) / 2 - noise2, 0.0)  # per axis, less the noise
                p.sq_steps.append(step2)
                all_sq.append(step2)
                if p.last is not None:
                    p.pairs.append((step[0] * p.last[0] + step[1] * p.last[1], p.last[0] ** 2 + p.last[1] ** 2))
                p.last = step
            else:
                p.last = None
            p.x, p.y, p.frame = px[j], py[j], frame
        for j in np.flatnonzero(~taken):
            p = _Particle(next_pid, px[j], py[j], frame)
            next_pid += 1
            alive.append(p)
            particle[rows[j]] = p.pid
    return features.assign(particle=particle)


def step_cost(d2: np.ndarray, var: float, broad_var: float, outlier: float) -> np.ndarray:
    """Negative log-likelihood of 2D steps of squared length ``d2`` (px^2): a Gaussian of the
    particle's per-axis variance ``var``, mixed with weight ``outlier`` with a broad one
    (``broad_var``) so that a particle that changes state (trapped -> free) is not cut."""
    own = np.log1p(-outlier) - d2 / (2 * var) - np.log(2 * np.pi * var)
    wide = np.log(outlier) - d2 / (2 * broad_var) - np.log(2 * np.pi * broad_var)
    return -np.logaddexp(own, wide)


def _merged_detections(cost: np.ndarray, links, mass: np.ndarray, ratio: float) -> set[int]:
    """Linked detections that an unlinked particle could have taken too (finite cost) and that
    are bright enough to hold two particles (``ratio`` x the median mass; no mass: any)."""
    linked = {i for i, _ in links}
    lost = np.array([i for i in range(cost.shape[0]) if i not in linked], dtype=np.int64)
    if len(lost) == 0:
        return set()
    reachable = (cost[lost] < FORBIDDEN).any(axis=0)
    bright = mass >= ratio * np.nanmedian(mass) if np.isfinite(mass).any() else np.ones(len(mass), bool)
    return {j for _, j in links if reachable[j] and bright[j]}


def _ambiguous_links(cost: np.ndarray, links, margin: float) -> set[int]:
    """Particles (row indices) of links that could be swapped pairwise at a cost increase
    below ``margin``."""
    rows = np.array([i for i, _ in links])
    cols = np.array([j for _, j in links])
    own = cost[rows, cols]
    cross = cost[np.ix_(rows, cols)]  # cross[a, b]: particle of link a to detection of link b
    swap = cross + cross.T - own[:, None] - own[None, :]
    np.fill_diagonal(swap, np.inf)
    a, b = np.nonzero((swap < margin) & (cross < FORBIDDEN) & (cross.T < FORBIDDEN))
    return set(rows[a].tolist()) | set(rows[b].tolist())
