"""The field-of-view stage: deciding confined against slow free motion from a whole FOV,
and the zones where particles are confined.

From one trajectory a particle confined in a compartment looks like a slowly diffusing free
one. A field of view tells them apart in two ways:

* **Capture.** A compartment catches the particles that reach it and rarely lets them go (a
  particle leaves only through its boundary, which mostly reflects it): in the FOV, fast
  motion turns slow far more often than slow turns fast. A second diffusive state, or a
  dimer, is left as often as it is entered. This holds whether compartments are shared by all
  particles or are each particle's own (andi-datasets draws them per particle).
* **A shared map.** Where compartments are shared, a fast particle that reaches one is caught,
  so fast motion never crosses the places where other particles were slow; it crosses the
  places of slow free motion as often as any other.

The stage, per FOV:

1. **Slow segments**: called confined, called free with K below ``slow_ratio`` x the FOV's
   fast K (the frame-weighted ``fast_quantile`` of the mobile segments' K), or called
   immobile with a clearly growing MSD (K above ``immobile_ratio`` x fast K: slow motion, not
   a particle held in place); at least ``min_frames`` long. A slow segment with a partner
   (another track within ``pair_distance`` px for ``pair_share`` of its frames) is a dimer:
   free.
2. **Zones**: the other slow segments whose discs (centroid, 95th-percentile radius +
   ``margin``) overlap are joined; a zone is the disc around all their points.
3. **Crossing evidence** per zone: the fast points (local motion over ``window`` steps each
   side, except within ``edge_frames`` of a slow segment of the same track) in the zone's core
   (the ``core_percentile`` radius of its points), ``k``, against the number the density of
   fast points around it (a ring out to ``ring`` radii) predicts, ``lam``. A compartment lets
   in ``leak`` x ``lam``; a place without one ``lam``: log likelihood ratio
   ``k ln(leak) + lam (1 - leak)`` (minus infinity wider than ``max_radius``).
4. **Capture evidence** of the FOV: entries (fast -> slow) and exits (slow -> fast) of the slow
   segments, which alternate within a track. Two states visited alike make a transition an
   exit with probability 1/2; a capture (exits at ``escape`` x the rate of entries) with
   ``escape / (1 + escape)``: the log likelihood ratio of the two.
5. **Verdict.** A FOV with a shared map (at least two zones above ``zone_odds``, together above
   ``shared_odds``) is *zoned*, and its zones above ``log_odds`` are its compartments. Otherwise
   the evidence (capture + the convincing zones; pooled over the FOVs of one condition by
   :func:`zone_stage_by`) above ``zoned_odds`` makes it *zoned* with every zone a compartment,
   below ``-free_odds`` *free* (no compartments), in between *undecided*.
6. **States.** Zoned: the slow segments of compartments are confined, every other confined
   call free. Free: every confined call is free. Undecided: the networks' calls stand. Dimers
   and moving "immobile" calls are free (alpha back to the networks' value) in every case.
   Directed and truly immobile segments, K and change points are not changed.

The zones table lists the compartments (kind ``confinement``) and the places of immobile
segments (kind ``trap``). :func:`zone_stage` runs the stage on one FOV, :func:`segments_with_zones` segments a FOV and
runs it, :func:`zone_stage_by` runs it on the FOVs of a table.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple

import numpy as np

from anomalousnet.core.names import CONFINED, DIRECTED, FREE, IMMOBILE
from anomalousnet.core.trajectories import Trajectories, measured_points

ZONE_COLUMNS = ("zone", "x", "y", "radius", "kind", "segments", "frames", "fast_inside", "fast_expected")
ZONE_KINDS = ("confinement", "trap")
VERDICTS = ("zoned", "free", "undecided")


@dataclasses.dataclass(frozen=True)
class ZoneOptions:
    """Settings of the field-of-view stage (the module docstring says how each is used).

    Slow segments: slow_ratio, fast_quantile, immobile_ratio, min_frames (frames). Dimers:
    pair_distance (px), pair_share. Zones: margin (px, added to the 95th-percentile radius
    for localisation noise and the unexplored rim), max_radius (px). Crossing evidence:
    window (steps each side of a point that say whether it is fast), edge_frames (fast points
    this close to a slow segment of their own track are not counted: a change point may sit
    off, and a particle hovers around its own compartment), core_percentile, ring (radii),
    leak, log_odds, zone_odds, shared_odds. Capture evidence and verdict: escape, zoned_odds,
    free_odds. The defaults were chosen on simulated AnDi-2 data of tuning seeds
    (``benchmarks/TUNING.md``).
    """

    slow_ratio: float = 0.3
    fast_quantile: float = 0.9
    immobile_ratio: float = 0.01
    min_frames: int = 10
    pair_distance: float = 1.5
    pair_share: float = 0.8
    margin: float = 0.5
    max_radius: float = 20.0
    window: int = 2
    edge_frames: int = 15
    core_percentile: float = 80.0
    ring: float = 3.0
    leak: float = 0.05
    log_odds: float = 3.0
    zone_odds: float = 6.0
    shared_odds: float = 10.0
    escape: float = 0.15
    zoned_odds: float = 1.0
    free_odds: float = 3.0

    def __post_init__(self):
        if not 0 < self.slow_ratio < 1 or not 0 < self.fast_quantile <= 1 or not 0 < self.leak < 1:
            raise ValueError(f"slow_ratio, fast_quantile and leak must be in (0, 1), got {self.slow_ratio}, "
                             f"{self.fast_quantile}, {self.leak}")
        if not 0 < self.escape < 1 or not 0 < self.pair_share <= 1 or not 0 < self.core_percentile <= 100:
            raise ValueError(f"escape and pair_share must be in (0, 1], core_percentile in (0, 100], got "
                             f"{self.escape}, {self.pair_share}, {self.core_percentile}")
        if self.min_frames < 2 or self.window < 1 or self.ring <= 1 or min(self.margin, self.edge_frames) < 0 or \
                min(self.log_odds, self.zone_odds, self.shared_odds, self.zoned_odds, self.free_odds,
                    self.max_radius, self.pair_distance, self.immobile_ratio) <= 0:
            raise ValueError("min_frames must be >= 2, window >= 1, ring > 1; margin and edge_frames >= 0; the odds, "
                             "max_radius, pair_distance and immobile_ratio > 0")


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


def _capture_llr(particle: np.ndarray, moving: np.ndarray, slow: np.ndarray, escape: float) -> float:
    """Log likelihood ratio of *slow motion catches particles* against *slow and fast motion
    are two states visited alike*, from the transitions between adjacent moving (not immobile)
    segments of a track: entries (fast -> slow) and exits (slow -> fast). Within a track they
    alternate, so for two states visited alike an exit is as likely as an entry; where slow
    motion catches particles (a compartment they rarely find the way out of: exits at
    ``escape`` x the rate of entries), a transition is an exit with probability
    ``escape / (1 + escape)``."""
    same = (particle[1:] == particle[:-1]) & moving[1:] & moving[:-1]
    entries = int(np.count_nonzero(same & ~slow[:-1] & slow[1:]))
    exits = int(np.count_nonzero(same & slow[:-1] & ~slow[1:]))
    return float(entries * np.log(2 / (1 + escape)) + exits * np.log(2 * escape / (1 + escape)))


def _zones_and_crossings(x: np.ndarray, y: np.ndarray, is_fast: np.ndarray, ids: np.ndarray,
                         point_sets: list[np.ndarray], options: ZoneOptions):
    """The zones of the slow segments ``ids`` (points ``point_sets``): segments whose discs
    overlap are joined. Returns per zone (x, y, radius, fast points in its core, fast points
    expected there), its crossing log likelihood ratio and its segments."""
    discs = np.array([_disc(x[p], y[p], options.margin) for p in point_sets]).reshape(-1, 3)
    labels = _components(discs[:, :2], discs[:, 2]) if len(ids) else np.zeros(0, np.int64)
    zones, llrs, members = [], [], []
    fx, fy = x[is_fast], y[is_fast]
    for label in np.unique(labels):
        mine = np.flatnonzero(labels == label)
        pts = np.concatenate([point_sets[m] for m in mine])
        cx, cy, radius = _disc(x[pts], y[pts], options.margin)
        # evidence from the zone's core, where the slow points lie thickly: fast motion passing
        # along the rim of a compartment is no evidence against it
        core = float(np.percentile(np.hypot(x[pts] - cx, y[pts] - cy), options.core_percentile))
        d = np.hypot(fx - cx, fy - cy)
        k = int(np.count_nonzero(d <= core))
        # the fast motion expected there: the density around the zone (a ring out to
        # ``ring`` radii), so an edge of the cell or of the field counts as the emptier place it is
        outer = options.ring * radius + 1.0
        around = np.count_nonzero((d > radius) & (d <= outer)) / (np.pi * (outer ** 2 - radius ** 2))
        lam = around * np.pi * core ** 2
        llr = -np.inf if radius > options.max_radius else k * np.log(options.leak) + lam * (1 - options.leak)
        zones.append((cx, cy, radius, k, lam))
        llrs.append(llr)
        members.append(ids[mine])
    return zones, np.array(llrs, np.float64), members


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

    # crossing evidence: do fast particles avoid the places where others were slow?
    is_fast = _fast_points(traj, x, y, options.slow_ratio * 4 * k_fast, options.window) & ok \
        if mobile.any() else np.zeros(len(x), bool)
    for i in np.flatnonzero(slow):  # a change point may sit a frame or two off
        a, b = traj.offsets[rows[i]], traj.offsets[rows[i] + 1]
        is_fast[max(first[i] - options.edge_frames, a):min(last[i] + options.edge_frames, b)] = False
    ids = np.flatnonzero(candidate)
    point_sets = [np.arange(first[i], last[i])[ok[first[i]:last[i]]] for i in ids]
    keep = [len(p) > 0 for p in point_sets]
    ids, point_sets = ids[keep], [p for p, k in zip(point_sets, keep) if k]
    zones, llrs, members = _zones_and_crossings(x, y, is_fast, ids, point_sets, options)
    # a shared map shows as places (two at least) each convincingly avoided by fast motion
    shared = float(llrs[llrs > options.zone_odds].sum())
    # directed motion is fast motion too: leaving slow motion for it is an exit
    capture = _capture_llr(segments["particle"], mobile | (state == DIRECTED), candidate, options.escape)
    # crossed zones are no evidence against confinement (compartments may be each particle's
    # own, as andi-datasets draws them): only avoided ones count, for it
    own = capture + shared
    shared_map = shared > options.shared_odds and np.count_nonzero(llrs > options.zone_odds) >= 2
    total = own if log_odds is None else log_odds
    if shared_map:  # the FOV shows a shared map: each place is judged by its own evidence
        verdict = "zoned"
    else:
        verdict = "zoned" if total > options.zoned_odds else "free" if total < -options.free_odds else "undecided"

    revised = state.copy()
    revised[moving | paired] = FREE
    if verdict == "zoned":
        confined_zones = [(zone, segs) for zone, llr, segs in zip(zones, llrs, members)
                          if not shared_map or llr > options.log_odds]  # on a shared map, only its places confine
        inside = np.concatenate([s for _, s in confined_zones] or [np.zeros(0, np.int64)])
        revised[inside] = CONFINED
        revised[(revised == CONFINED) & ~np.isin(np.arange(n_seg), inside)] = FREE
    elif verdict == "free":
        confined_zones = []
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


def segments_with_zones(predicted: Trajectories, options, zones: ZoneOptions | None = ZoneOptions(), client=None,
                        bundle=None, batch_size: int = 1024) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One FOV's trajectories (with predictions) -> (segments, zones table): change points and
    segments (:func:`anomalousnet.segments.segmentation.segment_trajectories` with
    SegmentOptions ``options``; with the model ``bundle`` that predicted them, the alpha of
    the segments of tracks with change points from the network run on each segment alone,
    :func:`anomalousnet.segments.crops.crop_alpha`), then the field-of-view stage (``zones=None``: none), then
    brief episodes of the FOV's other K level (:mod:`anomalousnet.segments.episodes`), then
    the segment values pooled over the FOV (``options.pool_values``;
    :mod:`anomalousnet.segments.pooling`; tracks flagged ``fallback`` left out)."""
    from anomalousnet.segments.episodes import add_episodes_by
    from anomalousnet.segments.pooling import pool_by
    from anomalousnet.segments.segmentation import segment_trajectories

    segments = segment_trajectories(predicted, options, client=client, progress=False)
    if bundle is not None:
        from anomalousnet.segments.crops import crop_alpha

        segments = crop_alpha(bundle, predicted, segments, options, batch_size)
    table = empty_zones()
    if zones is not None:
        result = zone_stage(predicted, segments, zones)
        segments, table = result.segments, result.zones
    segments = add_episodes_by(predicted, segments, options)
    if options.pool_values:
        segments = pool_by(predicted, segments, options)
    return segments, table
