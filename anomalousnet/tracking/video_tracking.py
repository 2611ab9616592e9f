"""Tracking one video with trackpy (Crocker-Grier): locate, link, fill gaps, tag VIPs.

:func:`track_dataframe` returns the trajectories of one video as a trackpy-style table;
:func:`track_video` writes them as one store shard. Frames are located in blocks of bounded
size (``trackpy.locate``), features are linked once (``trackpy.link``, with ``memory`` for
particles that disappear for a few frames), and the frames a particle skipped are filled by
linear interpolation and flagged (``interpolated``), so every trajectory has one position
per frame from its first frame to its last. Spot diameter, minimum mass and search range
that are not given are estimated from the video itself (:mod:`anomalousnet.tracking.estimate`);
the values used are recorded. In AnDi-2 track-1 videos each VIP's trajectory is tagged with
its index (per-track column ``vip``, -1 for other particles).

Coordinates are trackpy's: ``x`` is the column and ``y`` the row, in pixels, pixel centres
at integers.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from anomalousnet.core.trajectories import Trajectories, fill_frame_gaps
from anomalousnet.io import store as st
from anomalousnet.io.video import Video, VideoError
from anomalousnet.tracking import linking, localisation
from anomalousnet.tracking.estimate import (diameter_for_sigma, estimate_minmass, estimate_search_range,
                                            estimate_spot_sigma)

log = logging.getLogger(__name__)

STORE_KIND = "trajectories"
REFINERS = ("auto", "gaussian", "bilinear", "none")
LINKERS = ("lap", "trackpy")


@dataclasses.dataclass(frozen=True)
class TrackOptions:
    """Tracking parameters; None means "estimate from each video" (values used are recorded).

    diameter: trackpy feature diameter, odd integer, px (spot size: ~4 PSF sigmas).
    minmass: minimum integrated brightness of a feature (trackpy ``mass`` units).
    search_range: largest displacement linked between frames, px.
    memory: frames a particle may vanish and still be linked; the gap is filled and flagged.
        Also bridges two particles seen as one spot while they pass each other (8 recovered
        more AnDi-2 VIPs than 3 or 5).
    separation: minimum distance between features, px; None: 3 PSF sigmas (:func:`default_separation`),
        as two spots that far apart still show two peaks. trackpy's own default, diameter + 1,
        drops the dimmer of two close particles (7 % of detections in a crowded synthetic test);
        (diameter + 1) / 2, used before, still lost one of two particles 2.5-4 px apart for a
        frame, the commonest start of identity swaps on AnDi-2 videos (VIPs followed 72 -> 78 %).
    percentile: trackpy's peak-brightness percentile filter.
    min_length: trajectories shorter than this (frames, gaps included) are dropped.
    andi_vip: None: recognise an AnDi-2 VIP label page; True: require one; False: no label page.
    vip_max_distance: largest distance, px, between a VIP mark and the particle tagged with it.
    chunk_mb: frames are located this many MB at a time (bounds memory for huge stacks).
    pixel_size_um, frame_interval_s: recorded as provenance (positions stay in px and frames).
    refine: "gaussian": centroids refined by a least-squares fit of a Gaussian spot of the
        video's PSF sigma (:mod:`anomalousnet.tracking.localisation`; removes most pixel
        locking, gives each localisation a precision); "bilinear": the same with the spot model
        of deeptrack (the AnDi-2 video generator: a point split bilinearly over 4 pixels, then
        blurred); "auto": whichever of the two fits the video's isolated spots better (recorded
        as ``spot_model``); "none": trackpy's centroids.
    linker: "lap": global assignment with per-particle motion models and gap closing
        (:mod:`anomalousnet.tracking.linking`); "trackpy": ``trackpy.link`` (distance only,
        adaptive search).
    split_merged: with a spot fit, spots at least 1.15 x the frame's median mass that two spots
        fit much better than one are replaced by the two (particles passing within the PSF;
        :func:`anomalousnet.tracking.localisation.split_merged`).
    ambiguity: "lap": two links whose swap costs less than this more (negative log-likelihood)
        end both tracks (split rather than swap); 0: off.
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
    refine: str = "auto"
    linker: str = "lap"
    ambiguity: float = 0.0
    split_merged: bool = True

    def __post_init__(self):
        if self.refine not in REFINERS:
            raise ValueError(f"refine must be one of {REFINERS}, not {self.refine!r}")
        if self.linker not in LINKERS:
            raise ValueError(f"linker must be one of {LINKERS}, not {self.linker!r}")
        if self.diameter is not None and (int(self.diameter) != self.diameter or self.diameter < 3
                                          or self.diameter % 2 == 0):
            raise ValueError(f"diameter must be an odd integer >= 3 px, not {self.diameter}")
        if self.memory < 0:
            raise ValueError(f"memory must be >= 0 frames, not {self.memory}")
        if self.separation is not None and self.separation <= 0:
            raise ValueError(f"separation must be > 0 px, not {self.separation}")
        if self.search_range is not None and self.search_range <= 0:
            raise ValueError(f"search_range must be > 0 px, not {self.search_range}")
        if self.min_length < 1:
            raise ValueError(f"min_length must be >= 1, not {self.min_length}")


