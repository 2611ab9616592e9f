"""Particle tracking of TIFF videos with trackpy (Crocker-Grier), one shard per video.

Per video (:func:`track_video`): frames are located in blocks of bounded size
(``trackpy.locate``), features are linked once (``trackpy.link``, with ``memory`` for
particles that disappear for a few frames), and the frames a particle skipped are filled
by linear interpolation and flagged (``interpolated``), so every trajectory has one
position per frame from its first frame to its last. Spot diameter, minimum mass and
search range that are not given are estimated from the video itself; the values used are
recorded in the shard's attributes. In AnDi-2 track-1 videos each VIP's trajectory is
tagged with its index (per-track column ``vip``, -1 for other particles).

For many videos (:func:`track_videos`): one Dask task per video, each writing its shard
atomically; re-running skips complete shards; the driver writes the store index.

Coordinates are trackpy's: ``x`` is the column and ``y`` the row, in pixels, pixel centres
at integers.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from anomalousnet import store as st
from anomalousnet.video import Video, VideoError

log = logging.getLogger(__name__)

STORE_KIND = "trajectories"
VIDEO_SUFFIXES = (".tif", ".tiff")


class TrackError(RuntimeError):
    """Tracking one video failed; names the video and the problem (picklable across Dask)."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):
        return type(self), (self.path, self.problem)


@dataclasses.dataclass(frozen=True)
class TrackOptions:
    """Tracking parameters; None means "estimate from each video" (values used are recorded).

    diameter: trackpy feature diameter, odd integer, px (spot size: ~4 PSF sigmas).
    minmass: minimum integrated brightness of a feature (trackpy ``mass`` units).
    search_range: largest displacement linked between frames, px.
    memory: frames a particle may vanish and still be linked; the gap is filled and flagged.
        Also bridges two particles seen as one spot while they pass each other (8 recovered
        more AnDi-2 VIPs than 3 or 5).
    separation: minimum distance between features, px; None: (diameter + 1) / 2, as spots about
        two PSF sigmas apart are still resolved (trackpy's own default, diameter + 1, drops the
        dimmer of two close particles: 7 % of detections in a crowded synthetic test).
    percentile: trackpy's peak-brightness percentile filter.
    min_length: trajectories shorter than this (frames, gaps included) are dropped.
    andi_vip: None: recognise an AnDi-2 VIP label page; True: require one; False: no label page.
    vip_max_distance: largest distance, px, between a VIP mark and the particle tagged with it.
    chunk_mb: frames are located this many MB at a time (bounds memory for huge stacks).
    pixel_size_um, frame_interval_s: recorded as provenance (positions stay in px and frames).
    """

    diameter: int | None = None
    minmass: float | None = None
    search_range: float | None = None
    memory: int = 8
    separation: float | None = None
    percentile: float = 64.0
    min_length: int = 1
    andi_vip: bool | None = None
    vip_max_distance: float = 3.0
    chunk_mb: float = 64.0
    pixel_size_um: float = float("nan")
    frame_interval_s: float = float("nan")

    def __post_init__(self):
        if self.diameter is not None and (int(self.diameter) != self.diameter or self.diameter < 3
                                          or self.diameter % 2 == 0):
            raise ValueError(f"diameter must be an odd integer >= 3 px, not {self.diameter}")
        if self.memory < 0:
            raise ValueError(f"memory must be >= 0 frames, not {self.memory}")
        if self.search_range is not None and self.search_range <= 0:
            raise ValueError(f"search_range must be > 0 px, not {self.search_range}")
        if self.min_length < 1:
            raise ValueError(f"min_length must be >= 1, not {self.min_length}")


@dataclasses.dataclass(frozen=True)
class TrackSummary:
    """What :func:`track_videos` did: shards written, shards skipped (complete), failures by input."""

    written: list[Path]
    skipped: list[Path]
    failed: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.failed


# ----------------------------------------------------------------------------- estimation

