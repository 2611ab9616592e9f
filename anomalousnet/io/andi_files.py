"""The 2nd AnDi Challenge (2024) file formats and folder layouts: each file's one reader and writer.

* trajectories ``trajs_fov_F.csv``: columns ``traj_idx, frame, x, y`` (px, frames;
  andi_datasets writes every value as a float); a trackpy table with ``particle`` instead of
  ``traj_idx`` is read too;
* VIP indices ``vip_idx_fov_F.txt``: one index per line (track 1, videos);
* per-trajectory labels, the same format for the reference (``traj_labs_fov_F.txt``)
  and for a submission (``fov_F.txt``): one line per trajectory,
  ``idx, K1, alpha1, state1, CP1, K2, ..., CPn-1, Kn, alphan, staten, T`` where a change
  point is the first frame of the next segment and T the trajectory length;
* ensemble labels ``ensemble_labels.txt``: a header ``model: NAME; num_state: N`` and
  five ``;``-separated rows (mean alpha, variance alpha, mean K, variance K, weight),
  one column per state.

Layouts: the public data ``track_2/exp_E/trajs_fov_F.csv`` and
``track_1/exp_E/videos_fov_F.tiff`` + ``vip_idx_fov_F.txt``; a submission
``track_T/exp_E/fov_F.txt`` + ``track_T/exp_E/ensemble_labels.txt``; a reference as
written by ``andi_datasets`` (``traj_labs_fov_F.txt``, ``ensemble_labels.txt``,
``vip_idx_fov_F.txt``). Every writer is atomic (:mod:`anomalousnet.io.atomic`).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from anomalousnet.core.errors import InputError
from anomalousnet.core.names import N_STATES
from anomalousnet.core.trajectories import Trajectories
from anomalousnet.io import atomic

STATES = tuple(range(N_STATES))  # the label values: 0 immobile, 1 confined, 2 free, 3 directed
TRACKS = (1, 2)
ENSEMBLE_NAME = "ensemble_labels.txt"
ENSEMBLE_ROWS = ("mean alpha", "var alpha", "mean K", "var K", "weight")
CSV_COLUMNS = ("traj_idx", "frame", "x", "y")


class AndiFormatError(InputError):
    """A file does not follow the AnDi-2 format; names the file (and line) and the problem."""

    def __init__(self, path: os.PathLike | str, problem: str, line: int | None = None):
        self.line = line
        super().__init__(f"{path}:{line}" if line is not None else path, problem)
        self.path = str(path)

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.line)


class TrajectoryFileError(InputError):
    """A trajectory file cannot be read; the message names the file and the problem."""


# ----------------------------------------------------------------------------- trajectories

# Other names of the four columns, recognised without being asked: trackpy's table and
# TrackMate's spot export (positions in TrackMate's calibrated unit).
CSV_ALIASES = {"traj_idx": ("particle", "TRACK_ID"), "frame": ("FRAME",), "x": ("POSITION_X",),
               "y": ("POSITION_Y",)}
# Point columns the pipeline itself writes: an input column of that name is not kept.
RESERVED_POINT_COLUMNS = ("interpolated", "merged", "vip", "precision")


def parse_column_map(text: str | None) -> dict[str, str]:
    """``--columns particle=TRACK_ID,frame=FRAME,x=POSITION_X,y=POSITION_Y`` -> {wanted: in file}
    (``particle`` and ``traj_idx`` name the same column). Raises ValueError naming the problem."""
    mapping = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        wanted, sep, given = (t.strip() for t in item.partition("="))
        wanted = "traj_idx" if wanted == "particle" else wanted
        if not sep or wanted not in CSV_COLUMNS or not given:
            raise ValueError(f"{item!r}: expected NAME=COLUMN with NAME one of particle, frame, x, y")
        mapping[wanted] = given
    return mapping


def read_andi_csv(path: os.PathLike | str, fill_gaps: bool = False, columns: dict[str, str] | None = None
                  ) -> Trajectories:
    """Read one AnDi-style CSV into Trajectories (tracks: particle = traj_idx). Rows may come
    in any order: they are sorted by trajectory then frame. The four columns may also have
    the names of :data:`CSV_ALIASES` (trackpy, TrackMate; TrackMate's three extra header rows
    and its spots in no track are skipped) or those ``columns`` maps them to. Other numeric
    columns (trackpy's ``mass``, ``size``, ``ecc``...) are kept as point columns.

    Raises TrajectoryFileError (naming the file, and the trajectory or row where it
    applies) for: an unreadable or empty file, missing columns, non-numeric, NaN or
    infinite values, non-integer ``traj_idx``/``frame``, a frame given twice or, unless
    ``fill_gaps``, a frame missing inside a trajectory. With ``fill_gaps`` (trackpy's
    ``link`` with ``memory`` leaves such gaps) missing frames are filled by linear
    interpolation and flagged in the per-point column ``interpolated``.
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
    rename = {}
    for wanted in CSV_COLUMNS:
        names = [columns[wanted]] if columns and wanted in columns else [wanted, *CSV_ALIASES[wanted]]
        given = next((n for n in names if n in df.columns), None)
        if given is not None and given != wanted:
            rename[given] = wanted
    df = df.drop(columns=[c for c in rename.values() if c in df.columns]).rename(columns=rename)
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        accepted = "; ".join(f"{c}: {' or '.join((c, *CSV_ALIASES[c]))}" for c in missing)
        raise TrajectoryFileError(path, f"missing column(s) {', '.join(missing)}; found {', '.join(df.columns)}. "
                                        f"Accepted names: {accepted}; or name them with --columns "
                                        f"particle=COL,frame=COL,x=COL,y=COL")
    if "TRACK_ID" in rename:  # TrackMate: name, short name and unit rows under the header; untracked spots
        head = pd.to_numeric(df["frame"].iloc[:3], errors="coerce")
        df = df.iloc[int(head.isna().sum()) if head.isna().all() else 0:]
        df = df[df["traj_idx"].astype(str).str.strip().ne("") & df["traj_idx"].notna()]
    if len(df) == 0:
        raise TrajectoryFileError(path, "no rows: the file holds a header but no positions")
    values = {}
    for c in CSV_COLUMNS:
        col = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(col))
        if len(bad):
            raise TrajectoryFileError(path, f"row {int(df.index[bad[0]]) + 2}: column {c} is {df[c].iloc[bad[0]]!r}, "
                                            f"not a finite number ({len(bad)} such rows)")
        values[c] = col
    for c in ("traj_idx", "frame"):
        frac = np.flatnonzero(values[c] != np.round(values[c]))
        if len(frac):
            raise TrajectoryFileError(path, f"row {int(df.index[frac[0]]) + 2}: {c} {values[c][frac[0]]} is not an "
                                            f"integer")
    table = pd.DataFrame({"particle": values["traj_idx"].astype(np.int64), "frame": values["frame"].astype(np.int64),
                          "x": values["x"], "y": values["y"]})
    for c in df.columns:  # the input's other numeric columns, kept per point
        if c not in CSV_COLUMNS and c not in RESERVED_POINT_COLUMNS and c not in table and \
                not c.startswith(("Unnamed:", "pred_")):  # a written-out pandas index; our predictions
            extra = pd.to_numeric(df[c], errors="coerce")
            if extra.notna().all():
                table[c] = extra.to_numpy(np.float64)
    try:
        return Trajectories.from_dataframe(table, fill_gaps=fill_gaps)
    except ValueError as exc:  # FrameGapError: the trajectory and the frame
        hint = "" if fill_gaps else " (--fill-gaps fills and flags missing frames, as tracking does)"
        raise TrajectoryFileError(path, f"{exc}{hint}") from None


