"""The field-of-view stage: zones where slow motion is bound to a place, and the segment
states they decide.

From one trajectory a particle confined in a compartment looks like a slowly diffusing free
one. Across a field of view they differ: compartments are fixed in space, and a fast
particle that reaches one is caught in it (it slows down), so fast motion never crosses a
compartment; slow free motion (a second diffusive state, a dimer) happens anywhere, and fast
particles cross its places as often as any other.

The stage, per FOV:

1. **Slow segments**: called confined, or called free with K below ``slow_ratio`` x the FOV's
   fast K (the frame-weighted ``fast_quantile`` of the mobile segments' K), and at least
   ``min_frames`` long.
2. **Candidate zones**: slow segments whose discs (centroid, 95th-percentile radius +
   ``margin``) overlap are joined; a zone is the disc around all their points.
3. **Evidence**: the fast points (measured points of fast free segments, except within
   ``edge_frames`` of a slow segment of the same track, where a change point may sit a frame
   off) inside the zone, ``k``, against the number a place of that size receives in this FOV,
   ``lam`` (the FOV's fast-point density x the zone's area). A compartment leaks fast points
   only at ``leak`` x ``lam``; a place with no compartment receives ``Poisson(lam)``. The log
   likelihood ratio ``k ln(leak) + lam (1 - leak)`` above ``log_odds`` accepts the zone, below
   ``-log_odds`` rejects it; in between it is undecided. A zone wider than ``max_radius`` is
   rejected.
4. **The FOV's verdict**: *zoned* when the decided zones hold more frames accepted than
   rejected, *free* when rejected ones dominate, *undecided* when none is decided. Undecided
   zones follow the verdict.
5. **States**: a confined or free segment with at least half of its frames inside accepted
   zones becomes confined; any other confined segment becomes free, unless the FOV is
   undecided (the networks' calls then stand). Immobile and directed segments are left as they
   are. Alpha, K and change points are not changed.

:func:`zone_stage` runs it on one FOV; :func:`zone_stage_by` on a table of several FOVs.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple

import numpy as np

from anomalousnet.core.names import CONFINED, FREE, IMMOBILE
from anomalousnet.core.trajectories import Trajectories, measured_points

ZONE_COLUMNS = ("zone", "x", "y", "radius", "kind", "segments", "frames", "fast_inside", "fast_expected")
ZONE_KINDS = ("confinement", "trap")
VERDICTS = ("zoned", "free", "undecided")


@dataclasses.dataclass(frozen=True)
class ZoneOptions:
    """Settings of the field-of-view stage (see the module docstring).

    slow_ratio: a free segment is slow when its K is below this share of the FOV's fast K.
    fast_quantile: the frame-weighted quantile of the mobile segments' K taken as fast K.
    min_frames: shortest slow segment that can make a zone, frames.
    margin: added to a zone's 95th-percentile radius (localisation noise, the unexplored
        rim), px.
    edge_frames: fast points this close (frames) to a slow segment of the same track are
        not counted as evidence (a change point may be placed a frame or two off).
    leak: the share of the expected fast points a real zone still shows (misplaced change
        points, noise).
    log_odds: the log likelihood ratio that decides a zone either way.
    max_radius: wider candidate zones are rejected, px.
    """

    slow_ratio: float = 0.3
    immobile_ratio: float = 0.005
    window: int = 2
    fast_quantile: float = 0.9
    min_frames: int = 10
    margin: float = 0.5
    edge_frames: int = 3
    leak: float = 0.05
    log_odds: float = 3.0
    max_radius: float = 20.0
    escape: float = 0.15
    shared_odds: float = 10.0
    zoned_odds: float = 1.0
    free_odds: float = 3.0
    pair_distance: float = 2.0
    pair_share: float = 0.5

    def __post_init__(self):
        if not 0 < self.slow_ratio < 1 or not 0 < self.fast_quantile <= 1 or not 0 < self.leak < 1:
            raise ValueError(f"slow_ratio, fast_quantile and leak must be in (0, 1), got {self.slow_ratio}, "
                             f"{self.fast_quantile}, {self.leak}")
        if self.min_frames < 2 or self.margin < 0 or self.edge_frames < 0 or self.log_odds <= 0 \
                or self.max_radius <= 0:
            raise ValueError("min_frames must be >= 2; margin, edge_frames >= 0; log_odds, max_radius > 0")


def empty_zones() -> dict[str, np.ndarray]:
    return {"zone": np.zeros(0, np.int64), "x": np.zeros(0), "y": np.zeros(0), "radius": np.zeros(0),
            "kind": np.zeros(0, dtype=object), "segments": np.zeros(0, np.int64), "frames": np.zeros(0, np.int64),
            "fast_inside": np.zeros(0, np.int64), "fast_expected": np.zeros(0)}


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q * cum[-1])])


def _disc(x: np.ndarray, y: np.ndarray, margin: float) -> tuple[float, float, float]:
    cx, cy = float(np.mean(x)), float(np.mean(y))
    return cx, cy, float(np.percentile(np.hypot(x - cx, y - cy), 95)) + margin


def _fast_points(traj: Trajectories, x: np.ndarray, y: np.ndarray, threshold: float, window: int) -> np.ndarray:
    """Per point: whether the particle moves fast there - the mean squared step over the
    ``window`` steps before and the ``window`` after it is at least ``threshold`` (px^2).
    Local, so a change point the segmentation missed does not make slow points fast."""
    n = len(x)
    track = np.repeat(np.arange(traj.n_tracks), traj.lengths)
    step2 = np.full(n, np.nan)  # step2[i]: from point i to point i + 1 of the same track
    same = track[1:] == track[:-1]
    step2[:-1][same] = (np.diff(x) ** 2 + np.diff(y) ** 2)[same]
    total, count = np.zeros(n), np.zeros(n)
    index = np.arange(n)
    for k in range(-window, window):
        j = index + k
        inside = (j >= 0) & (j < n)
        value = np.full(n, np.nan)
        value[inside] = step2[j[inside]]
        good = np.isfinite(value) & inside
        good[inside] &= track[j[inside]] == track[inside]
        total[good] += value[good]
        count[good] += 1
    return (count > 0) & (total >= threshold * np.maximum(count, 1))


def _components(centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Label of each disc: discs that overlap (directly or through others) share one."""
    parent = np.arange(len(radii))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(radii)):
        d = np.hypot(*(centres[i + 1:] - centres[i]).T)
        for j in np.flatnonzero(d < radii[i + 1:] + radii[i]) + i + 1:
            parent[root(j)] = root(i)
    return np.array([root(i) for i in range(len(radii))], dtype=np.int64)