def estimate_spot_sigma(frames: np.ndarray) -> float:
    """PSF width (Gaussian sigma, px) from the profiles of bright spots in ``frames`` (n, Y, X).

    A Gaussian spot's log-intensity is a parabola of curvature -1/sigma^2 along each axis,
    wherever its centre lies between pixels. A weighted parabola fit over +-2 px (weights =
    intensity, as for log-transformed shot noise) per bright peak and axis, then the median
    curvature, is robust to noise, sub-pixel offsets and occasional crowding.
    """
    from scipy import ndimage

    offsets = np.arange(-2, 3)
    curvatures = []
    for image in frames:  # one frame at a time in float: the sample of a huge stack stays small
        image = np.asarray(image, dtype=float)
        background = np.median(image)
        noise = 1.4826 * np.median(np.abs(image - background)) or 1.0
        smooth = ndimage.uniform_filter(image, 3)
        peaks = (smooth == ndimage.maximum_filter(smooth, 7)) & (image > background + 5 * noise)
        peaks[:3], peaks[-3:], peaks[:, :3], peaks[:, -3:] = False, False, False, False
        for r, c in zip(*np.nonzero(peaks)):
            # The brightest pixel near the smoothed maximum is the spot's peak pixel.
            dr, dc = np.unravel_index(np.argmax(image[r - 1:r + 2, c - 1:c + 2]), (3, 3))
            r, c = r + dr - 1, c + dc - 1
            if not (2 <= r < image.shape[0] - 2 and 2 <= c < image.shape[1] - 2):
                continue
            for profile in (image[r - 2:r + 3, c], image[r, c - 2:c + 3]):
                values = profile - background
                keep = values > max(2 * noise, 0.05 * values[2])
                if keep.sum() < 3 or not keep[1:4].all():
                    continue
                a2 = np.polyfit(offsets[keep], np.log(values[keep]), 2, w=values[keep])[0]
                curvatures.append(2 * a2)
    curvatures = np.asarray(curvatures)
    if len(curvatures) < 3 or np.median(curvatures) >= 0:
        raise ValueError("too few bright spots to estimate the spot size; give the diameter explicitly")
    return float(np.sqrt(-1 / np.median(curvatures)))


def diameter_for_sigma(sigma: float) -> int:
    """trackpy diameter for a spot of Gaussian ``sigma``: odd, radius ~1.5 sigma, at least 5 px.

    Measured on synthetic spots: a smaller mask biases positions towards pixel centres
    for wide spots, a larger one merges neighbours (recall drops 4 % per 2 px).
    """
    return 2 * max(2, int(math.ceil(1.5 * sigma - 1e-9))) + 1


def estimate_minmass(frames: np.ndarray, diameter: int, percentile: float = 64.0, seed: int = 0,
                     factor: float = 1.2) -> float:
    """Smallest mass that noise alone does not reach: ``factor`` times the largest feature mass
    trackpy finds in pure-noise images with the background level and noise of ``frames``.

    The noise is measured robustly (median absolute deviation) on the frames themselves, so
    the threshold follows each video's signal-to-noise ratio without assuming how many
    particles there are.
    """
    import trackpy as tp

    frames = np.asarray(frames)
    dtype = frames.dtype
    rng = np.random.default_rng(seed)
    # Per frame, in float one frame at a time (a float copy of a huge sample would cost GBs).
    stats = []
    for image in frames:
        image = np.asarray(image, dtype=float)
        level = float(np.median(image))
        stats.append((level, 1.4826 * float(np.median(np.abs(image - level))), float(image.std())))
    background, noise, spread = (float(np.median(column)) for column in zip(*stats))
    if noise == 0:
        noise = spread or 1.0
    shape = tuple(min(s, 256) for s in frames.shape[1:])
    n = min(48, max(4, int(math.ceil(frames.size / np.prod(shape)))))  # about as many pixels as the sample
    masses = []
    for _ in range(n):
        image = background + rng.normal(0, noise, shape)
        if dtype.kind in "iu":  # same dtype as the video: trackpy's default threshold depends on it
            info = np.iinfo(dtype)
            image = np.clip(np.round(image), info.min, info.max).astype(dtype)
        found = tp.locate(image, diameter, minmass=0, percentile=percentile, characterize=False)
        masses.extend(found["mass"].tolist())
    return factor * float(max(masses)) if masses else 0.0


def estimate_search_range(features, diameter: int, floor: float = 2.0, ceiling: float = 20.0,
                          quantile: float = 99.0, factor: float = 1.8) -> float:
    """Largest displacement to link between frames, px, from features in consecutive frames.

    Steps are taken between mutual nearest neighbours of consecutive frames (a feature whose
    particle vanished, or blinked, has a nearest neighbour that prefers another feature, so
    it is left out). ``factor`` times the ``quantile`` of those distances leaves room for the
    heavy tails of super-diffusive and directed motion and for slow/fast mixtures, where a
    median would fit the slow majority only. Bounded by ``floor``, half the median distance
    between neighbouring particles (beyond it links become ambiguous) and ``ceiling``.
    On AnDi-2 videos (6 FOVs, 5 models) 1.8 x the 99th percentile recovered the most VIPs.
    """
    from scipy.spatial import cKDTree

    steps, spacing = [], []
    by_frame = {f: g[["x", "y"]].to_numpy() for f, g in features.groupby("frame")}
    for f, here in by_frame.items():
        there = by_frame.get(f + 1)
        if there is None or len(here) < 2 or len(there) < 1:
            continue
        spacing.extend(cKDTree(here).query(here, k=2)[0][:, 1])
        forward, k = cKDTree(there).query(here)
        back = cKDTree(here).query(there)[1]
        steps.extend(forward[back[k] == np.arange(len(here))])
    if not steps:
        return max(floor, float(diameter))
    upper = max(floor, min(0.5 * float(np.median(spacing)), ceiling))
    steps = np.asarray(steps)
    steps = steps[steps < upper]
    if len(steps) == 0:
        return upper
    return float(np.clip(factor * np.percentile(steps, quantile), floor, upper))