def write_andi_csv(path: os.PathLike | str, traj: Trajectories) -> Path:
    """Write Trajectories as an AnDi-style CSV (floats, as andi_datasets writes them);
    atomically (temporary name, then rename)."""
    import pandas as pd

    df = pd.DataFrame({"traj_idx": np.repeat(traj.tracks["particle"], traj.lengths).astype(np.float64),
                       "frame": np.asarray(traj.points["frame"], np.float64),
                       "x": traj.points["x"], "y": traj.points["y"]})
    with atomic.atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


# ----------------------------------------------------------------------------- labels

@dataclasses.dataclass(frozen=True)
class TrajectoryLabel:
    """Segments of one trajectory as the AnDi-2 label/submission line describes them.

    ``cps`` are the change points (first frame of each segment after the first, in frames
    from the trajectory's start, strictly increasing, in ``(0, T)``); ``K``, ``alpha`` and
    ``state`` hold one value per segment (``len(cps) + 1``); ``T`` is the length in frames.
    ``alpha_single`` and ``K_single`` (optional, not written to files): each segment's values
    from itself alone, before the pipeline pooled them over the FOV; the ensemble uses them.
    """

    idx: int
    K: tuple[float, ...]
    alpha: tuple[float, ...]
    state: tuple[int, ...]
    cps: tuple[int, ...]
    T: int
    alpha_single: tuple[float, ...] | None = None
    K_single: tuple[float, ...] | None = None

    def __post_init__(self):
        n = len(self.cps) + 1
        if not (len(self.K) == len(self.alpha) == len(self.state) == n) or \
                any(v is not None and len(v) != n for v in (self.alpha_single, self.K_single)):
            raise ValueError(f"trajectory {self.idx}: {len(self.cps)} change points need {n} values of K, "
                             f"alpha and state, got {len(self.K)}, {len(self.alpha)}, {len(self.state)}")

    @property
    def n_segments(self) -> int:
        return len(self.cps) + 1

    @property
    def bounds(self) -> np.ndarray:
        """Segment boundaries ``[0, cp1, ..., T]``."""
        return np.array([0, *self.cps, self.T], dtype=np.int64)

    def per_frame(self) -> dict[str, np.ndarray]:
        """alpha, K, state for every frame (length T)."""
        lengths = np.diff(self.bounds)
        return {"alpha": np.repeat(np.asarray(self.alpha, np.float64), lengths),
                "K": np.repeat(np.asarray(self.K, np.float64), lengths),
                "state": np.repeat(np.asarray(self.state, np.int64), lengths)}

    @classmethod
    def from_segments(cls, idx: int, starts: Sequence[int], ends: Sequence[int], alpha: Sequence[float],
                      K: Sequence[float], state: Sequence[int], alpha_single: Sequence[float] | None = None,
                      K_single: Sequence[float] | None = None) -> "TrajectoryLabel":
        """From contiguous segments ``[start, end)`` covering ``[0, T)`` (as the pipeline writes them)."""
        starts = [int(s) for s in starts]
        ends = [int(e) for e in ends]
        if not starts or starts[0] != 0 or any(e != s for e, s in zip(ends[:-1], starts[1:])) \
                or any(e <= s for s, e in zip(starts, ends)):
            raise ValueError(f"trajectory {idx}: segments must be contiguous and cover [0, T): "
                             f"starts {starts}, ends {ends}")
        return cls(int(idx), _floats(K), _floats(alpha), tuple(int(s) for s in state), tuple(starts[1:]), ends[-1],
                   _floats(alpha_single), _floats(K_single))

    def to_fields(self) -> list[str]:
        fields = [str(int(self.idx))]
        for i in range(self.n_segments):
            fields += [_fmt(self.K[i]), _fmt(self.alpha[i]), str(int(self.state[i]))]
            fields.append(str(int(self.cps[i])) if i < len(self.cps) else str(int(self.T)))
        return fields


