"""Network inputs from trajectories: displacements, explicit scaling, fixed-length windows, stitching.

The networks see fixed-length windows of ``length`` frames (208 by default: >= the 200
frames of an AnDi-2 track, divisible by 16 so three or four poolings of 2 divide it).
Per frame ``t`` of a window the input has three channels::

    dx(t) / s,  dy(t) / s,  valid(t)

where ``dx(t) = x(t) - x(t-1)`` (0 at the window's first frame), ``valid`` is 1 where that
step was measured and 0 on padding and on steps that touch a frame tracking interpolated (a
particle not seen: missing data, not motion; the step and its input are zeroed; a frame
spent inside a merged spot keeps that spot's measured position), and ``s`` is the window's **scale**: the root-mean-square step per
axis over the window's displacements. Because the inputs are divided by ``s`` they are
identical for a trajectory and the same trajectory with every coordinate multiplied by
``c``; the networks predict alpha and the state (scale-free) and ``K / s**2`` (the
*normalised* K), and :func:`denormalise_K` multiplies by ``s**2``. So predicted K scales as
``c**2`` and alpha and the state do not change, by construction; the training targets are
normalised the same way (:func:`training_batch`).

Trajectories longer than ``length`` are cut into overlapping windows (stride
``length - overlap``, the last window aligned to the end) and the per-window predictions
are averaged back with weights that fall off towards the window edges (:func:`stitch`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from anomalousnet.core.names import FREE

CHANNELS = ("dx/s", "dy/s", "valid")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """How trajectories become network inputs.

    length: frames per window (the network's input length; divisible by 2**levels).
    overlap: frames shared by consecutive windows of a long trajectory.
    min_points: shortest trajectory (in positions) sent to the network; shorter ones get
        the fallback values of :func:`fallback_values`.
    """

    length: int = 208
    overlap: int = 64
    min_points: int = 3

    def __post_init__(self):
        if self.length < 8 or not 0 <= self.overlap < self.length or self.min_points < 2:
            raise ValueError(f"invalid feature configuration {self}")

    @property
    def stride(self) -> int:
        return self.length - self.overlap

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def displacements(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Frame-to-frame displacements, shape (n, 2); row 0 is (0, 0) so rows align with positions."""
    d = np.zeros((len(x), 2), dtype=np.float64)
    d[1:, 0] = np.diff(x)
    d[1:, 1] = np.diff(y)
    return d


def step_scale(disp: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Root-mean-square step per axis over each window's real displacements (row 0 excluded).

    ``disp`` (..., L, 2), ``valid`` (..., L) of 0/1. A window without motion (all steps zero,
    or a single position) has scale 1, so its inputs stay zero instead of dividing by zero.
    """
    steps = valid.copy()
    steps[..., 0] = 0  # the first row is a placeholder, not a step
    n = steps.sum(axis=-1)
    ms = (disp ** 2 * steps[..., None]).sum(axis=(-1, -2)) / np.maximum(2 * n, 1)
    s = np.sqrt(ms)
    return np.where(s > 0, s, 1.0)


def network_input(disp: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled network input (..., L, 3) float32 and the scale per window (...,) float64."""
    s = step_scale(disp, valid)
    feats = np.concatenate([disp / s[..., None, None], valid[..., None]], axis=-1) * valid[..., None]
    return feats.astype(np.float32), s


def denormalise_K(K_norm: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """K in the trajectory's units from the network's normalised K (``K / s**2``)."""
    return K_norm * scale ** 2


def window_starts(n: int, config: FeatureConfig) -> np.ndarray:
    """Start frames of the windows covering ``n`` positions (one window if n <= length)."""
    if n <= config.length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n - config.length, config.stride, dtype=np.int64)
    return np.append(starts, n - config.length)


@dataclasses.dataclass(frozen=True)
class Windows:
    """Fixed-length windows of many trajectories, ready for the networks.

    inputs (W, L, 3) float32; valid (W, L) float32, 1 on the window's points (padding 0; a
    filled point is a point here, predicted and stitched, though its steps are not inputs);
    scale (W,) float64; track (W,) index of the trajectory each window comes from; start
    (W,) its first point within the trajectory.
    """

    inputs: np.ndarray
    valid: np.ndarray
    scale: np.ndarray
    track: np.ndarray
    start: np.ndarray


def window_layout(offsets: np.ndarray, tracks: np.ndarray, config: FeatureConfig = FeatureConfig()
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the windows of the trajectories ``tracks`` (of CSR ``offsets``) lie: per window
    its track, its first point within the track and its number of real points (<= length)."""
    track_of, start_of = [], []
    for i in tracks:
        s = window_starts(int(offsets[i + 1] - offsets[i]), config)
        track_of.append(np.full(len(s), i, dtype=np.int64))
        start_of.append(s)
    track_of = np.concatenate(track_of) if track_of else np.zeros(0, np.int64)
    start_of = np.concatenate(start_of) if start_of else np.zeros(0, np.int64)
    lengths = np.minimum(offsets[track_of + 1] - offsets[track_of] - start_of, config.length)
    return track_of, start_of, lengths


def make_windows(x: np.ndarray, y: np.ndarray, offsets: np.ndarray, tracks: np.ndarray,
                 config: FeatureConfig = FeatureConfig(), observed: np.ndarray | None = None) -> Windows:
    """Windows for the trajectories ``tracks`` of a CSR set of positions (``x``, ``y``, ``offsets``).

    ``observed`` (per point, optional): False where tracking interpolated the position
    (:func:`anomalousnet.core.trajectories.measured_points`); steps touching such points are
    missing inputs (see the module docstring)."""
    track_of, start_of, lengths = window_layout(offsets, tracks, config)
    t = np.arange(config.length)
    inside = t[None, :] < lengths[:, None]
    idx = (offsets[track_of] + start_of)[:, None] + np.where(inside, t[None, :], 0)
    disp = masked_displacements(x[idx], y[idx], inside)
    steps = inside if observed is None else measured_steps(inside, np.asarray(observed, bool)[idx])
    inputs, scale = network_input(disp, steps.astype(np.float64))
    return Windows(inputs, inside.astype(np.float32), scale, track_of, start_of)


def measured_steps(inside: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Which window frames (n, L) hold a measured step: inside the window, the point observed
    and (after the first frame) the point before it observed too."""
    steps = inside & observed
    steps[:, 1:] &= observed[:, :-1]
    return steps


def masked_displacements(px: np.ndarray, py: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Frame-to-frame displacements (n, L, 2) of windowed positions (n, L); the first frame
    and padding frames (``valid`` False) get zero."""
    disp = np.zeros(px.shape + (2,))
    disp[:, 1:, 0] = np.diff(px, axis=1)
    disp[:, 1:, 1] = np.diff(py, axis=1)
    return disp * valid[..., None]


def edge_weights(config: FeatureConfig) -> np.ndarray:
    """Stitching weight per window frame: low at the edges (less context), 1 in the middle."""
    ramp = max(config.overlap // 2, 1)
    t = np.arange(config.length)
    return np.minimum(1.0, np.minimum(t + 1, config.length - t) / ramp)


def stitch(values: np.ndarray, windows: Windows, offsets: np.ndarray, config: FeatureConfig = FeatureConfig()
           ) -> tuple[np.ndarray, np.ndarray]:
    """Average per-window values (W, L, ...) back onto the points: returns (sums, weights).

    ``sums`` has shape (n_points, ...) over the CSR positions, ``weights`` (n_points,); points of
    tracks without windows get weight 0. Divide ``sums`` by ``weights`` where the weight is > 0.
    """
    w = edge_weights(config)[None, :] * windows.valid
    n_points = int(offsets[-1])
    t = np.arange(config.length)
    idx = (offsets[windows.track] + windows.start)[:, None] + t[None, :]
    keep = windows.valid > 0
    flat_idx = idx[keep]
    flat_w = w[keep]
    sums = np.zeros((n_points,) + values.shape[2:], dtype=np.float64)
    np.add.at(sums, flat_idx, values[keep] * flat_w.reshape((-1,) + (1,) * (values.ndim - 2)))
    weights = np.bincount(flat_idx, weights=flat_w, minlength=n_points)
    return sums, weights


def fallback_values(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """Values for a trajectory too short for the network: alpha 1, free state, and K from its steps.

    K = mean squared 2-D step / 4 (Brownian motion: MSD(1 frame) = 4 K), or 1.0 for a single
    position (nothing to measure; documented, finite so downstream files stay valid).
    """
    if len(x) < 2:
        return 1.0, 1.0, FREE
    msd = float(np.mean(np.diff(x) ** 2 + np.diff(y) ** 2))
    return 1.0, msd / 4.0, FREE


# ----------------------------------------------------------------------------- training

@dataclasses.dataclass(frozen=True)
class TrainingWindows:
    """Labelled training windows (positions, not yet displacements; cropped per batch).

    x, y (N, L) float64 positions, padded with the last position; alpha, K (N, L) float32;
    state (N, L) int8; length (N,) real frames of each window.
    """

    x: np.ndarray
    y: np.ndarray
    alpha: np.ndarray
    K: np.ndarray
    state: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return len(self.length)

    def subset(self, index: np.ndarray) -> "TrainingWindows":
        return TrainingWindows(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    @staticmethod
    def concatenate(parts: list["TrainingWindows"]) -> "TrainingWindows":
        return TrainingWindows(*(np.concatenate([getattr(p, f.name) for p in parts])
                                 for f in dataclasses.fields(TrainingWindows)))


def training_windows(traj, config: FeatureConfig = FeatureConfig()) -> TrainingWindows:
    """Cut labelled trajectories (a store.Trajectories with alpha, K, state) into windows.

    Tracks longer than the window are split like at inference (overlapping windows); tracks
    shorter than ``config.min_points`` are dropped.
    """
    offsets = traj.offsets
    keep = np.flatnonzero(np.diff(offsets) >= config.min_points)
    track_of, start_of, lengths = window_layout(offsets, keep, config)
    t = np.arange(config.length)
    idx = (offsets[track_of] + start_of)[:, None] + np.minimum(t[None, :], lengths[:, None] - 1)
    p = traj.points
    return TrainingWindows(np.asarray(p["x"], np.float64)[idx], np.asarray(p["y"], np.float64)[idx],
                           np.asarray(p["alpha"], np.float32)[idx], np.asarray(p["K"], np.float32)[idx],
                           np.asarray(p["state"], np.int8)[idx], lengths.astype(np.int64))


@dataclasses.dataclass(frozen=True)
class Batch:
    """One training batch: inputs (B, L, 3); targets alpha, K_norm (B, L) float32, state (B, L) int32;
    mask (B, L) float32 (1 on real frames)."""

    inputs: np.ndarray
    alpha: np.ndarray
    K_norm: np.ndarray
    state: np.ndarray
    mask: np.ndarray

    def target(self, name: str) -> np.ndarray:
        return {"alpha": self.alpha, "K": self.K_norm, "state": self.state}[name]


def tracking_gaps(crop: np.ndarray, L: int, rng: np.random.Generator, rate: float,
                  max_gap: int = 8) -> np.ndarray:
    """Random filled-in frames (B, L) like those tracking leaves: about ``rate`` gaps per 100
    frames, each 1 to ``max_gap`` frames long (geometric, half of them one frame, as measured
    on tracked AnDi-2 videos), never at a window's first or last real frame."""
    filled = np.zeros((len(crop), L), bool)
    starts = rng.random((len(crop), L)) < rate / 100.0
    for b, t in zip(*np.nonzero(starts)):
        g = min(int(rng.geometric(0.5)), max_gap)
        if 1 <= t and t + g < crop[b]:
            filled[b, t:t + g] = True
    return filled


def training_batch(windows: TrainingWindows, rng: np.random.Generator | None, config: FeatureConfig = FeatureConfig(),
                   min_crop: int = 10, gap_rate: float = 0.0) -> Batch:
    """Network inputs and normalised targets for a set of training windows.

    With ``rng`` (training), each window is randomly cropped to a length between
    ``min_crop`` and its own (half of them kept whole) so the networks learn short tracks
    too, rotated by a random angle (diffusion is isotropic), and given ``gap_rate`` gaps per
    100 frames (:func:`tracking_gaps`: their steps are missing inputs, their labels are
    still learnt, as at a tracked particle's filled frames); without ``rng`` (validation)
    windows are used whole, unrotated, without gaps, so the figures are reproducible.
    """
    B, L = windows.x.shape
    n = windows.length
    if rng is not None:
        lo = np.minimum(min_crop, n)
        crop = rng.integers(lo, n + 1)
        crop = np.where(rng.random(B) < 0.5, n, crop)
        start = (rng.random(B) * (n - crop + 1)).astype(np.int64)
        angle = rng.uniform(0, 2 * np.pi, B)
    else:
        crop, start, angle = n, np.zeros(B, np.int64), np.zeros(B)
    t = np.arange(L)
    valid = t[None, :] < crop[:, None]
    idx = start[:, None] + np.minimum(t[None, :], crop[:, None] - 1)
    rows = np.arange(B)[:, None]
    px, py = windows.x[rows, idx], windows.y[rows, idx]
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    px, py = c * px - s * py, s * px + c * py
    disp = masked_displacements(px, py, valid)
    validf = valid.astype(np.float64)
    steps = valid
    if rng is not None and gap_rate > 0:
        steps = measured_steps(valid, ~tracking_gaps(crop, L, rng, gap_rate))
    inputs, scale = network_input(disp, steps.astype(np.float64))
    K_norm = windows.K[rows, idx] / (scale[:, None] ** 2)
    return Batch(inputs, windows.alpha[rows, idx] * valid, (K_norm * valid).astype(np.float32),
                 (windows.state[rows, idx] * valid).astype(np.int32), validf.astype(np.float32))