# ----------------------------------------------------------------------------- one video

def locate(video: Video, diameter: int, minmass: float, options: TrackOptions, frames: Iterable[int] | None = None,
           progress: bool = False):
    """trackpy features of ``video`` (all frames, or the given frame indices), block by block."""
    import pandas as pd
    import trackpy as tp
    from tqdm import tqdm

    separation = options.separation if options.separation is not None else (diameter + 1) / 2
    kwargs = dict(minmass=minmass, separation=separation, percentile=options.percentile)
    parts = []
    if frames is None:
        blocks = video.chunks(int(options.chunk_mb * (1 << 20)))
    else:
        blocks = ((int(t), video.frames(int(t), int(t) + 1)) for t in frames)
    with tqdm(total=video.n_frames if frames is None else None, desc=video.path.name, unit="frame",
              disable=not progress) as bar:
        for start, block in blocks:
            for k, image in enumerate(block):
                found = tp.locate(np.asarray(image), diameter, **kwargs)
                found["frame"] = start + k
                parts.append(found)
                bar.update()
    columns = ["y", "x", "mass", "size", "ecc", "signal", "raw_mass", "ep", "frame"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def fill_gaps(tracks, merge_radius: float = 0.0, merge_mass_ratio: float = 1.4):
    """One row per frame for every particle; frames it skipped are filled and flagged.

    ``tracks`` is trackpy's linked table (particle, frame, x, y, mass, ...); the result has
    particle, frame, x, y, mass (NaN where filled) and ``interpolated`` (bool, True where
    filled). A skipped frame gets the linear interpolation between the particle's detections,
    except where two particles came closer than the PSF and were seen as one spot: when a
    spot at least ``merge_mass_ratio`` times as bright as the frame's median lies within
    ``merge_radius`` px of the interpolated position, the particle was inside it and takes
    its position (0 disables this).
    """
    import pandas as pd
    from scipy.spatial import cKDTree

    tracks = tracks.sort_values(["particle", "frame"], kind="stable")
    pieces = []
    for particle, g in tracks.groupby("particle", sort=True):
        frames = g["frame"].to_numpy(np.int64)
        full = np.arange(frames[0], frames[-1] + 1, dtype=np.int64)
        observed = np.isin(full, frames)
        piece = {"particle": np.full(len(full), particle, np.int64), "frame": full}
        for col in ("x", "y"):
            piece[col] = np.interp(full, frames, g[col].to_numpy(float))
        mass = np.full(len(full), np.nan)
        mass[observed] = g["mass"].to_numpy(float)
        piece["mass"] = mass
        piece["interpolated"] = ~observed
        pieces.append(pd.DataFrame(piece))
    if not pieces:
        return pd.DataFrame({"particle": np.zeros(0, np.int64), "frame": np.zeros(0, np.int64), "x": np.zeros(0),
                             "y": np.zeros(0), "mass": np.zeros(0), "interpolated": np.zeros(0, bool)})
    filled = pd.concat(pieces, ignore_index=True)
    if merge_radius > 0 and filled["interpolated"].any():
        gaps = filled.index[filled["interpolated"]]
        spots = tracks.groupby("frame")
        for frame, rows in filled.loc[gaps].groupby("frame"):
            here = spots.get_group(frame) if frame in spots.groups else None
            if here is None:
                continue
            bright = here[here["mass"] >= merge_mass_ratio * here["mass"].median()]
            if bright.empty:
                continue
            d, k = cKDTree(bright[["x", "y"]].to_numpy()).query(rows[["x", "y"]].to_numpy())
            inside = d <= merge_radius
            filled.loc[rows.index[inside], ["x", "y"]] = bright[["x", "y"]].to_numpy()[k[inside]]
    return filled


def tag_vips(tracks, marks: dict[int, tuple[float, float]], max_distance: float, late_distance: float = 0.0,
             late_frames: int = 10) -> tuple[dict[int, int], list[int]]:
    """Particle id for each VIP mark (marks are positions in the first movie frame, frame 0).

    First pass: trajectories present in frame 0 within ``max_distance`` px of a mark, nearest
    pairs first, one VIP per trajectory. Second pass, for VIPs still untagged (two VIPs can
    start inside one unresolved spot, AnDi only keeps them ~2 px apart): trajectories that
    start within ``late_frames`` frames and within ``max_distance + late_distance`` px of the
    mark, earliest first. Returns ``({vip: particle}, [vip indices left untagged])``.
    """
    first = tracks.sort_values("frame", kind="stable").groupby("particle")[["frame", "x", "y"]].first()
    tagged: dict[int, int] = {}
    used: set[int] = set()
    for late in (False, True):
        pool = first[(first["frame"] > 0) & (first["frame"] <= late_frames)] if late else first[first["frame"] == 0]
        limit = max_distance + (late_distance if late else 0.0)
        candidates = []
        for vip, (mx, my) in marks.items():
            if vip in tagged:
                continue
            d = np.hypot(pool["x"].to_numpy() - mx, pool["y"].to_numpy() - my)
            for particle, start, dist in zip(pool.index, pool["frame"].to_numpy(), d):
                if dist <= limit:
                    candidates.append((int(start), dist, vip, int(particle)))
        for _, _, vip, particle in sorted(candidates):
            if vip not in tagged and particle not in used:
                tagged[vip] = particle
                used.add(particle)
    return tagged, sorted(set(marks) - set(tagged))


def track_video(path: os.PathLike | str, shard_path: os.PathLike | str, options: TrackOptions = TrackOptions(),
                command: str = "track", progress: bool = False) -> Path:
    """Track one video and write its trajectories to ``shard_path`` (atomically); ``progress``
    shows a bar over its frames (for a long video tracked in this process).

    Raises :class:`~anomalousnet.video.VideoError` (naming the file) for an unusable file or
    when the spot size cannot be estimated (no bright spots: give ``diameter``).
    """
    import trackpy as tp

    tp.quiet()
    path = Path(path)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with Video(path, andi_vip=options.andi_vip) as video:
        estimated = []
        sample_idx = video.sample_indices(12)
        sample = np.stack([video.frames(t, t + 1)[0] for t in sample_idx])
        diameter = options.diameter
        if diameter is None:
            try:
                diameter = diameter_for_sigma(estimate_spot_sigma(sample))
            except ValueError as exc:
                raise VideoError(path, str(exc)) from None
            estimated.append("diameter")
        minmass = options.minmass
        if minmass is None:
            minmass = estimate_minmass(sample, diameter, options.percentile)
            estimated.append("minmass")
        features = locate(video, diameter, minmass, options, progress=progress)
        search_range = options.search_range
        if search_range is None:
            search_range = estimate_search_range(features[features["frame"] < 200], diameter)
            estimated.append("search_range")
        n_frames, marks, has_labels = video.n_frames, video.vip_marks, video.vip_labels is not None
    log.info("%s: %d features in %d frames (diameter %d, minmass %.4g, search range %.3g)", path, len(features),
             n_frames, diameter, minmass, search_range)
    if len(features):
        linked = tp.link(features, search_range, memory=options.memory,
                         adaptive_stop=max(0.5, 0.2 * search_range), adaptive_step=0.9)
        tracks = fill_gaps(linked, merge_radius=diameter)
    else:
        tracks = fill_gaps(features.assign(particle=np.zeros(0, np.int64)))
    lengths = tracks.groupby("particle")["frame"].transform("size")
    tracks = tracks[lengths >= options.min_length]
    tagged, untagged = tag_vips(tracks, marks, options.vip_max_distance, search_range) if marks else ({}, [])
    if untagged:
        log.warning("%s: no trajectory near VIP mark(s) %s in the first frame; they are not tagged", path, untagged)
    vip_of = {particle: vip for vip, particle in tagged.items()}
    tracks = tracks.assign(vip=tracks["particle"].map(vip_of).fillna(-1).astype(np.int64))
    traj = st.Trajectories.from_dataframe(tracks, track_columns=("vip",))
    used = {"diameter": int(diameter), "minmass": float(minmass), "search_range": float(search_range)}
    parameters = {**dataclasses.asdict(options), **used, "estimated": estimated}
    attrs = st.provenance(command, parameters, source_path=str(path.resolve()), source_sha256=st.sha256_of(path),
                          pixel_size_um=options.pixel_size_um, frame_interval_s=options.frame_interval_s)
    attrs.update({**{f"track_{k}": v for k, v in used.items()}, "track_estimated": json.dumps(estimated),
                  "n_frames": int(n_frames), "andi_vip_labels": bool(has_labels),
                  "vip_marks": json.dumps(sorted(marks)), "vip_untagged": json.dumps(untagged),
                  # Elapsed and CPU time of this video (CPU < elapsed: the core was shared).
                  "track_seconds": time.perf_counter() - wall0, "track_cpu_seconds": time.process_time() - cpu0})
    if traj.n_tracks == 0:
        log.warning("%s: no trajectories found (minmass %.4g too high, or no particles?)", path, minmass)
    return st.write_shard(shard_path, traj, kind=STORE_KIND, attrs=attrs)


# ----------------------------------------------------------------------------- many videos

def expand_inputs(inputs: Iterable[str]) -> tuple[list[Path], dict[str, str]]:
    """Video paths from paths, directories (their *.tif, *.tiff) and glob patterns, in order,
    without duplicates; ``{input: problem}`` for inputs that name nothing."""
    found, failed, seen = [], {}, set()
    for item in inputs:
        if glob.has_magic(item):
            paths = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if not paths:
                failed[item] = "no file matches this pattern"
        elif Path(item).is_dir():
            paths = sorted(p for p in Path(item).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not paths:
                failed[item] = "directory holds no .tif/.tiff file"
        elif Path(item).exists():
            paths = [Path(item)]
        else:
            failed[item] = "no such file"
            paths = []
        for p in paths:
            key = p.resolve()
            if key not in seen and not p.is_dir():
                seen.add(key)
                found.append(p)
    return found, failed


def shard_name(video: os.PathLike | str) -> str:
    """Stable, unique shard file name for a video: parent and stem (readable) + hash of the full path.

    AnDi layouts repeat names in several folders (exp_0/videos_fov_0.tiff, exp_1/...), so the
    parent folder is part of the name and the hash keeps any two paths apart.
    """
    path = Path(video).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{path.parent.name}_{path.stem}").lstrip("._") or "video"
    return f"{readable}-{digest}{st.SHARD_SUFFIX}"


def _track_task(item: tuple[str, str], options: TrackOptions) -> str | TrackError:
    """Dask task: track one video. A failure is returned (not raised) as a picklable
    TrackError, so an expected bad input does not fill the worker logs with tracebacks."""
    video, shard = item
    try:
        return str(track_video(video, shard, options))
    except (VideoError, st.StoreError) as exc:
        return TrackError(video, exc.problem)
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
        log.exception("%s: unexpected error while tracking", video)
        return TrackError(video, f"{type(exc).__name__}: {exc}")


def track_videos(inputs: list[str], store_dir: os.PathLike | str, options: TrackOptions = TrackOptions(),
                 workers: int | None = None, scheduler_file: str | None = None, progress: bool = True
                 ) -> TrackSummary:
    """Track every video named by ``inputs`` (paths, directories or glob patterns) into a
    trajectory store, one shard per video, one Dask task per video.

    Complete shards of an earlier run are skipped (resume); a failing video is reported in
    ``failed`` while the others go on. The index is (re)written at the end from the shards
    on disk.
    """
    from anomalousnet.parallel import dask_client, map_as_completed

    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    videos, failed = expand_inputs(inputs)
    todo, skipped = [], []
    for video in videos:
        shard = store_dir / shard_name(video)
        if st.needs_writing(shard):
            todo.append((str(video), str(shard)))
        else:
            skipped.append(shard)
    if skipped:
        log.info("%d video(s) already tracked (complete shards kept)", len(skipped))
    written = []
    if todo:
        n_workers = workers or min(len(todo), len(os.sched_getaffinity(0)))
        with dask_client(n_workers, scheduler_file) as client:
            for (video, _), result in map_as_completed(client, _track_task, todo, desc="track", progress=progress,
                                                       options=options):
                if isinstance(result, BaseException):  # TrackError returned, or a lost worker
                    failed[video] = result.problem if isinstance(result, TrackError) else \
                        f"{type(result).__name__}: {result}"
                    log.info("%s: failed: %s", video, failed[video])  # the summary names it
                else:
                    written.append(Path(result))
    st.write_index(store_dir, STORE_KIND, attrs=st.provenance(
        "track", {**dataclasses.asdict(options), "inputs": list(inputs)},
        pixel_size_um=options.pixel_size_um, frame_interval_s=options.frame_interval_s))
    return TrackSummary(sorted(written), sorted(skipped), failed)


# ----------------------------------------------------------------------------- accuracy

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


def vip_recovery(traj: st.Trajectories, truth, vips, tol: float = 1.5, min_coverage: float = 0.9
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