def _floats(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


def _fmt(value: float) -> str:
    return repr(float(value))


def parse_label_line(fields: Sequence[str]) -> TrajectoryLabel:
    """One label line split at commas -> TrajectoryLabel; ValueError says what is wrong.

    Accepts what the official parser accepts with the trajectory length at the end
    (``len(fields) % 4 == 1``), integral indices, states, change points and T.
    """
    if len(fields) < 5 or len(fields) % 4 != 1:
        raise ValueError(f"{len(fields)} fields; expected idx, then K, alpha, state, CP per segment with T as "
                         f"the last CP (1 + 4n fields)")
    try:
        values = [float(f) for f in fields]
    except ValueError as exc:
        raise ValueError(f"not a number: {exc}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError("NaN or infinite value")
    ints = [values[0]] + values[3::4] + values[4::4]
    if any(v != int(v) for v in ints):
        raise ValueError("idx, states, change points and T must be integers")
    K, alpha, state, cps = values[1::4], values[2::4], values[3::4], values[4::4]
    label = TrajectoryLabel(int(values[0]), tuple(K), tuple(alpha), tuple(int(s) for s in state),
                            tuple(int(c) for c in cps[:-1]), int(cps[-1]))
    bounds = label.bounds
    if np.any(np.diff(bounds) <= 0):
        raise ValueError(f"change points must increase strictly within (0, T): {list(cps)}")
    return label


def read_labels(path: os.PathLike | str, strict: bool = True
                ) -> tuple[list[TrajectoryLabel], list[tuple[int, str]]]:
    """Read a label or submission file (``traj_labs_fov_F.txt`` / ``fov_F.txt``).

    ``strict``: the first bad line raises :class:`AndiFormatError` (for reference data).
    Otherwise bad lines are skipped and returned as ``(line number, problem)`` (for submissions).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise AndiFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    labels, problems = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            labels.append(parse_label_line([f.strip() for f in line.split(",")]))
        except ValueError as exc:
            if strict:
                raise AndiFormatError(path, str(exc), lineno) from None
            problems.append((lineno, str(exc)))
    return labels, problems


def write_labels(path: os.PathLike | str, labels: Iterable[TrajectoryLabel]) -> Path:
    """Write one line per trajectory in the label/submission format (atomically)."""
    path = Path(path)
    lines = [",".join(label.to_fields()) for label in labels]
    return atomic.write_text(path, "\n".join(lines) + ("\n" if lines else ""))


@dataclasses.dataclass(frozen=True)
class EnsembleLabel:
    """Per-state ensemble of one experiment: ``matrix`` is (5, n_states): mean alpha,
    variance alpha, mean K, variance K, weight (fraction of frames or counts)."""

    model: str
    matrix: np.ndarray

    @property
    def num_states(self) -> int:
        return self.matrix.shape[1]


def read_ensemble(path: os.PathLike | str) -> EnsembleLabel:
    """Read ``ensemble_labels.txt``; AndiFormatError names the file and the problem."""
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as exc:
        raise AndiFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    if not lines:
        raise AndiFormatError(path, "empty file")
    header = re.match(r"\s*model:\s*([^;]*);\s*num_state:\s*(\d+)", lines[0])
    if not header:
        raise AndiFormatError(path, f"first line must be 'model: NAME; num_state: N', got {lines[0]!r}", 1)
    rows = []
    for lineno, line in enumerate(lines[1:], 2):
        try:
            rows.append([float(v) for v in line.split(";")])
        except ValueError:
            raise AndiFormatError(path, f"not ';'-separated numbers: {line!r}", lineno) from None
    if len(rows) != len(ENSEMBLE_ROWS):
        raise AndiFormatError(path, f"{len(rows)} rows of numbers; expected {len(ENSEMBLE_ROWS)} "
                                    f"({', '.join(ENSEMBLE_ROWS)})")
    if len({len(r) for r in rows}) != 1:
        raise AndiFormatError(path, f"rows have different numbers of columns: {[len(r) for r in rows]}")
    matrix = np.array(rows, dtype=np.float64)
    if not np.all(np.isfinite(matrix)):
        raise AndiFormatError(path, "NaN or infinite value")
    if np.any(matrix[[1, 3, 4]] < 0):
        raise AndiFormatError(path, "variances and weights must be >= 0")
    if int(header.group(2)) != matrix.shape[1]:
        raise AndiFormatError(path, f"header says num_state {header.group(2)} but rows have {matrix.shape[1]} columns")
    return EnsembleLabel(header.group(1).strip(), matrix)


def write_ensemble(path: os.PathLike | str, ensemble: EnsembleLabel) -> Path:
    """Write ``ensemble_labels.txt`` as andi_datasets writes it (header, 5 rows of ';'-separated values)."""
    path = Path(path)
    matrix = np.asarray(ensemble.matrix, np.float64).reshape(len(ENSEMBLE_ROWS), -1)
    body = "\n".join(";".join(repr(float(v)) for v in row) for row in matrix)
    return atomic.write_text(path, f"model: {ensemble.model}; num_state: {matrix.shape[1]} \n{body}\n")


def labels_to_segments(labels: Iterable[TrajectoryLabel]) -> dict[str, np.ndarray]:
    """Labels as a segments table (particle, start, end, alpha, K, state, and alpha_single,
    K_single: a label's alpha and K where it has none), as the pipeline writes it."""
    rows = {c: [] for c in ("particle", "start", "end", "alpha", "K", "state", "alpha_single", "K_single")}
    for label in labels:
        b = label.bounds
        rows["particle"] += [label.idx] * label.n_segments
        rows["start"] += b[:-1].tolist()
        rows["end"] += b[1:].tolist()
        rows["alpha"] += label.alpha
        rows["K"] += label.K
        rows["state"] += label.state
        rows["alpha_single"] += label.alpha if label.alpha_single is None else label.alpha_single
        rows["K_single"] += label.K if label.K_single is None else label.K_single
    dtypes = {"particle": np.int64, "start": np.int64, "end": np.int64, "state": np.int8}
    return {c: np.array(v, dtype=dtypes.get(c, np.float64)) for c, v in rows.items()}


def labels_from_segments(segments: Mapping[str, np.ndarray]) -> list[TrajectoryLabel]:
    """A segments table (particle, start, end, alpha, K, state, optionally alpha_single and
    K_single; rows of a track together, contiguous from 0) -> one TrajectoryLabel per particle."""
    particle = np.asarray(segments["particle"])
    if not len(particle):
        return []
    starts = np.flatnonzero(np.r_[True, particle[1:] != particle[:-1]])
    out = []
    for a, b in zip(starts, np.r_[starts[1:], len(particle)]):
        single = [segments[c][a:b] if c in segments else None for c in ("alpha_single", "K_single")]
        out.append(TrajectoryLabel.from_segments(int(particle[a]), segments["start"][a:b], segments["end"][a:b],
                                                 segments["alpha"][a:b], segments["K"][a:b], segments["state"][a:b],
                                                 *single))
    return out


def read_vip_idx(path: os.PathLike | str) -> np.ndarray:
    """VIP indices of a track-1 FOV (``vip_idx_fov_F.txt``, one number per line)."""
    path = Path(path)
    try:
        values = np.atleast_1d(np.loadtxt(path, ndmin=1))
    except (OSError, ValueError) as exc:
        raise AndiFormatError(path, f"not a list of numbers: {exc}") from None
    if values.size == 0 or np.any(values != np.round(values)) or np.any(values < 0):
        raise AndiFormatError(path, "VIP indices must be non-negative integers, at least one")
    if len(np.unique(values)) != len(values):
        raise AndiFormatError(path, "duplicate VIP indices")
    return values.astype(np.int64)


def write_vip_idx(path: os.PathLike | str, vip: Sequence[int]) -> Path:
    """Write VIP indices as andi_datasets does (``np.savetxt``: one float per line)."""
    with atomic.atomic_path(path) as tmp:
        np.savetxt(tmp, np.asarray(vip, np.float64))
    return Path(path)


# ----------------------------------------------------------------------------- layouts

@dataclasses.dataclass(frozen=True)
class Fov:
    """One field of view of the public data: ``trajs`` (track 2 CSV) or ``video`` + ``vip``
    (track 1); paths that do not apply are None."""

    track: int
    exp: int
    fov: int
    trajs: Path | None = None
    video: Path | None = None
    vip: Path | None = None


def numbered(folder: Path, pattern: str) -> list[tuple[int, Path]]:
    rx = re.compile(pattern)
    out = []
    for p in folder.iterdir() if folder.is_dir() else ():
        m = rx.fullmatch(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def experiments(track_dir: Path) -> list[tuple[int, Path]]:
    """``exp_E`` folders of a track folder, sorted by E."""
    return [(e, p) for e, p in numbered(Path(track_dir), r"exp_(\d+)") if p.is_dir()]


def find_public(public_dir: os.PathLike | str, tracks: Sequence[int] = TRACKS) -> list[Fov]:
    """Every FOV of the public layout for the requested tracks. AndiFormatError when a
    requested track is absent or a video has no VIP file."""
    public_dir = Path(public_dir)
    if not public_dir.is_dir():
        raise AndiFormatError(public_dir, "not a directory")
    fovs = []
    for track in tracks:
        track_dir = public_dir / f"track_{track}"
        exps = experiments(track_dir)
        if not exps:
            raise AndiFormatError(track_dir, "no exp_E folders (missing track?)")
        for exp, exp_dir in exps:
            if track == 2:
                for fov, path in numbered(exp_dir, r"trajs_fov_(\d+)\.csv"):
                    fovs.append(Fov(2, exp, fov, trajs=path))
            else:
                for fov, path in numbered(exp_dir, r"videos_fov_(\d+)\.tiff?"):
                    vip = exp_dir / f"vip_idx_fov_{fov}.txt"
                    if not vip.exists():
                        raise AndiFormatError(vip, f"missing: video {path.name} needs its VIP indices")
                    fovs.append(Fov(1, exp, fov, video=path, vip=vip))
    return fovs


def submission_path(sub_dir: os.PathLike | str, track: int, exp: int, fov: int | None = None) -> Path:
    """``SUB/track_T/exp_E/fov_F.txt`` (or the experiment folder when fov is None)."""
    folder = Path(sub_dir) / f"track_{track}" / f"exp_{exp}"
    return folder if fov is None else folder / f"fov_{fov}.txt"