def _partnered(traj: Trajectories, first: np.ndarray, last: np.ndarray, rows: np.ndarray, segs: np.ndarray,
               distance: float, share: float) -> np.ndarray:
    """Per segment of ``segs``: whether another track stays within ``distance`` px of it for at
    least ``share`` of its frames (a dimer: two particles bound, moving together)."""
    frame = np.asarray(traj.points["frame"], np.int64)
    x, y = np.asarray(traj.points["x"], np.float64), np.asarray(traj.points["y"], np.float64)
    track = np.repeat(np.arange(traj.n_tracks), traj.lengths)
    out = np.zeros(len(segs), bool)
    for n, i in enumerate(segs):
        f0, f1 = frame[first[i]], frame[last[i] - 1]
        others = np.flatnonzero((frame >= f0) & (frame <= f1) & (track != rows[i]))
        if not len(others):
            continue
        at = first[i] + frame[others] - f0  # the segment's point at the same frame
        close = np.hypot(x[others] - x[at], y[others] - y[at]) <= distance
        counts = np.bincount(track[others][close], minlength=traj.n_tracks)
        out[n] = counts.max(initial=0) >= share * (last[i] - first[i])
    return out


def _capture_llr(particle: np.ndarray, mobile: np.ndarray, slow: np.ndarray, frames: np.ndarray,
                 escape: float) -> tuple[float, int, int]:
    """Log likelihood ratio of *slow motion catches particles* (a particle leaves it at
    ``escape`` x the rate at which fast particles enter it, as in a compartment it rarely
    finds the way out of) against *slow and fast are two states visited alike* (it leaves at
    the entry rate). Counts entries (fast -> slow) and exits (slow -> fast) between adjacent
    mobile segments of a track; returns (llr, entries, exits)."""
    same = (particle[1:] == particle[:-1]) & mobile[1:] & mobile[:-1]
    entries = int(np.count_nonzero(same & ~slow[:-1] & slow[1:]))
    exits = int(np.count_nonzero(same & slow[:-1] & ~slow[1:]))
    fast_frames = frames[mobile & ~slow].sum()
    if fast_frames == 0:
        return 0.0, entries, exits
    expected_exits = entries / fast_frames * frames[slow].sum()
    return exits * np.log(escape) + expected_exits * (1 - escape), entries, exits


