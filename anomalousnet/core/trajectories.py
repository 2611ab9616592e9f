"""Trajectories in CSR form, their frame check, and gap filling: the one in-memory type every stage passes on.

Columns follow trackpy's vocabulary (``particle``, ``frame``, ``x``, ``y``); a trajectory has
one position per frame, frames consecutive. A table with frame gaps (trackpy's ``link``
with ``memory``) is either rejected, naming the particle and the frames, or filled by
:func:`fill_frame_gaps` (positions interpolated, rows flagged ``interpolated``); never are
two pieces silently joined.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping

import numpy as np


class FrameGapError(ValueError):
    """A trajectory skips or repeats a frame; the message names the particle and the frames."""


@dataclasses.dataclass(frozen=True)
class Trajectories:
    """Ragged trajectories in CSR form.

    ``points`` holds per-frame columns (at least frame, x, y), ``tracks`` per-trajectory
    columns (at least particle); track ``i`` spans ``points[c][offsets[i]:offsets[i+1]]``.
    """

    offsets: np.ndarray
    points: Mapping[str, np.ndarray]
    tracks: Mapping[str, np.ndarray]

    @property
    def n_tracks(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_points(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def track(self, i: int) -> dict[str, np.ndarray]:
        """Per-point columns of track ``i``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return {name: col[a:b] for name, col in self.points.items()}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self.track(i) for i in range(self.n_tracks))

    @classmethod
    def from_arrays(cls, arrays: list[dict[str, np.ndarray]], tracks: Mapping[str, np.ndarray] | None = None
                    ) -> "Trajectories":
        """Concatenate per-track dicts of equal-length columns (each with x, y; frame defaults to 0..n-1)."""
        lengths = np.array([len(a["x"]) for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        names = set().union(*(a.keys() for a in arrays)) | {"frame"} if arrays else {"frame", "x", "y"}
        points = {}
        for name in sorted(names):
            if name == "frame" and not all("frame" in a for a in arrays):
                points[name] = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]) if arrays else \
                    np.zeros(0, np.int64)
                continue
            points[name] = np.concatenate([np.asarray(a[name]) for a in arrays]) if arrays else np.zeros(0)
        tracks = dict(tracks or {})
        tracks.setdefault("particle", np.arange(len(arrays), dtype=np.int64))
        return cls(offsets, points, {k: np.asarray(v) for k, v in tracks.items()})

    @classmethod
    def from_dataframe(cls, df, track_columns: tuple[str, ...] = (), fill_gaps: bool = False) -> "Trajectories":
        """From a trackpy-style table (particle, frame, x, y, ...); sorted by particle then frame.

        A particle that skips frames raises :class:`FrameGapError` naming it and the frames,
        unless ``fill_gaps``: then the missing frames are filled by :func:`fill_frame_gaps`
        (positions interpolated, flagged in the ``interpolated`` column). A frame given twice
        is always an error. ``track_columns`` are per-track values (taken from each track's
        first row).
        """
        df = df.sort_values(["particle", "frame"], kind="stable")
        if fill_gaps:
            df = fill_frame_gaps(df, keep=track_columns)
        particle = df["particle"].to_numpy(np.int64)
        starts = np.flatnonzero(np.r_[True, particle[1:] != particle[:-1]]) if len(particle) else np.zeros(0, int)
        offsets = np.r_[starts, len(particle)].astype(np.int64)
        points = {c: df[c].to_numpy() for c in df.columns if c != "particle" and c not in track_columns}
        tracks = {"particle": particle[starts]}
        tracks.update({c: df[c].to_numpy()[starts] for c in track_columns})
        traj = cls(offsets, points, tracks)
        problem = frame_problem(traj)
        if problem:
            raise FrameGapError(problem)
        return traj

    def with_points(self, columns: Mapping[str, np.ndarray]) -> "Trajectories":
        """The same trajectories with per-point ``columns`` added (or replaced), e.g. predictions."""
        return Trajectories(self.offsets, {**self.points, **columns}, self.tracks)

    def with_tracks(self, columns: Mapping[str, np.ndarray]) -> "Trajectories":
        """The same trajectories with per-track ``columns`` added (or replaced)."""
        return Trajectories(self.offsets, self.points, {**self.tracks, **columns})

    def select(self, rows: np.ndarray) -> "Trajectories":
        """The tracks at ``rows`` (indices, in the order given), with all their columns."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        starts = self.offsets[rows]
        index = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(lengths.sum())
        return Trajectories(np.r_[0, np.cumsum(lengths)].astype(np.int64),
                            {n: np.asarray(c)[index] for n, c in self.points.items()},
                            {n: np.asarray(c)[rows] for n, c in self.tracks.items()})

    def to_dataframe(self):
        """Tidy long form (particle, frame, x, y, ...), as trackpy writes it."""
        import pandas as pd

        data = {"particle": np.repeat(self.tracks["particle"], self.lengths)}
        data.update(self.points)
        return pd.DataFrame(data)


def measured_points(points) -> np.ndarray | None:
    """Which points hold a measured position (per point, bool), or None when every point
    does: all but those tracking filled in by interpolation (``interpolated`` and not
    ``merged``: a merged spot's position was measured, to within the spot's size)."""
    if "interpolated" not in points:
        return None
    measured = ~np.asarray(points["interpolated"], bool)
    if "merged" in points:
        measured |= np.asarray(points["merged"], bool)
    return measured


def frame_problem(traj: Trajectories) -> str | None:
    """Why ``traj`` does not have one position per frame with consecutive frames, or None.

    The message names the particle and the frame: "trajectory P: frame F missing (jumps
    from A to B)" or "trajectory P: frame F given twice".
    """
    frame = np.asarray(traj.points["frame"])
    steps = np.diff(frame)
    inner = np.ones(len(steps), bool)
    inner[traj.offsets[1:-1] - 1] = False  # the step from one track's last frame to the next track's first
    bad = np.flatnonzero(inner & (steps != 1))
    if not len(bad):
        return None
    i = int(np.searchsorted(traj.offsets, bad[0], side="right") - 1)
    f0, f1 = int(frame[bad[0]]), int(frame[bad[0] + 1])
    what = f"frame {f0} given twice" if f1 == f0 else \
        f"frame {f0 + 1} missing (jumps from {f0} to {f1})" if f1 > f0 else f"frames out of order ({f0} then {f1})"
    return (f"trajectory {traj.tracks['particle'][i]}: {what}; every trajectory needs one position per frame "
            "(frames consecutive)")


def fill_frame_gaps(df, keep: tuple[str, ...] = ()):
    """One row per frame from each particle's first frame to its last, frames it skipped filled.

    ``df``: particle, frame, x, y and other columns, sorted by particle then frame. Filled
    rows get x and y linearly interpolated between the particle's neighbouring positions,
    the columns in ``keep`` (per-track values) copied from the particle, other columns NaN,
    and ``interpolated`` True (False on observed rows, or as given). A frame given twice
    raises :class:`FrameGapError`.
    """
    import pandas as pd

    particle = df["particle"].to_numpy(np.int64)
    frame = df["frame"].to_numpy(np.int64)
    if not len(particle):
        empty = df.assign(particle=particle, frame=frame, x=df["x"].to_numpy(float), y=df["y"].to_numpy(float))
        return empty.assign(interpolated=np.zeros(0, bool)) if "interpolated" not in df else empty
    same = particle[1:] == particle[:-1]
    if np.any(same & (frame[1:] == frame[:-1])):
        i = int(np.flatnonzero(same & (frame[1:] == frame[:-1]))[0])
        raise FrameGapError(f"trajectory {particle[i]}: frame {frame[i]} given twice")
    starts = np.flatnonzero(np.r_[True, ~same])
    ends = np.r_[starts[1:], len(particle)].astype(np.int64)
    first, last = frame[starts], frame[ends - 1]
    lengths = last - first + 1
    track = np.repeat(np.arange(len(starts)), lengths)
    full_offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    full_frame = np.arange(len(track)) - full_offsets[track] + first[track]
    row_track = np.repeat(np.arange(len(starts)), ends - starts)
    observed_at = full_offsets[row_track] + frame - first[row_track]
    observed = np.zeros(len(track), bool)
    observed[observed_at] = True
    # One interpolation over all tracks: a key that keeps each track's frames apart (every
    # filled frame lies between two observed frames of its own track).
    span = float(lengths.max() + 1)
    key_full = track * span + (full_frame - first[track])
    key_obs = key_full[observed_at]
    out = {"particle": particle[starts][track], "frame": full_frame.astype(np.int64)}
    for name in df.columns:
        if name in out:
            continue
        values = df[name].to_numpy()
        if name in ("x", "y"):
            out[name] = np.interp(key_full, key_obs, values.astype(np.float64))
        elif name in keep:
            out[name] = values[starts][track]
        elif name == "interpolated":
            filled = np.ones(len(track), bool)
            filled[observed_at] = values.astype(bool)
            out[name] = filled
        else:
            column = np.full(len(track), np.nan)
            column[observed_at] = values
            out[name] = column
    out.setdefault("interpolated", ~observed)
    return pd.DataFrame(out)