def default_separation(diameter: int, spot_sigma: float | None) -> float:
    """Smallest distance (px) kept between two features: 3 PSF sigmas (the spots still show two
    peaks), or (diameter + 1) / 2 when the spot sigma is unknown; at least 1.5 px."""
    if spot_sigma is not None and np.isfinite(spot_sigma) and spot_sigma > 0:
        return max(1.5, round(3 * float(spot_sigma), 2))
    return (diameter + 1) / 2


def locate(video: Video, diameter: int, minmass: float, options: TrackOptions, frames: Iterable[int] | None = None,
           progress: bool = False, spot_sigma: float | None = None):
    """trackpy features of ``video`` (all frames, or the given frame indices), block by block.
    With ``spot_sigma`` (px) and ``options.refine`` a spot model, positions are refined by
    :func:`anomalousnet.tracking.localisation.refine_frame` and get a ``precision`` column
    (px per axis)."""
    import pandas as pd
    from tqdm import tqdm

    separation = options.separation if options.separation is not None else default_separation(diameter, spot_sigma)
    parts = []
    fit = spot_sigma is not None and options.refine != "none"
    if fit:
        refine_args = localisation.model_sigma(spot_sigma, options.refine), None, 1, options.refine
    if frames is None:
        blocks = video.chunks(int(options.chunk_mb * (1 << 20)))
    else:
        blocks = ((int(t), video.frames(int(t), int(t) + 1)) for t in frames)
    with tqdm(total=video.n_frames if frames is None else None, desc=video.path.name, unit="frame",
              disable=not progress) as bar:
        for start, block in blocks:
            block = np.asarray(block)
            # detection works in float64 (several copies): at most about 4 M pixels per call
            step = max(1, (4 << 20) // int(np.prod(block.shape[1:])))
            rows = [r for a in range(0, len(block), step)
                    for r in localisation.locate_frames(block[a:a + step], diameter, minmass, separation,
                                                        options.percentile)]
            bar.update(len(block))
            found = pd.DataFrame(np.concatenate(rows), columns=["y", "x", "mass"])
            found["frame"] = np.repeat(np.arange(start, start + len(block), dtype=np.int64), [len(r) for r in rows])
            if fit and len(found):  # every spot of the block in one vectorised fit: per frame, call overhead dominated
                index = found["frame"].to_numpy() - start
                found = localisation.refine_frame(found, block, *refine_args, frames=index)
                if options.split_merged:
                    found = localisation.split_merged(found, block, refine_args[0], model=options.refine,
                                                      frames=index)
            parts.append(found)
    columns = ["y", "x", "mass", "frame"] + (["precision"] if fit else [])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def fill_gaps(tracks, merge_radius: float = 0.0, merge_mass_ratio: float = 1.4):
    """One row per frame for every particle; frames it skipped are filled and flagged.

    ``tracks`` is trackpy's linked table (particle, frame, x, y, mass, ...); the result has
    particle, frame, x, y, mass (NaN where filled; ``precision`` too when given), ``interpolated`` (bool, True where
    filled) and ``merged`` (bool, True where filled from a merged spot). A skipped frame gets the
    linear interpolation between the particle's detections, except where two particles came
    closer than the PSF and were seen as one spot: when a spot at least ``merge_mass_ratio``
    times as bright as the frame's median lies within ``merge_radius`` px of the interpolated
    position, the particle was inside it and takes its position (0 disables this): a measured
    position, to within the spot's size, unlike an interpolated one.
    """
    from scipy.spatial import cKDTree

    tracks = tracks.sort_values(["particle", "frame"], kind="stable")
    columns = ["particle", "frame", "x", "y", "mass"] + (["precision"] if "precision" in tracks else [])
    filled = fill_frame_gaps(tracks[columns].astype({"mass": float}))
    filled["merged"] = np.zeros(len(filled), bool)
    if merge_radius > 0 and filled["interpolated"].any():
        # numpy per frame (pandas' per-group indexing was most of the time on gappy videos)
        spots = localisation.rows_by_frame(tracks["frame"].to_numpy())
        spot_xy, spot_mass = tracks[["x", "y"]].to_numpy(float), tracks["mass"].to_numpy(float)
        xy, merged = filled[["x", "y"]].to_numpy(float), filled["merged"].to_numpy().copy()
        gaps = np.flatnonzero(filled["interpolated"].to_numpy())
        for frame, rows in localisation.rows_by_frame(filled["frame"].to_numpy()[gaps]).items():
            rows = gaps[rows]
            here = spots.get(frame)
            if here is None:
                continue
            mass = spot_mass[here]
            bright = spot_xy[here][mass >= merge_mass_ratio * np.median(mass)]
            if len(bright) == 0:
                continue
            d, k = cKDTree(bright).query(xy[rows])
            inside = d <= merge_radius
            xy[rows[inside]] = bright[k[inside]]
            merged[rows[inside]] = True
        filled["x"], filled["y"], filled["merged"] = xy[:, 0], xy[:, 1], merged
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


def link_features(features, search_range: float, options: TrackOptions, precision: float = float("nan")):
    """trackpy-style ``features`` linked by ``options.linker`` (adds ``particle``): the LAP linker
    of :mod:`anomalousnet.tracking.linking` with the measured localisation ``precision`` (px) as
    its noise (its default when unknown), or ``trackpy.link`` with adaptive search."""
    if options.linker == "trackpy":
        import trackpy as tp

        return tp.link(features, search_range, memory=options.memory,
                       adaptive_stop=max(0.5, 0.2 * search_range), adaptive_step=0.9)
    noise = precision if np.isfinite(precision) else linking.LinkOptions.noise
    return linking.link(features, linking.LinkOptions(search_range=search_range, memory=options.memory, noise=noise,
                                                      ambiguity=options.ambiguity))


def track_dataframe(path: os.PathLike | str, options: TrackOptions = TrackOptions(), progress: bool = False):
    """Track one video: ``(table, info)``.

    ``table`` is trackpy-style, sorted by particle then frame: ``particle, frame, x, y``
    (px; x the column, y the row), ``mass`` (NaN where filled), ``interpolated`` (frames the
    particle was not seen in, filled), ``merged`` (those of them it spent inside a merged spot,
    whose position it took) and ``vip`` (the AnDi-2 VIP index, -1 for others).
    ``info``: the parameters used and which were estimated, the number of frames, the VIP
    marks and those left untagged. ``progress`` shows a bar over the frames.

    Raises :class:`~anomalousnet.io.video.VideoError` (naming the file) for an unusable file
    or when the spot size cannot be estimated (no bright spots: give ``diameter``).
    """
    from threadpoolctl import threadpool_limits

    # The spot fits' many tiny batched solves gain nothing from BLAS threads, whose spinning
    # doubled the CPU time of a video (one video is one task; videos run in parallel instead).
    with threadpool_limits(limits=1, user_api="blas"):
        return _track_dataframe(Path(path), options, progress)


def _track_dataframe(path: Path, options: TrackOptions, progress: bool):
    import pandas as pd
    import trackpy as tp

    tp.quiet()
    with Video(path, andi_vip=options.andi_vip) as video:
        estimated = []
        sample_idx = video.sample_indices(12)
        sample = np.stack([video.frames(t, t + 1)[0] for t in sample_idx])
        diameter = options.diameter
        try:
            spot_sigma = estimate_spot_sigma(sample)
        except ValueError as exc:
            if diameter is None:
                raise VideoError(path, str(exc)) from None
            spot_sigma = (diameter - 1) / 3  # inverse of diameter_for_sigma
        if diameter is None:
            diameter = diameter_for_sigma(spot_sigma)
            estimated.append("diameter")
        minmass = options.minmass
        if minmass is None:
            minmass = estimate_minmass(sample, diameter, options.percentile)
            estimated.append("minmass")
        spot_model = options.refine
        if spot_model == "auto":
            found = localisation.locate_frames(sample, diameter, minmass, diameter + 1, options.percentile)
            table = pd.DataFrame(np.concatenate(found), columns=["y", "x", "mass"])
            table["frame"] = np.repeat(np.arange(len(found)), [len(f) for f in found])
            spot_model = localisation.choose_model(sample, table, spot_sigma)
        separation = options.separation
        if separation is None:
            separation = default_separation(diameter, spot_sigma)
            estimated.append("separation")
        features = locate(video, diameter, minmass, dataclasses.replace(options, refine=spot_model, separation=separation),
                          progress=progress, spot_sigma=spot_sigma)
        search_range = options.search_range
        if search_range is None:
            search_range = estimate_search_range(features[features["frame"] < 200], diameter)
            estimated.append("search_range")
        n_frames, marks, has_labels = video.n_frames, video.vip_marks, video.vip_labels is not None
    log.info("%s: %d features in %d frames (diameter %d, minmass %.4g, search range %.3g)", path, len(features),
             n_frames, diameter, minmass, search_range)
    precision = localisation.video_precision(features)
    if len(features):
        tracks = fill_gaps(link_features(features, search_range, options, precision), merge_radius=diameter)
    else:
        tracks = fill_gaps(features.assign(particle=np.zeros(0, np.int64)))
    lengths = tracks.groupby("particle")["frame"].transform("size")
    tracks = tracks[lengths >= options.min_length]
    tagged, untagged = tag_vips(tracks, marks, options.vip_max_distance, search_range) if marks else ({}, [])
    if untagged:
        log.warning("%s: no trajectory near VIP mark(s) %s in the first frame; they are not tagged", path, untagged)
    vip_of = {particle: vip for vip, particle in tagged.items()}
    tracks = tracks.assign(vip=tracks["particle"].map(vip_of).fillna(-1).astype(np.int64))
    used = {"diameter": int(diameter), "minmass": float(minmass), "search_range": float(search_range),
            "spot_sigma": float(spot_sigma), "separation": float(separation), "spot_model": spot_model}
    info = {"used": used, "estimated": estimated, "n_frames": int(n_frames), "andi_vip_labels": bool(has_labels),
            "localisation_precision_px": precision,
            "vip_marks": sorted(marks), "vip_untagged": untagged}
    if tracks.empty:
        log.warning("%s: no trajectories found (minmass %.4g too high, or no particles?)", path, minmass)
    return tracks, info


def track_video(path: os.PathLike | str, shard_path: os.PathLike | str, options: TrackOptions = TrackOptions(),
                command: str = "track", progress: bool = False) -> Path:
    """Track one video (:func:`track_dataframe`) and write its trajectories to ``shard_path``
    (atomically), with the parameters used, the source's checksum and the time it took."""
    path = Path(path)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    tracks, info = track_dataframe(path, options, progress)
    traj = Trajectories.from_dataframe(tracks, track_columns=("vip",))
    used = info["used"]
    parameters = {**dataclasses.asdict(options), **used, "estimated": info["estimated"]}
    attrs = st.provenance(command, parameters, source_path=str(path.resolve()), source_sha256=st.sha256_of(path),
                          pixel_size_um=options.pixel_size_um, frame_interval_s=options.frame_interval_s)
    attrs.update({**{f"track_{k}": v for k, v in used.items()}, "track_estimated": json.dumps(info["estimated"]),
                  "n_frames": info["n_frames"], "andi_vip_labels": info["andi_vip_labels"],
                  # RMS per-localisation precision (px per axis) of the fitted spots; NaN unfitted
                  "localisation_precision_px": info["localisation_precision_px"],
                  "vip_marks": json.dumps(info["vip_marks"]), "vip_untagged": json.dumps(info["vip_untagged"]),
                  # Elapsed and CPU time of this video (CPU < elapsed: the core was shared).
                  "track_seconds": time.perf_counter() - wall0, "track_cpu_seconds": time.process_time() - cpu0})
    return st.write_shard(shard_path, traj, kind=STORE_KIND, attrs=attrs)