def _zone_table(discs: list[tuple[float, float, float]], kind: str, segments: list[int], frames: list[int],
                inside: list[int], expected: list[float]) -> dict[str, np.ndarray]:
    return {"x": np.array([d[0] for d in discs], np.float64), "y": np.array([d[1] for d in discs], np.float64),
            "radius": np.array([d[2] for d in discs], np.float64), "kind": np.array([kind] * len(discs), object),
            "segments": np.array(segments, np.int64), "frames": np.array(frames, np.int64),
            "fast_inside": np.array(inside, np.int64), "fast_expected": np.array(expected, np.float64)}


class ZoneResult(NamedTuple):
    segments: dict[str, np.ndarray]  # states revised (alpha too where an immobile call is released)
    zones: dict[str, np.ndarray]  # ZONE_COLUMNS
    verdict: str  # one of VERDICTS
    log_odds: float  # this FOV's own evidence that its slow motion is confined


def zone_stage(traj: Trajectories, segments: Mapping[str, np.ndarray], options: ZoneOptions = ZoneOptions(),
               log_odds: float | None = None) -> ZoneResult:
    """The field-of-view stage on one FOV: ``traj`` (positions ``x``, ``y``, ``frame``) and its
    ``segments`` (columns of :data:`anomalousnet.segments.segmentation.SEGMENT_COLUMNS`, in
    track order) -> :class:`ZoneResult`. The verdict is taken on ``log_odds`` when given
    (evidence pooled over FOVs of one condition, :func:`zone_stage_by`), else on the FOV's own."""
    segments = {c: np.asarray(v) for c, v in segments.items()}
    state = segments["state"].astype(np.int8, copy=True)
    n_seg = len(state)
    if n_seg == 0:
        return ZoneResult({**segments, "state": state}, empty_zones(), "undecided", 0.0)
    row_of = {p: i for i, p in enumerate(np.asarray(traj.tracks["particle"]).tolist())}
    rows = np.array([row_of[p] for p in segments["particle"].tolist()], dtype=np.int64)
    first = traj.offsets[rows] + segments["start"]
    last = traj.offsets[rows] + segments["end"]
    frames = last - first
    K = segments["K"].astype(np.float64)
    x, y = np.asarray(traj.points["x"], np.float64), np.asarray(traj.points["y"], np.float64)
    measured = measured_points(traj.points)
    ok = (np.ones(len(x), bool) if measured is None else measured) & np.isfinite(x) & np.isfinite(y)

    mobile = np.isin(state, (CONFINED, FREE))
    k_fast = _weighted_quantile(K[mobile], frames[mobile].astype(np.float64), options.fast_quantile) \
        if mobile.any() else np.nan
    # an immobile call whose MSD clearly grows is slow motion, not a particle held in place
    moving = (state == IMMOBILE) & (K > options.immobile_ratio * k_fast)
    mobile |= moving
    slow = mobile & (frames >= options.min_frames) & ((state == CONFINED) | (K < options.slow_ratio * k_fast) | moving)
    paired = np.zeros(n_seg, bool)
    paired[slow] = _partnered(traj, first, last, rows, np.flatnonzero(slow), options.pair_distance,
                              options.pair_share)
    candidate = slow & ~paired

    # shared map: do fast particles avoid the places where others were slow?
    is_fast = _fast_points(traj, x, y, options.slow_ratio * 4 * k_fast, options.window) & ok \
        if mobile.any() else np.zeros(len(x), bool)
    for i in np.flatnonzero(slow):  # a change point may sit a frame or two off
        a, b = traj.offsets[rows[i]], traj.offsets[rows[i] + 1]
        is_fast[max(first[i] - options.edge_frames, a):min(last[i] + options.edge_frames, b)] = False
    area = max(np.ptp(x[ok]) * np.ptp(y[ok]), 1.0) if ok.any() else 1.0
    density = is_fast.sum() / area
    ids = np.flatnonzero(candidate)
    point_sets = [np.arange(first[i], last[i])[ok[first[i]:last[i]]] for i in ids]
    keep = [len(p) > 0 for p in point_sets]
    ids, point_sets = ids[keep], [p for p, k in zip(point_sets, keep) if k]
    discs = np.array([_disc(x[p], y[p], options.margin) for p in point_sets]).reshape(-1, 3)
    labels = _components(discs[:, :2], discs[:, 2]) if len(ids) else np.zeros(0, np.int64)
    zones, llrs, members = [], [], []
    fx, fy = x[is_fast], y[is_fast]
    for label in np.unique(labels):
        mine = np.flatnonzero(labels == label)
        pts = np.concatenate([point_sets[m] for m in mine])
        cx, cy, radius = _disc(x[pts], y[pts], options.margin)
        k = int(np.count_nonzero(np.hypot(fx - cx, fy - cy) <= radius))
        lam = density * np.pi * radius ** 2
        llr = -np.inf if radius > options.max_radius else k * np.log(options.leak) + lam * (1 - options.leak)
        zones.append((cx, cy, radius, k, lam))
        llrs.append(llr)
        members.append(ids[mine])
    llrs = np.array(llrs, np.float64)
    shared = max(float(llrs.sum()), 0.0) if len(llrs) else 0.0
    capture, entries, exits = _capture_llr(segments["particle"], mobile, candidate, frames, options.escape)
    # a FOV without a shared map is no evidence against confinement: compartments may be each
    # particle's own (andi-datasets draws them per particle), so only avoidance counts for it
    own = capture + shared
    total = own if log_odds is None else log_odds
    verdict = "zoned" if total > options.zoned_odds else "free" if total < -options.free_odds else "undecided"

    revised = state.copy()
    revised[moving | paired] = FREE
    confined_zones = []
    if verdict == "zoned":
        shared_map = shared > options.shared_odds
        for zone, llr, segs in zip(zones, llrs, members):
            if shared_map and llr < -options.log_odds:  # crossed by fast motion: not a place that confines
                continue
            revised[segs] = CONFINED
            confined_zones.append((zone, segs))
        crossed = np.setdiff1d(ids, np.concatenate([s for _, s in confined_zones] or [np.zeros(0, np.int64)]))
        revised[crossed] = FREE
    elif verdict == "free":
        revised[revised == CONFINED] = FREE
    else:  # undecided: the networks' confined calls stand; their places are the zones
        confined_zones = [(z, s[state[s] == CONFINED]) for z, s in zip(zones, members) if (state[s] == CONFINED).any()]

    alpha = segments["alpha"].astype(np.float32, copy=True)
    if "pred_alpha" in traj.points:  # immobile calls got alpha 0; released ones get the networks' value back
        pred_alpha = np.asarray(traj.points["pred_alpha"])
        for i in np.flatnonzero(moving):
            alpha[i] = np.median(pred_alpha[first[i]:last[i]])

    tables = [_zone_table([z[:3] for z, _ in confined_zones], "confinement", [len(s) for _, s in confined_zones],
                          [int(frames[s].sum()) for _, s in confined_zones], [z[3] for z, _ in confined_zones],
                          [z[4] for z, _ in confined_zones])]
    traps = np.flatnonzero((revised == IMMOBILE) & (frames >= options.min_frames))
    trap_points = [np.arange(first[i], last[i])[ok[first[i]:last[i]]] for i in traps]
    traps = [(i, p) for i, p in zip(traps, trap_points) if len(p)]
    tables.append(_zone_table([_disc(x[p], y[p], options.margin) for _, p in traps], "trap", [1] * len(traps),
                              [int(frames[i]) for i, _ in traps], [0] * len(traps), [0.0] * len(traps)))
    table = {c: np.concatenate([t[c] for t in tables]) for c in tables[0]}
    table = {"zone": np.arange(len(table["x"]), dtype=np.int64), **table}
    return ZoneResult({**segments, "state": revised, "alpha": alpha}, table, verdict, own)


