"""AnDi-style trajectory CSV files (``traj_idx,frame,x,y``): one reader, one writer.

This is the format of the 2nd AnDi Challenge's ``trajs_fov_F.csv`` (andi_datasets writes
every value as a float, e.g. ``0.0,12.0,53.1,7.9``); a trackpy table with ``particle``
instead of ``traj_idx`` is read too. Rows may come in any order: they are sorted by
trajectory then frame. Every trajectory must have exactly one position per frame with no
missing frame, as the store schema requires.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from anomalousnet.store import Trajectories

CSV_COLUMNS = ("traj_idx", "frame", "x", "y")


class TrajectoryFileError(ValueError):
    """A trajectory file cannot be read; the message names the file and the problem."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def read_andi_csv(path: os.PathLike | str) -> Trajectories:
    """Read one AnDi-style CSV into Trajectories (tracks: particle = traj_idx).

    Raises TrajectoryFileError (naming the file, and the trajectory or row where it
    applies) for: an unreadable or empty file, missing columns, non-numeric, NaN or
    infinite values, non-integer ``traj_idx``/``frame``, a frame given twice or a frame
    missing inside a trajectory.
    """
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except FileNotFoundError:
        raise TrajectoryFileError(path, "no such file") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
        raise TrajectoryFileError(path, f"not a readable CSV file: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    if "traj_idx" not in df.columns and "particle" in df.columns:
        df = df.rename(columns={"particle": "traj_idx"})
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise TrajectoryFileError(path, f"missing column(s) {', '.join(missing)}; found {', '.join(df.columns)} "
                                        f"(expected a header line 'traj_idx,frame,x,y')")
    if len(df) == 0:
        raise TrajectoryFileError(path, "no rows: the file holds a header but no positions")
    values = {}
    for c in CSV_COLUMNS:
        col = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(col))
        if len(bad):
            raise TrajectoryFileError(path, f"row {int(bad[0]) + 2}: column {c} is {df[c].iloc[bad[0]]!r}, "
                                            f"not a finite number ({len(bad)} such rows)")
        values[c] = col
    for c in ("traj_idx", "frame"):
        frac = np.flatnonzero(values[c] != np.round(values[c]))
        if len(frac):
            raise TrajectoryFileError(path, f"row {int(frac[0]) + 2}: {c} {values[c][frac[0]]} is not an integer")
    table = pd.DataFrame({"particle": values["traj_idx"].astype(np.int64), "frame": values["frame"].astype(np.int64),
                          "x": values["x"], "y": values["y"]})
    traj = Trajectories.from_dataframe(table)
    steps = np.diff(traj.points["frame"])
    inner = np.ones(len(steps), bool)
    inner[traj.offsets[1:-1] - 1] = False  # steps between one trajectory and the next
    bad = np.flatnonzero(inner & (steps != 1))
    if len(bad):
        i = int(np.searchsorted(traj.offsets, bad[0], side="right") - 1)
        f0, f1 = traj.points["frame"][bad[0]], traj.points["frame"][bad[0] + 1]
        what = "given twice" if f1 == f0 else f"missing (jumps from {f0} to {f1})"
        raise TrajectoryFileError(path, f"trajectory {traj.tracks['particle'][i]}: frame {f0 + 1 if f1 != f0 else f0} "
                                        f"{what}; every trajectory needs one position per consecutive frame")
    return traj


def write_andi_csv(path: os.PathLike | str, traj: Trajectories) -> Path:
    """Write Trajectories as an AnDi-style CSV (floats, as andi_datasets writes them);
    atomically (temporary name, then rename)."""
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({"traj_idx": np.repeat(traj.tracks["particle"], traj.lengths).astype(np.float64),
                       "frame": np.asarray(traj.points["frame"], np.float64),
                       "x": traj.points["x"], "y": traj.points["y"]})
    tmp = path.with_name("." + path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
