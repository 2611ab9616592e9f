"""The 2nd AnDi Challenge (2024) file formats and its official scoring.

Every format has one reader and one writer, side by side:

* trajectories ``trajs_fov_F.csv``: columns ``traj_idx, frame, x, y`` (px, frames);
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
``vip_idx_fov_F.txt``).

Scoring (:func:`score`) computes every metric with the official functions of
``andi_datasets.utils_challenge`` (change-point RMSE and Jaccard, alpha MAE, K MSLE,
state F1, ensemble Wasserstein distances), per experiment and weighted over experiments
as the official scorer does. Unlike the official scorer, which silently gives maximum
error for a missing file and misaligns trajectories after a missing line, a missing or
malformed submission file or line is reported as a :class:`Problem` and left out of the
scores; the report says how many trajectories were scored out of how many expected.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from anomalousnet import store as st
from anomalousnet.trajectory_io import read_andi_csv  # noqa: F401 (re-exported for callers)

log = logging.getLogger(__name__)

STATES = (0, 1, 2, 3)  # 0 immobile, 1 confined, 2 free, 3 directed (models_phenom().lab_state order)
STATE_NAMES = {0: "immobile", 1: "confined", 2: "free", 3: "directed"}
TRACKS = (1, 2)
ENSEMBLE_NAME = "ensemble_labels.txt"
ENSEMBLE_ROWS = ("mean alpha", "var alpha", "mean K", "var K", "weight")
SINGLE_METRICS = ("cp_rmse", "cp_jaccard", "alpha_mae", "K_msle", "state_f1")
ENSEMBLE_METRICS = ("ens_alpha_w1", "ens_K_w1")


class AndiFormatError(ValueError):
    """A file does not follow the AnDi-2 format; names the file (and line) and the problem."""

    def __init__(self, path: os.PathLike | str, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


# ----------------------------------------------------------------------------- labels

@dataclasses.dataclass(frozen=True)
class TrajectoryLabel:
    """Segments of one trajectory as the AnDi-2 label/submission line describes them.

    ``cps`` are the change points (first frame of each segment after the first, in frames
    from the trajectory's start, strictly increasing, in ``(0, T)``); ``K``, ``alpha`` and
    ``state`` hold one value per segment (``len(cps) + 1``); ``T`` is the length in frames.
    """

    idx: int
    K: tuple[float, ...]
    alpha: tuple[float, ...]
    state: tuple[int, ...]
    cps: tuple[int, ...]
    T: int

    def __post_init__(self):
        n = len(self.cps) + 1
        if not (len(self.K) == len(self.alpha) == len(self.state) == n):
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
                      K: Sequence[float], state: Sequence[int]) -> "TrajectoryLabel":
        """From contiguous segments ``[start, end)`` covering ``[0, T)`` (as the pipeline writes them)."""
        starts = [int(s) for s in starts]
        ends = [int(e) for e in ends]
        if not starts or starts[0] != 0 or any(e != s for e, s in zip(ends[:-1], starts[1:])) \
                or any(e <= s for s, e in zip(starts, ends)):
            raise ValueError(f"trajectory {idx}: segments must be contiguous and cover [0, T): "
                             f"starts {starts}, ends {ends}")
        return cls(int(idx), tuple(float(k) for k in K), tuple(float(a) for a in alpha),
                   tuple(int(s) for s in state), tuple(starts[1:]), ends[-1])

    def to_fields(self) -> list[str]:
        fields = [str(int(self.idx))]
        for i in range(self.n_segments):
            fields += [_fmt(self.K[i]), _fmt(self.alpha[i]), str(int(self.state[i]))]
            fields.append(str(int(self.cps[i])) if i < len(self.cps) else str(int(self.T)))
        return fields


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


def read_labels(path: os.PathLike | str, strict: bool = True) -> tuple[list[TrajectoryLabel], list["Problem"]]:
    """Read a label or submission file (``traj_labs_fov_F.txt`` / ``fov_F.txt``).

    ``strict``: the first bad line raises :class:`AndiFormatError` (for reference data).
    Otherwise bad lines are returned as problems and skipped (for submissions).
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
            problems.append(Problem("malformed_line", str(path), f"line {lineno}: {exc}"))
    return labels, problems


def write_labels(path: os.PathLike | str, labels: Iterable[TrajectoryLabel]) -> Path:
    """Write one line per trajectory in the label/submission format (atomically)."""
    path = Path(path)
    lines = [",".join(label.to_fields()) for label in labels]
    _write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- ensemble

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
    _write_text(path, f"model: {ensemble.model}; num_state: {matrix.shape[1]} \n{body}\n")
    return path


def labels_to_segments(labels: Iterable[TrajectoryLabel]) -> dict[str, np.ndarray]:
    """Labels as a segments table (particle, start, end, alpha, K, state), as the pipeline writes it."""
    rows = {c: [] for c in ("particle", "start", "end", "alpha", "K", "state")}
    for label in labels:
        b = label.bounds
        rows["particle"] += [label.idx] * label.n_segments
        rows["start"] += b[:-1].tolist()
        rows["end"] += b[1:].tolist()
        rows["alpha"] += label.alpha
        rows["K"] += label.K
        rows["state"] += label.state
    dtypes = {"particle": np.int64, "start": np.int64, "end": np.int64, "state": np.int8}
    return {c: np.array(v, dtype=dtypes.get(c, np.float64)) for c, v in rows.items()}


def labels_from_segments(segments: Mapping[str, np.ndarray]) -> list[TrajectoryLabel]:
    """A segments table (particle, start, end, alpha, K, state; rows of a track together,
    contiguous from 0) -> one TrajectoryLabel per particle."""
    particle = np.asarray(segments["particle"])
    if not len(particle):
        return []
    starts = np.flatnonzero(np.r_[True, particle[1:] != particle[:-1]])
    out = []
    for a, b in zip(starts, np.r_[starts[1:], len(particle)]):
        out.append(TrajectoryLabel.from_segments(int(particle[a]), segments["start"][a:b], segments["end"][a:b],
                                                 segments["alpha"][a:b], segments["K"][a:b], segments["state"][a:b]))
    return out


def ensemble_from_labels(labels: Iterable[TrajectoryLabel], model: str = "predicted",
                         split_K: bool = True) -> EnsembleLabel:
    """Ensemble of an experiment from its trajectories' segments (:func:`anomalousnet.ensemble.fov_ensemble`:
    one column per group, frame-weighted means and variances of alpha and K, weights the share of
    frames). Groups are the predicted states, each split in two by :func:`split_by_K` when its K
    values form two separate clusters (``split_K``). The W1 metric compares the mixtures, so
    the column order does not matter."""
    from anomalousnet.ensemble import andi_matrix, fov_ensemble

    segments = labels_to_segments(labels)
    if split_K:
        segments["state"] = split_by_K(segments)
    table = fov_ensemble(segments)
    if not len(table["state"]):
        return EnsembleLabel(model, np.array([[1.0], [0.0], [1.0], [0.0], [1.0]]))
    return EnsembleLabel(model, andi_matrix(table))


def split_by_K(segments: Mapping[str, np.ndarray], min_gap_sd: float = 4.0, min_gap_decades: float = 0.7,
               min_weight: float = 0.05, k_floor: float = 1e-3) -> np.ndarray:
    """Group labels for the ensemble: the predicted state, and within a state two groups when
    its segments' log10 K fall into two well-separated clusters (weighted 2-means; kept when
    the cluster means are more than ``min_gap_sd`` pooled standard deviations and
    ``min_gap_decades`` apart, and each holds at least ``min_weight`` of the state's frames). The challenge's two-state, dimer
    and confinement experiments have states of the same kind whose K differ 10-100x: one
    column per predicted state would merge them into one broad population."""
    state = np.asarray(segments["state"], np.int64)
    w = (np.asarray(segments["end"]) - np.asarray(segments["start"])).astype(np.float64)
    logk = np.log10(np.maximum(np.asarray(segments["K"], np.float64), k_floor))
    group = state * 2
    for s in np.unique(state):
        m = np.flatnonzero(state == s)
        if len(m) < 4:
            continue
        x, ww = logk[m], w[m]
        centres = np.array([np.quantile(x, 0.25), np.quantile(x, 0.75)])
        if centres[1] - centres[0] <= 0:
            continue
        for _ in range(30):
            hi = np.abs(x - centres[1]) < np.abs(x - centres[0])
            if hi.all() or not hi.any():
                break
            new = np.array([np.average(x[~hi], weights=ww[~hi]), np.average(x[hi], weights=ww[hi])])
            if np.allclose(new, centres):
                break
            centres = new
        if hi.all() or not hi.any():
            continue
        resid = np.where(hi, x - centres[1], x - centres[0])
        sd = np.sqrt(np.average(resid ** 2, weights=ww))
        frac = ww[hi].sum() / ww.sum()
        gap = centres[1] - centres[0]
        if gap > min_gap_sd * max(sd, 1e-6) and gap > min_gap_decades and min_weight <= frac <= 1 - min_weight:
            group[m[hi]] += 1
    return group


# ----------------------------------------------------------------------------- trajectories, VIPs

# The trajectory CSV (trajs_fov_F.csv) has its reader and writer in anomalousnet.trajectory_io
# (read_andi_csv, write_andi_csv), shared with the inference pipeline.


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.asarray(vip, np.float64))
    return path


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