def zone_stage_by(traj: Trajectories, segments: Mapping[str, np.ndarray], column: str | None,
                  options: ZoneOptions = ZoneOptions(), pool: str | None = None
                  ) -> tuple[dict[str, np.ndarray], dict, dict]:
    """:func:`zone_stage` on each FOV of ``traj``: the tracks sharing a value of the track
    column ``column`` (None: all tracks are one FOV). With ``pool``, a track column naming the
    condition (e.g. the AnDi experiment) each FOV belongs to, the verdict of every FOV is taken
    on the evidence summed over the FOVs of its condition (one FOV rarely holds enough
    transitions to decide). Returns the revised segments (in the input's order), and per FOV
    value its zones table and its verdict."""
    segments = {c: np.asarray(v) for c, v in segments.items()}
    fov_of_track = np.zeros(traj.n_tracks, np.int64) if column is None else np.asarray(traj.tracks[column])
    pool_of_track = fov_of_track if pool is None else np.asarray(traj.tracks[pool])
    fov_of_particle = dict(zip(np.asarray(traj.tracks["particle"]).tolist(), fov_of_track.tolist()))
    seg_fov = np.array([fov_of_particle[p] for p in segments["particle"].tolist()])
    parts = {}
    for fov in np.unique(fov_of_track):
        rows = np.flatnonzero(fov_of_track == fov)
        mine = np.flatnonzero(seg_fov == fov)
        parts[fov] = (rows, mine, traj.select(rows), {c: v[mine] for c, v in segments.items()})
    results = {fov: zone_stage(sub, segs, options) for fov, (_, _, sub, segs) in parts.items()}
    if pool is not None:
        pool_of = {fov: pool_of_track[rows[0]] for fov, (rows, *_) in parts.items()}
        pooled = {}
        for fov, result in results.items():
            pooled[pool_of[fov]] = pooled.get(pool_of[fov], 0.0) + result.log_odds
        results = {fov: zone_stage(sub, segs, options, pooled[pool_of[fov]])
                   for fov, (_, _, sub, segs) in parts.items()}
    revised = {"state": segments["state"].astype(np.int8, copy=True), "alpha": segments["alpha"].copy()}
    for fov, (_, mine, _, _) in parts.items():
        for c in revised:
            revised[c][mine] = results[fov].segments[c]
    return ({**segments, **revised}, {fov: r.zones for fov, r in results.items()},
            {fov: r.verdict for fov, r in results.items()})
