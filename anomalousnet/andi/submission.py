"""Writing an AnDi-2 submission from the challenge's public data with any method.

A method maps one field of view's :class:`~anomalousnet.core.trajectories.Trajectories` to one
:class:`~anomalousnet.io.andi_files.TrajectoryLabel` per trajectory (see
:mod:`anomalousnet.andi.methods`). Track 2 gets a line for every trajectory of the CSVs,
track 1 exactly one per VIP index; a trajectory the method cannot handle still gets a valid
(fallback) line, counted with its reason in the returned summary.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from anomalousnet.batch.summary import Summary
from anomalousnet.core.names import FREE
from anomalousnet.core.trajectories import Trajectories
from anomalousnet.ensemble import ensemble_from_labels
from anomalousnet.io.andi_files import (ENSEMBLE_NAME, Fov, TrajectoryLabel, find_public, read_andi_csv,
                                        read_vip_idx, submission_path, write_ensemble, write_labels)
from anomalousnet.andi.scoring import value_problem

log = logging.getLogger(__name__)


def fallback_label(idx: int, T: int, alpha: float = 1.0, K: float = 1.0) -> TrajectoryLabel:
    """The line written for a trajectory the method cannot handle: one free segment with
    the given (by default Brownian) alpha and K - valid for the official parser."""
    return TrajectoryLabel(int(idx), (float(K),), (float(alpha),), (FREE,), (), max(int(T), 1))


def complete_labels(traj: Trajectories, labels: Sequence[TrajectoryLabel] | None, summary: Summary,
                    track: int, wanted: Sequence[int] | None = None, default_T: int = 1) -> list[TrajectoryLabel]:
    """One valid line per wanted trajectory (default: every track of ``traj``), in index order.

    A trajectory without a usable label from the method (missing, wrong length, values out of
    range) gets :func:`fallback_label` with the median alpha and K of the others, counted in
    ``summary``. A wanted index absent from ``traj`` (lost by tracking) gets the median
    length (``default_T`` when ``traj`` is empty), also counted.
    """
    lengths = dict(zip(traj.tracks["particle"].tolist(), traj.lengths.tolist()))
    by_idx = {}
    for label in labels or ():
        T = lengths.get(label.idx)
        if T is not None and label.T == T and value_problem(label) is None:
            by_idx[label.idx] = label
    good = list(by_idx.values())
    alpha = float(np.median([a for l in good for a in l.alpha])) if good else 1.0
    K = float(np.median([k for l in good for k in l.K])) if good else 1.0
    median_T = int(np.median(list(lengths.values()))) if lengths else int(default_T)
    out = []
    for idx in (sorted(lengths) if wanted is None else sorted(int(i) for i in wanted)):
        if idx in by_idx:
            out.append(by_idx[idx])
        elif idx in lengths:
            _add_fallback(summary, track, "not handled by the method")
            out.append(fallback_label(idx, lengths[idx], alpha, K))
        else:
            _add_fallback(summary, track, "not found by tracking")
            out.append(fallback_label(idx, median_T, alpha, K))
    return out


def run_public(public_dir: os.PathLike | str, sub_dir: os.PathLike | str, method, tracks: Sequence[int] = (2,),
               tracker=None, progress: bool = True, batch_tracks: int = 20000) -> Summary:
    """Write a submission for the public data in ``public_dir``.

    ``method(traj: Trajectories) -> list[TrajectoryLabel]`` predicts the segments of the
    trajectories it is given (indices = ``traj.tracks["particle"]``). Track-2 FOVs are given
    to it together, up to ``batch_tracks`` trajectories per call (a network predicts faster
    in large batches; an experiment's FOVs always in one call), with ``fov`` and
    ``experiment`` track columns telling them apart (for per-FOV stages); if it fails on a
    batch, each FOV is retried alone.
    ``tracker(video: Path) -> Trajectories`` (track 1 only) tracks a video; its tracks carry
    ``vip`` (the VIP index, -1 for others). Track 2 gets a line for every trajectory of the
    CSV, track 1 exactly one per VIP index; the ensemble file of each experiment summarises
    every trajectory the method saw.

    Returns a :class:`Summary`: files written; ``counts["trajectories"]`` and
    ``counts["fallback"]`` per track, ``counts["fallback_reasons"]``; ``seconds`` per track;
    ``failed``: what failed (a video's tracking, the method on a FOV) and why.
    """
    from tqdm import tqdm

    if 1 in tracks and tracker is None:
        raise ValueError("track 1 needs a tracker (video -> trajectories with a 'vip' column)")
    summary = Summary(Path(sub_dir))
    fovs = find_public(public_dir, tracks)
    seen_by_exp: dict[tuple[int, int], list[TrajectoryLabel]] = {}

    def write(fov: Fov, lines: list[TrajectoryLabel], everything: list[TrajectoryLabel]) -> None:
        summary.written.append(write_labels(submission_path(sub_dir, fov.track, fov.exp, fov.fov), lines))
        summary.add_count("trajectories", fov.track, len(lines))
        seen_by_exp.setdefault((fov.track, fov.exp), []).extend(everything)

    def timed(track: int, t0: float) -> None:
        summary.add_time(track, time.perf_counter() - t0)

    with tqdm(total=len(fovs), desc="fields of view", unit="fov", disable=not progress) as bar:
        pending: list[tuple[Fov, Trajectories]] = []
        track2 = [f for f in fovs if f.track == 2]
        t0 = time.perf_counter()
        for i, fov in enumerate(track2):
            pending.append((fov, read_andi_csv(fov.trajs)))
            last = i == len(track2) - 1
            # an experiment's FOVs go in one call: per-FOV stages pool their evidence over it
            if last or (sum(t.n_tracks for _, t in pending) >= batch_tracks and track2[i + 1].exp != fov.exp):
                for (f, traj), labels in zip(pending, _method_on_batch(method, pending, summary)):
                    lines = complete_labels(traj, labels, summary, 2)
                    write(f, lines, lines)
                bar.update(len(pending))
                pending = []
                timed(2, t0)
                t0 = time.perf_counter()
        track1 = [f for f in fovs if f.track == 1]
        for exp in sorted({f.exp for f in track1}):  # an experiment's videos in one method call, as above
            t0 = time.perf_counter()
            tracked = [(fov, _tracked(tracker, fov, summary)) for fov in track1 if fov.exp == exp]
            with_tracks = [(fov, traj) for fov, traj in tracked if traj.n_tracks]
            by_fov = dict(zip([f for f, _ in with_tracks], _method_on_batch(method, with_tracks, summary)
                              if with_tracks else []))
            for fov, traj in tracked:
                labels = by_fov.get(fov) or []
                by_particle = {l.idx: l for l in labels}
                # relabel each VIP's (longest) track with its VIP index
                vip_traj, vip_labels = _relabel_vips(traj, _vip_tracks(traj), by_particle)
                write(fov, complete_labels(vip_traj, vip_labels, summary, 1, wanted=read_vip_idx(fov.vip),
                                           default_T=_video_frames(fov.video)), labels)
            timed(1, t0)
            bar.update(len(tracked))
    for (track, exp), labels in sorted(seen_by_exp.items()):
        summary.written.append(write_ensemble(submission_path(sub_dir, track, exp) / ENSEMBLE_NAME,
                                              ensemble_from_labels(labels)))
    return summary


def _method_on_batch(method, batch: list[tuple[Fov, Trajectories]], summary: Summary
                     ) -> list[list[TrajectoryLabel] | None]:
    """The method's labels for each FOV of ``batch``, from one call on all their trajectories
    (renumbered 0..n-1, then mapped back); one call per FOV if that fails."""
    if len(batch) == 1:
        return [_safe_method(method, batch[0][1], batch[0][0], summary)]
    trajs = [t for _, t in batch]
    names = sorted(set.intersection(*(set(t.points) for t in trajs)))
    offsets = np.concatenate([[0], np.cumsum([t.n_points for t in trajs])])
    combined = Trajectories(
        np.concatenate([[0]] + [t.offsets[1:] + o for t, o in zip(trajs, offsets[:-1])]).astype(np.int64),
        {n: np.concatenate([np.asarray(t.points[n]) for t in trajs]) for n in names},
        {"particle": np.arange(sum(t.n_tracks for t in trajs), dtype=np.int64),
         # per-FOV stages group by these
         "fov": np.repeat(np.arange(len(trajs)), [t.n_tracks for t in trajs]),
         "experiment": np.repeat([f.exp for f, _ in batch], [t.n_tracks for t in trajs])})
    owner = np.asarray(combined.tracks["fov"])
    original = np.concatenate([t.tracks["particle"] for t in trajs])
    try:
        labels = method(combined)
    except Exception as exc:  # noqa: BLE001 - retried FOV by FOV, so one bad FOV cannot take others down
        log.warning("method failed on a batch of %d FOVs (%s); retrying one by one", len(batch), exc)
        return [_safe_method(method, t, f, summary) for f, t in batch]
    out: list[list[TrajectoryLabel]] = [[] for _ in batch]
    for label in labels:
        if 0 <= label.idx < len(owner):
            out[owner[label.idx]].append(dataclasses.replace(label, idx=int(original[label.idx])))
    return out


def _tracked(tracker, fov: Fov, summary: Summary) -> Trajectories:
    """The tracks of a track-1 video, or none (reported in ``summary``) when tracking fails."""
    try:
        return tracker(fov.video)
    except Exception as exc:  # noqa: BLE001 - reported; the FOV's VIPs still get (fallback) lines
        log.warning("tracking %s failed (%s); fallback lines for its VIPs", fov.video, exc)
        summary.failed[f"tracking {fov.video}"] = f"{type(exc).__name__}: {exc}"
        return _no_tracks()


def _video_frames(path: Path, default: int = 200) -> int:
    """Frames of a video (the length given to VIPs nobody tracked); the challenge's 200 if unreadable."""
    try:
        from anomalousnet.io.video import Video

        with Video(path) as video:
            return int(video.n_frames)
    except Exception:  # noqa: BLE001 - only a fallback length
        return default


def _no_tracks() -> Trajectories:
    return Trajectories(np.zeros(1, np.int64), {"frame": np.zeros(0, np.int64), "x": np.zeros(0), "y": np.zeros(0)},
                           {"particle": np.zeros(0, np.int64), "vip": np.zeros(0, np.int64)})


def _safe_method(method, traj: Trajectories, fov: Fov, summary: Summary):
    """The method's labels, or None when it fails on the whole FOV (every line then falls back)."""
    try:
        return method(traj)
    except Exception as exc:  # noqa: BLE001 - reported, and every trajectory still gets a line
        log.warning("method failed on track %d exp %d fov %d (%s); fallback lines written",
                    fov.track, fov.exp, fov.fov, exc)
        summary.failed[f"method on track {fov.track} exp {fov.exp} fov {fov.fov}"] = f"{type(exc).__name__}: {exc}"
        return None


def _vip_tracks(traj: Trajectories) -> dict[int, int]:
    """VIP index -> row of its longest track (tracking can split one particle into several)."""
    if "vip" not in traj.tracks:
        raise ValueError("tracked trajectories have no 'vip' column")
    best: dict[int, int] = {}
    for row, (v, n) in enumerate(zip(traj.tracks["vip"].tolist(), traj.lengths.tolist())):
        if v >= 0 and (v not in best or n > traj.lengths[best[v]]):
            best[int(v)] = row
    return best


def _relabel_vips(traj: Trajectories, vip_rows: Mapping[int, int], by_particle: Mapping[int, TrajectoryLabel]):
    """Lengths (as Trajectories) and labels of the VIP tracks only, indexed by VIP index.

    A VIP is in view from the video's first frame (the challenge picks VIPs among the
    particles of frame 0), so its reference trajectory starts there; a VIP track that the
    tracker picks up only at frame f > 0 has its first segment extended back to frame 0
    (change points shifted by f, T increased by f) to keep change points in the reference's
    frame of time."""
    vips = sorted(vip_rows)
    arrays, labels = [], []
    for v in vips:
        track = traj.track(vip_rows[v])
        first = max(int(track["frame"][0]), 0)
        n = first + len(track["x"])
        arrays.append({"frame": np.arange(n, dtype=np.int64), "x": np.zeros(n), "y": np.zeros(n)})
        label = by_particle.get(int(traj.tracks["particle"][vip_rows[v]]))
        if label is not None:
            labels.append(dataclasses.replace(label, idx=v, cps=tuple(c + first for c in label.cps), T=label.T + first))
    sub = Trajectories.from_arrays(arrays, {"particle": np.array(vips, dtype=np.int64)}) if arrays else _no_tracks()
    return sub, labels


def _add_fallback(summary: Summary, track: int, reason: str) -> None:
    summary.add_count("fallback", track)
    summary.add_count("fallback_reasons", reason)