def _numbered(folder: Path, pattern: str) -> list[tuple[int, Path]]:
    rx = re.compile(pattern)
    out = []
    for p in folder.iterdir() if folder.is_dir() else ():
        m = rx.fullmatch(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def experiments(track_dir: Path) -> list[tuple[int, Path]]:
    """``exp_E`` folders of a track folder, sorted by E."""
    return [(e, p) for e, p in _numbered(Path(track_dir), r"exp_(\d+)") if p.is_dir()]


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
                for fov, path in _numbered(exp_dir, r"trajs_fov_(\d+)\.csv"):
                    fovs.append(Fov(2, exp, fov, trajs=path))
            else:
                for fov, path in _numbered(exp_dir, r"videos_fov_(\d+)\.tiff?"):
                    vip = exp_dir / f"vip_idx_fov_{fov}.txt"
                    if not vip.exists():
                        raise AndiFormatError(vip, f"missing: video {path.name} needs its VIP indices")
                    fovs.append(Fov(1, exp, fov, video=path, vip=vip))
    return fovs


def submission_path(sub_dir: os.PathLike | str, track: int, exp: int, fov: int | None = None) -> Path:
    """``SUB/track_T/exp_E/fov_F.txt`` (or the experiment folder when fov is None)."""
    folder = Path(sub_dir) / f"track_{track}" / f"exp_{exp}"
    return folder if fov is None else folder / f"fov_{fov}.txt"


# ----------------------------------------------------------------------------- scoring

@dataclasses.dataclass(frozen=True)
class Problem:
    """Something wrong with a submission: ``kind`` is one of missing_track, missing_file,
    malformed_file, malformed_line, missing_trajectory, unexpected_trajectory,
    duplicate_trajectory, wrong_length, out_of_range."""

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


@dataclasses.dataclass
class ExperimentScore:
    track: int
    exp: int
    model: str
    n_expected: int
    n_scored: int
    metrics: dict[str, float | None]
    state_frames: dict[int, list[int]]  # true state -> [frames, frames predicted as that state]


@dataclasses.dataclass
class ScoreReport:
    """Official metrics per experiment and per track, with the problems found."""

    experiments: list[ExperimentScore]
    problems: list[Problem]

    @property
    def complete(self) -> bool:
        return not self.problems

    def tracks(self) -> list[int]:
        return sorted({e.track for e in self.experiments})

    def overall(self, track: int) -> dict[str, float | None]:
        """As the official scorer: single-trajectory metrics averaged over experiments weighted
        by their number of (scored) trajectories, ensemble metrics plainly averaged."""
        exps = [e for e in self.experiments if e.track == track]
        out: dict[str, float | None] = {}
        for name in SINGLE_METRICS:
            pairs = [(e.metrics.get(name), e.n_scored) for e in exps if e.metrics.get(name) is not None]
            out[name] = float(np.average([p[0] for p in pairs], weights=[p[1] for p in pairs])) \
                if pairs and sum(p[1] for p in pairs) else None
        for name in ENSEMBLE_METRICS:
            vals = [e.metrics[name] for e in exps if e.metrics.get(name) is not None]
            out[name] = float(np.mean(vals)) if vals else None
        out["n_expected"] = sum(e.n_expected for e in exps)
        out["n_scored"] = sum(e.n_scored for e in exps)
        return out

    def state_recall(self, track: int) -> dict[str, dict[str, float | int | None]]:
        """Frame-level recall of each true diffusive state (frames of true state s predicted as s)."""
        totals = {s: [0, 0] for s in STATES}
        for e in self.experiments:
            if e.track == track:
                for s, (n, hit) in e.state_frames.items():
                    totals[int(s)][0] += n
                    totals[int(s)][1] += hit
        return {STATE_NAMES[s]: {"frames": n, "recall": (hit / n if n else None)} for s, (n, hit) in totals.items()}

    def to_dict(self) -> dict:
        return {
            "complete": self.complete,
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "tracks": {str(t): {"overall": self.overall(t), "state_recall": self.state_recall(t),
                                "experiments": [{"exp": e.exp, "model": e.model, "n_expected": e.n_expected,
                                                 "n_scored": e.n_scored, **e.metrics}
                                                for e in self.experiments if e.track == t]}
                       for t in self.tracks()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(type(value))


HEADERS = {"cp_rmse": "CP RMSE", "cp_jaccard": "CP JSC", "alpha_mae": "alpha MAE", "K_msle": "K MSLE",
           "state_f1": "state F1", "ens_alpha_w1": "W1 alpha", "ens_K_w1": "W1 K"}


def format_table(report: ScoreReport) -> str:
    """Plain-text table: per track the overall row and one row per experiment, then per-state
    recall and the problems."""
    names = SINGLE_METRICS + ENSEMBLE_METRICS
    head = f"{'track':>5} {'exp':>4} {'model':<15} {'scored':>9} " + " ".join(f"{HEADERS[n]:>9}" for n in names)
    lines = [head, "-" * len(head)]

    def row(track, exp, model, n_scored, n_expected, metrics):
        cells = " ".join(f"{_cell(metrics.get(n)):>9}" for n in names)
        return f"{track:>5} {exp:>4} {model:<15.15} {f'{n_scored}/{n_expected}':>9} {cells}"

    for t in report.tracks():
        for e in (e for e in report.experiments if e.track == t):
            lines.append(row(t, e.exp, e.model, e.n_scored, e.n_expected, e.metrics))
        ov = report.overall(t)
        lines.append(row(t, "all", "", ov["n_scored"], ov["n_expected"], ov))
        recall = report.state_recall(t)
        lines.append("      state recall (frames): " + ", ".join(
            f"{name} {_cell(v['recall'])} ({v['frames']})" for name, v in recall.items() if v["frames"]))
    if report.problems:
        lines.append(f"{len(report.problems)} problem(s); scores above leave these out:")
        lines += [f"  {p}" for p in report.problems]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _check_against_reference(sub: TrajectoryLabel, ref: TrajectoryLabel, check_length: bool = True) -> str | None:
    """Why a submitted line cannot be scored against its reference line, or None. Track 1
    does not check the length: a tracked VIP need not span the reference's frames."""
    if check_length and sub.T != ref.T:
        return f"trajectory {sub.idx}: T = {sub.T} but the trajectory has {ref.T} frames"
    return _value_problem(sub)


def _value_problem(sub: TrajectoryLabel) -> str | None:
    """Why a line's values are out of the official ranges, or None."""
    if any(not (0 <= a <= 2) for a in sub.alpha):
        return f"trajectory {sub.idx}: alpha outside [0, 2]: {list(sub.alpha)}"
    if any(k < 0 for k in sub.K):
        return f"trajectory {sub.idx}: negative K: {list(sub.K)}"
    if any(s not in STATES for s in sub.state):
        return f"trajectory {sub.idx}: state not in {STATES}: {list(sub.state)}"
    return None


def _labels_frame(labels: Sequence[TrajectoryLabel], offset: int):
    """Labels as the DataFrame ``utils_challenge.load_file_to_df`` builds (changepoints end with T),
    renumbered ``offset, offset+1, ...`` so several FOVs form one experiment."""
    import pandas as pd

    return pd.DataFrame({
        "traj_idx": [float(offset + i) for i in range(len(labels))],
        "Ds": [list(l.K) for l in labels],
        "alphas": [list(l.alpha) for l in labels],
        "states": [[float(s) for s in l.state] for l in labels],
        "changepoints": [[float(c) for c in (*l.cps, l.T)] for l in labels],
    })


def score_single(pairs: Sequence[tuple[TrajectoryLabel, TrajectoryLabel]]) -> dict[str, float | None]:
    """Official single-trajectory metrics of (reference, submission) pairs of one experiment."""
    from andi_datasets import utils_challenge as uc

    if not pairs:
        return {name: None for name in SINGLE_METRICS}
    df_true = _labels_frame([p[0] for p in pairs], 0)
    df_pred = _labels_frame([p[1] for p in pairs], 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = uc.error_SingleTraj_dataset(df_pred, df_true, prints=False, disable_tqdm=True)
    return {name: float(v) for name, v in zip(SINGLE_METRICS, values)}


def score_ensemble(ref: EnsembleLabel, sub: EnsembleLabel) -> dict[str, float]:
    """Official ensemble metrics (Wasserstein distances of the alpha and K mixtures)."""
    from andi_datasets import utils_challenge as uc

    true, pred = ref.matrix.copy(), sub.matrix.copy()
    # utils_challenge treats a 1-D array as a single state and normalises weights in place.
    true = true[:, 0] if true.shape[1] == 1 else true
    pred = pred[:, 0] if pred.shape[1] == 1 else pred
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_alpha, w_K = uc.error_Ensemble_dataset(true, pred)
    return {"ens_alpha_w1": float(w_alpha), "ens_K_w1": float(w_K)}


def score(sub_dir: os.PathLike | str, ref_dir: os.PathLike | str, tracks: Sequence[int] | None = None,
          ensemble: bool = True) -> ScoreReport:
    """Score a submission folder against a reference folder with the official metrics.

    ``tracks``: which tracks to score (default: every ``track_T`` of the reference).
    ``ensemble``: also the ensemble task (each call of the official W1 takes about a second).
    Raises AndiFormatError for a bad reference; submission problems go into the report.
    """
    sub_dir, ref_dir = Path(sub_dir), Path(ref_dir)
    if not ref_dir.is_dir():
        raise AndiFormatError(ref_dir, "reference folder not found")
    if tracks is None:
        tracks = [t for t in TRACKS if (ref_dir / f"track_{t}").is_dir()]
        if not tracks:
            raise AndiFormatError(ref_dir, "no track_1 or track_2 folder")
    problems: list[Problem] = []
    results: list[ExperimentScore] = []
    for track in tracks:
        exps = experiments(ref_dir / f"track_{track}")
        if not exps:
            raise AndiFormatError(ref_dir / f"track_{track}", "no exp_E folders in the reference")
        if not (sub_dir / f"track_{track}").is_dir():
            problems.append(Problem("missing_track", str(sub_dir / f"track_{track}"), "no such folder"))
        for exp, exp_dir in exps:
            results.append(_score_experiment(sub_dir, track, exp, exp_dir, problems, ensemble))
    return ScoreReport(results, problems)


def _score_experiment(sub_dir: Path, track: int, exp: int, ref_exp: Path, problems: list[Problem],
                      ensemble: bool) -> ExperimentScore:
    pairs: list[tuple[TrajectoryLabel, TrajectoryLabel]] = []
    n_expected = 0
    fovs = _numbered(ref_exp, r"traj_labs_fov_(\d+)\.txt")
    if not fovs:
        raise AndiFormatError(ref_exp, "no traj_labs_fov_F.txt files in the reference")
    for fov, ref_path in fovs:
        ref_labels, _ = read_labels(ref_path, strict=True)
        if track == 1:
            vip = set(read_vip_idx(ref_exp / f"vip_idx_fov_{fov}.txt").tolist())
            ref_labels = [l for l in ref_labels if l.idx in vip]
            if len(ref_labels) != len(vip):
                raise AndiFormatError(ref_path, f"labels missing for VIPs {sorted(vip - {l.idx for l in ref_labels})}")
        n_expected += len(ref_labels)
        sub_path = submission_path(sub_dir, track, exp, fov)
        if not sub_path.is_file():
            if (sub_dir / f"track_{track}").is_dir():
                problems.append(Problem("missing_file", str(sub_path),
                                        f"no predictions for {len(ref_labels)} trajectories"))
            continue
        try:
            sub_labels, line_problems = read_labels(sub_path, strict=False)
        except AndiFormatError as exc:
            problems.append(Problem("malformed_file", str(sub_path), exc.problem))
            continue
        problems += line_problems
        pairs += _match(sub_path, track, ref_labels, sub_labels, problems)
    metrics = score_single(pairs)
    model = ""
    ref_ens_path = ref_exp / ENSEMBLE_NAME
    if ref_ens_path.exists():
        ref_ens = read_ensemble(ref_ens_path)
        model = ref_ens.model
    metrics.update({name: None for name in ENSEMBLE_METRICS})
    if ensemble and ref_ens_path.exists():
        sub_ens_path = submission_path(sub_dir, track, exp) / ENSEMBLE_NAME
        if not sub_ens_path.is_file():
            if (sub_dir / f"track_{track}").is_dir():
                problems.append(Problem("missing_file", str(sub_ens_path), "no ensemble predictions"))
        else:
            try:
                metrics.update(score_ensemble(ref_ens, read_ensemble(sub_ens_path)))
            except AndiFormatError as exc:
                problems.append(Problem("malformed_file", str(sub_ens_path), exc.problem))
    return ExperimentScore(track, exp, model, n_expected, len(pairs), metrics, _state_frames(pairs))


def _match(sub_path: Path, track: int, ref_labels: list[TrajectoryLabel], sub_labels: list[TrajectoryLabel],
           problems: list[Problem]) -> list[tuple[TrajectoryLabel, TrajectoryLabel]]:
    ref_by_idx = {l.idx: l for l in ref_labels}
    seen: dict[int, TrajectoryLabel] = {}
    for label in sub_labels:
        if label.idx not in ref_by_idx:
            problems.append(Problem("unexpected_trajectory", str(sub_path),
                                    f"index {label.idx} is not a trajectory of the reference"
                                    + (" (track 1 takes exactly the VIP indices)" if track == 1 else "")))
        elif label.idx in seen:
            problems.append(Problem("duplicate_trajectory", str(sub_path), f"index {label.idx} appears twice"))
        else:
            why = _check_against_reference(label, ref_by_idx[label.idx], check_length=track != 1)
            if why:
                problems.append(Problem("wrong_length" if "T =" in why else "out_of_range", str(sub_path), why))
            else:
                seen[label.idx] = label
    missing = [i for i in ref_by_idx if i not in seen and i not in {l.idx for l in sub_labels}]
    if missing:
        problems.append(Problem("missing_trajectory", str(sub_path),
                                f"{len(missing)} trajectories without a line: {missing[:10]}"
                                + (" ..." if len(missing) > 10 else "")))
    return [(ref_by_idx[i], seen[i]) for i in sorted(seen)]


def _state_frames(pairs) -> dict[int, list[int]]:
    counts = {s: [0, 0] for s in STATES}
    for ref, sub in pairs:
        true, pred = ref.per_frame()["state"], sub.per_frame()["state"]
        n = min(len(true), len(pred))  # a tracked VIP (track 1) may be shorter or longer
        true, pred = true[:n], pred[:n]
        for s in STATES:
            m = true == s
            counts[s][0] += int(m.sum())
            counts[s][1] += int((pred[m] == s).sum())
    return counts


def reference_as_submission(ref_dir: os.PathLike | str, sub_dir: os.PathLike | str,
                            tracks: Sequence[int] | None = None) -> list[Path]:
    """Copy a reference's labels into submission layout (track 1: only the VIP lines) - the
    perfect submission, for checking a scorer or a pipeline end to end."""
    ref_dir, sub_dir = Path(ref_dir), Path(sub_dir)
    written = []
    for track in tracks or [t for t in TRACKS if (ref_dir / f"track_{t}").is_dir()]:
        for exp, exp_dir in experiments(ref_dir / f"track_{track}"):
            for fov, path in _numbered(exp_dir, r"traj_labs_fov_(\d+)\.txt"):
                labels, _ = read_labels(path)
                if track == 1:
                    vip = set(read_vip_idx(exp_dir / f"vip_idx_fov_{fov}.txt").tolist())
                    labels = [l for l in labels if l.idx in vip]
                written.append(write_labels(submission_path(sub_dir, track, exp, fov), labels))
            if (exp_dir / ENSEMBLE_NAME).exists():
                written.append(write_ensemble(submission_path(sub_dir, track, exp) / ENSEMBLE_NAME,
                                              read_ensemble(exp_dir / ENSEMBLE_NAME)))
    return written


# ----------------------------------------------------------------------------- writing submissions

@dataclasses.dataclass
class RunSummary:
    """What :func:`run_public` wrote: files, trajectories, and how many got a fallback line
    (the method could not handle them: too short, failed, or lost by tracking)."""

    written: list[Path] = dataclasses.field(default_factory=list)
    n_trajectories: dict[int, int] = dataclasses.field(default_factory=dict)
    n_fallback: dict[int, int] = dataclasses.field(default_factory=dict)
    fallback_reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: dict[int, float] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)

    def add_fallback(self, track: int, reason: str, n: int = 1) -> None:
        self.n_fallback[track] = self.n_fallback.get(track, 0) + n
        self.fallback_reasons[reason] = self.fallback_reasons.get(reason, 0) + n


def fallback_label(idx: int, T: int, alpha: float = 1.0, K: float = 1.0) -> TrajectoryLabel:
    """The line written for a trajectory the method cannot handle: one free segment with
    the given (by default Brownian) alpha and K - valid for the official parser."""
    return TrajectoryLabel(int(idx), (float(K),), (float(alpha),), (2,), (), max(int(T), 1))


def complete_labels(traj: st.Trajectories, labels: Sequence[TrajectoryLabel] | None, summary: RunSummary,
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
        if T is not None and label.T == T and _value_problem(label) is None:
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
            summary.add_fallback(track, "not handled by the method")
            out.append(fallback_label(idx, lengths[idx], alpha, K))
        else:
            summary.add_fallback(track, "not found by tracking")
            out.append(fallback_label(idx, median_T, alpha, K))
    return out


def run_public(public_dir: os.PathLike | str, sub_dir: os.PathLike | str, method, tracks: Sequence[int] = (2,),
               tracker=None, progress: bool = True, batch_tracks: int = 20000) -> RunSummary:
    """Write a submission for the public data in ``public_dir``.

    ``method(traj: Trajectories) -> list[TrajectoryLabel]`` predicts the segments of the
    trajectories it is given (indices = ``traj.tracks["particle"]``). Track-2 FOVs are given
    to it together, up to ``batch_tracks`` trajectories per call (a network predicts faster
    in large batches); if it fails on a batch, each FOV is retried alone.
    ``tracker(video: Path) -> Trajectories`` (track 1 only) tracks a video; its tracks carry
    ``vip`` (the VIP index, -1 for others). Track 2 gets a line for every trajectory of the
    CSV, track 1 exactly one per VIP index; the ensemble file of each experiment summarises
    every trajectory the method saw.
    """
    import time

    from tqdm import tqdm

    if 1 in tracks and tracker is None:
        raise ValueError("track 1 needs a tracker (video -> trajectories with a 'vip' column)")
    summary = RunSummary()
    fovs = find_public(public_dir, tracks)
    seen_by_exp: dict[tuple[int, int], list[TrajectoryLabel]] = {}

    def write(fov: Fov, lines: list[TrajectoryLabel], everything: list[TrajectoryLabel]) -> None:
        summary.written.append(write_labels(submission_path(sub_dir, fov.track, fov.exp, fov.fov), lines))
        summary.n_trajectories[fov.track] = summary.n_trajectories.get(fov.track, 0) + len(lines)
        seen_by_exp.setdefault((fov.track, fov.exp), []).extend(everything)

    def timed(track: int, t0: float) -> None:
        summary.seconds[track] = summary.seconds.get(track, 0.0) + time.perf_counter() - t0

    with tqdm(total=len(fovs), desc="fields of view", unit="fov", disable=not progress) as bar:
        pending: list[tuple[Fov, st.Trajectories]] = []
        track2 = [f for f in fovs if f.track == 2]
        t0 = time.perf_counter()
        for i, fov in enumerate(track2):
            pending.append((fov, read_andi_csv(fov.trajs)))
            if sum(t.n_tracks for _, t in pending) >= batch_tracks or i == len(track2) - 1:
                for (f, traj), labels in zip(pending, _method_on_batch(method, pending, summary)):
                    lines = complete_labels(traj, labels, summary, 2)
                    write(f, lines, lines)
                bar.update(len(pending))
                pending = []
                timed(2, t0)
                t0 = time.perf_counter()
        for fov in (f for f in fovs if f.track == 1):
            t0 = time.perf_counter()
            vip = read_vip_idx(fov.vip)
            try:
                traj = tracker(fov.video)
            except Exception as exc:  # noqa: BLE001 - reported; the FOV's VIPs still get (fallback) lines
                log.warning("tracking %s failed (%s); fallback lines for its VIPs", fov.video, exc)
                summary.failures.append(f"tracking {fov.video}: {type(exc).__name__}: {exc}")
                traj = _no_tracks()
            tracked_vip = _vip_tracks(traj)
            labels = (_safe_method(method, traj, fov, summary) or []) if traj.n_tracks else []
            by_particle = {l.idx: l for l in labels}
            # relabel each VIP's (longest) track with its VIP index
            vip_traj, vip_labels = _relabel_vips(traj, tracked_vip, by_particle)
            write(fov, complete_labels(vip_traj, vip_labels, summary, 1, wanted=vip,
                                       default_T=_video_frames(fov.video)), labels)
            timed(1, t0)
            bar.update()
    for (track, exp), labels in sorted(seen_by_exp.items()):
        summary.written.append(write_ensemble(submission_path(sub_dir, track, exp) / ENSEMBLE_NAME,
                                              ensemble_from_labels(labels)))
    return summary


def _method_on_batch(method, batch: list[tuple[Fov, st.Trajectories]], summary: RunSummary
                     ) -> list[list[TrajectoryLabel] | None]:
    """The method's labels for each FOV of ``batch``, from one call on all their trajectories
    (renumbered 0..n-1, then mapped back); one call per FOV if that fails."""
    if len(batch) == 1:
        return [_safe_method(method, batch[0][1], batch[0][0], summary)]
    trajs = [t for _, t in batch]
    names = sorted(set.intersection(*(set(t.points) for t in trajs)))
    offsets = np.concatenate([[0], np.cumsum([t.n_points for t in trajs])])
    combined = st.Trajectories(
        np.concatenate([[0]] + [t.offsets[1:] + o for t, o in zip(trajs, offsets[:-1])]).astype(np.int64),
        {n: np.concatenate([np.asarray(t.points[n]) for t in trajs]) for n in names},
        {"particle": np.arange(sum(t.n_tracks for t in trajs), dtype=np.int64)})
    owner = np.repeat(np.arange(len(trajs)), [t.n_tracks for t in trajs])
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


def _video_frames(path: Path, default: int = 200) -> int:
    """Frames of a video (the length given to VIPs nobody tracked); the challenge's 200 if unreadable."""
    try:
        from anomalousnet.video import Video

        with Video(path) as video:
            return int(video.n_frames)
    except Exception:  # noqa: BLE001 - only a fallback length
        return default


def _no_tracks() -> st.Trajectories:
    return st.Trajectories(np.zeros(1, np.int64), {"frame": np.zeros(0, np.int64), "x": np.zeros(0), "y": np.zeros(0)},
                           {"particle": np.zeros(0, np.int64), "vip": np.zeros(0, np.int64)})


def _safe_method(method, traj: st.Trajectories, fov: Fov, summary: RunSummary):
    """The method's labels, or None when it fails on the whole FOV (every line then falls back)."""
    try:
        return method(traj)
    except Exception as exc:  # noqa: BLE001 - reported, and every trajectory still gets a line
        log.warning("method failed on track %d exp %d fov %d (%s); fallback lines written",
                    fov.track, fov.exp, fov.fov, exc)
        summary.failures.append(f"method on track {fov.track} exp {fov.exp} fov {fov.fov}: {type(exc).__name__}: {exc}")
        return None


def _vip_tracks(traj: st.Trajectories) -> dict[int, int]:
    """VIP index -> row of its longest track (tracking can split one particle into several)."""
    if "vip" not in traj.tracks:
        raise ValueError("tracked trajectories have no 'vip' column")
    best: dict[int, int] = {}
    for row, (v, n) in enumerate(zip(traj.tracks["vip"].tolist(), traj.lengths.tolist())):
        if v >= 0 and (v not in best or n > traj.lengths[best[v]]):
            best[int(v)] = row
    return best


def _relabel_vips(traj: st.Trajectories, vip_rows: Mapping[int, int], by_particle: Mapping[int, TrajectoryLabel]):
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
    sub = st.Trajectories.from_arrays(arrays, {"particle": np.array(vips, dtype=np.int64)}) if arrays else _no_tracks()
    return sub, labels


# ----------------------------------------------------------------------------- methods

METHODS = ("model", "classical", "naive")


def model_method(spec: str = "default", options=None, batch_size: int = 1024):
    """The AnomalousNet pipeline as a method: per-frame predictions of the model bundle
    ``spec`` (:func:`anomalousnet.inference.predict`), then change points and segments
    (:func:`anomalousnet.changepoints.segment_trajectories`). Tracks for which the network
    only gives its documented fallback (too short) get no label here, so the submission
    writer counts them as fallbacks."""
    from anomalousnet.changepoints import SegmentOptions, segment_trajectories
    from anomalousnet.inference import STATE_PROB_COLUMNS, load_bundle, predict

    bundle = load_bundle(spec)
    options = options or SegmentOptions()

    def method(traj: st.Trajectories) -> list[TrajectoryLabel]:
        pred = predict(bundle, traj, batch_size=batch_size)
        points = dict(traj.points)
        points.update({k: pred[k] for k in ("pred_alpha", "pred_K", "pred_state", *STATE_PROB_COLUMNS)})
        labels = labels_from_segments(segment_trajectories(st.Trajectories(traj.offsets, points, traj.tracks),
                                                           options))
        fallback = np.asarray(pred.get("fallback", np.zeros(traj.n_tracks, bool)), bool)
        skip = set(traj.tracks["particle"][fallback].tolist())
        return [l for l in labels if l.idx not in skip]

    method.bundle = bundle
    return method


def make_method(name: str, model: str = "default"):
    """``model`` (the pipeline with bundle ``model``), ``classical`` or ``naive`` -> a method
    (Trajectories -> list of TrajectoryLabel)."""
    from anomalousnet import baselines

    if name == "model":
        return model_method(model)
    if name == "classical":
        return baselines.classical
    if name == "naive":
        return baselines.naive
    raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")


def default_tracker(options=None, store_dir: os.PathLike | str | None = None):
    """A tracker for track 1: one video -> Trajectories with a per-track ``vip`` column, through
    :func:`anomalousnet.tracking.track_video` (trackpy). With ``store_dir`` the shard of each
    video is kept there (named by :func:`anomalousnet.tracking.shard_name`) and reused when
    complete - see :func:`track_public` to track every video in parallel first; without it,
    each video is tracked into a temporary shard."""
    import tempfile

    from anomalousnet import tracking

    options = options or tracking.TrackOptions()

    def tracker(video: Path) -> st.Trajectories:
        if store_dir is not None:
            shard = Path(store_dir) / tracking.shard_name(video)
            if st.needs_writing(shard):
                Path(store_dir).mkdir(parents=True, exist_ok=True)
                tracking.track_video(video, shard, options, command="andi run")
            return st.read_shard(shard).trajectories
        with tempfile.TemporaryDirectory(prefix="andi-track-") as tmp:
            shard = tracking.track_video(video, Path(tmp) / "video.h5", options, command="andi run")
            return st.read_shard(shard).trajectories

    return tracker


def track_public(public_dir: os.PathLike | str, store_dir: os.PathLike | str, options=None,
                 workers: int | None = None, progress: bool = True):
    """Track every track-1 video of the public data into ``store_dir`` (one shard per video,
    Dask over videos, complete shards kept) with :func:`anomalousnet.tracking.track_videos`;
    :func:`default_tracker` with the same ``store_dir`` then reads them. Returns its summary."""
    from anomalousnet import tracking

    videos = [str(f.video) for f in find_public(public_dir, [1])]
    return tracking.track_videos(videos, store_dir, options or tracking.TrackOptions(), workers=workers,
                                 progress=progress)
