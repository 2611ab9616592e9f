"""Synthetic fluorescence videos of Brownian particles with known positions (tests, benchmarks).

Written as TIFF stacks the reader (:class:`anomalousnet.io.video.Video`) accepts, in one
series or page by page as AnDi-2 videos are, optionally with an AnDi-style VIP label page.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator

import numpy as np

from anomalousnet.io.video import VIP_BACKGROUND


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
    """A synthetic fluorescence video of Brownian particles with known positions.

    Particles are Gaussian spots (``sigma_px``, peak ``amplitude`` counts above a uniform
    ``background``) rendered at pixel centres (pixel ``(row, col)`` centre = ``(y, x)``,
    trackpy's convention), with Poisson shot noise. They diffuse with coefficient ``D``
    (px^2/frame), reflected at ``margin`` px from the borders, and each is invisible in a
    frame with probability ``blink`` (a gap the tracker must bridge). Frames are rendered
    one at a time, so arbitrarily large stacks can be written with bounded memory.
    """

    n_frames: int = 50
    shape: tuple[int, int] = (64, 64)
    n_particles: int = 10
    D: float = 0.3
    sigma_px: float = 1.2
    amplitude: float = 200.0
    background: float = 100.0
    blink: float = 0.0
    margin: float = 6.0
    min_separation: float = 8.0
    seed: int = 0
    dtype: str = "uint16"

    def truth(self):
        """True positions as a trackpy-style table: particle, frame, x (column), y (row), visible."""
        import pandas as pd

        rng = np.random.default_rng(self.seed)
        (ny, nx), m = self.shape, self.margin
        start = _separated_points(rng, self.n_particles, (m, nx - 1 - m), (m, ny - 1 - m), self.min_separation)
        steps = rng.normal(0, math.sqrt(2 * self.D), (self.n_frames - 1, self.n_particles, 2))
        xy = np.concatenate([start[None], steps]).cumsum(axis=0)
        for k, (lo, hi) in enumerate([(m, nx - 1 - m), (m, ny - 1 - m)]):
            xy[..., k] = _reflect(xy[..., k], lo, hi)
        visible = rng.random((self.n_frames, self.n_particles)) >= self.blink
        visible[0] = visible[-1] = True  # gaps only inside a track, where linking must bridge them
        frame, particle = np.meshgrid(np.arange(self.n_frames), np.arange(self.n_particles), indexing="ij")
        return pd.DataFrame({"particle": particle.ravel(), "frame": frame.ravel(), "x": xy[..., 0].ravel(),
                             "y": xy[..., 1].ravel(), "visible": visible.ravel()}
                            ).sort_values(["particle", "frame"], ignore_index=True)

    def render(self, positions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One frame with spots at ``positions`` (n, 2) of (x, y), with Poisson noise."""
        ny, nx = self.shape
        image = np.full(self.shape, float(self.background))
        half = int(math.ceil(4 * self.sigma_px))
        for x, y in positions:
            c0, c1 = max(0, int(x) - half), min(nx, int(x) + half + 2)
            r0, r1 = max(0, int(y) - half), min(ny, int(y) + half + 2)
            cols, rows = np.arange(c0, c1) - x, np.arange(r0, r1) - y
            image[r0:r1, c0:c1] += self.amplitude * np.exp(-(rows[:, None] ** 2 + cols[None, :] ** 2)
                                                           / (2 * self.sigma_px ** 2))
        info = np.iinfo(self.dtype)
        return np.clip(rng.poisson(image), info.min, info.max).astype(self.dtype)

    def frames(self, truth=None) -> Iterator[np.ndarray]:
        """The frames, one by one (deterministic for a given seed)."""
        truth = self.truth() if truth is None else truth
        rng = np.random.default_rng([self.seed, 1])
        by_frame = truth[truth["visible"]].groupby("frame")
        groups = {f: g[["x", "y"]].to_numpy() for f, g in by_frame}
        for t in range(self.n_frames):
            yield self.render(groups.get(t, np.zeros((0, 2))), rng)

    def vip_label_image(self, truth, vips: int) -> np.ndarray:
        """An AnDi-style VIP label page: 255 background, particle ``i < vips`` as a 2x2 block of value ``i``
        at its position in frame 0."""
        labels = np.full(self.shape, VIP_BACKGROUND, np.uint8)
        first = truth[truth["frame"] == 0].set_index("particle")
        for i in range(vips):
            x, y = first.loc[i, "x"], first.loc[i, "y"]
            r, c = int(round(y - 0.5)), int(round(x - 0.5))  # the 2x2 block whose centre is nearest (x, y)
            labels[r:r + 2, c:c + 2] = i
        return labels

    def write(self, path: os.PathLike | str, vips: int = 0, compression: str | None = None,
              layout: str = "stack"):
        """Write the video as a TIFF file and return the truth table.

        ``layout``: ``"stack"`` (one (T, Y, X) series, memory-mappable when uncompressed),
        ``"andi"`` (one series per page, as AnDi-2 videos are written: with ``vips`` > 0 a
        VIP label page comes first). ``compression`` (e.g. ``"zlib"``) forces page-by-page
        reading. With ``layout="stack"`` and ``vips`` > 0 the label page is the stack's first page.
        """
        import tifffile

        truth = self.truth()
        frames = self.frames(truth)
        if vips:
            labels = self.vip_label_image(truth, vips)
            if np.dtype(self.dtype) != np.uint8:
                labels = labels.astype(self.dtype)
            frames = _chain([labels], frames)
        n_pages = self.n_frames + (1 if vips else 0)
        if layout == "stack":
            tifffile.imwrite(path, data=frames, shape=(n_pages,) + tuple(self.shape), dtype=self.dtype,
                             compression=compression, photometric="minisblack")
        elif layout == "andi":
            with tifffile.TiffWriter(path) as tif:
                for k, page in enumerate(frames):
                    # Like imageio: the label page as (Y, X, 1), frames as (Y, X), each its own series.
                    tif.write(page[..., None] if (vips and k == 0) else page, compression=compression,
                              photometric="minisblack", metadata={})
        else:
            raise ValueError(f"layout must be 'stack' or 'andi', not {layout!r}")
        return truth


def _chain(first, rest):
    yield from first
    yield from rest


def _reflect(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold values into [lo, hi] as reflecting walls do."""
    span = hi - lo
    folded = np.mod(values - lo, 2 * span)
    return lo + np.where(folded > span, 2 * span - folded, folded)


def _separated_points(rng, n: int, xr, yr, min_distance: float, tries: int = 10_000) -> np.ndarray:
    if n == 0:
        return np.zeros((0, 2))
    points = []
    for _ in range(tries):
        p = np.array([rng.uniform(*xr), rng.uniform(*yr)])
        if all(np.hypot(*(p - q)) >= min_distance for q in points):
            points.append(p)
            if len(points) == n:
                return np.array(points)
    raise ValueError(f"cannot place {n} particles {min_distance} px apart in a {xr} x {yr} px field")
