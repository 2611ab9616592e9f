"""TIFF / OME-TIFF video stacks: the one reader (frame ranges, memory-mapped when possible).
Synthetic videos with known positions are written by :mod:`anomalousnet.simulation.synthetic_video`.

Reading never loads a whole stack: an uncompressed, contiguous stack is memory-mapped
(``tifffile.memmap``), anything else (compressed, tiled, one page per series) is decoded
page by page for the frames asked for. Accepted shapes are ``(T, Y, X)`` and ``(T, Y, X, 1)``
(singleton axes such as OME's ``Z``/``C`` are squeezed); a 2D image, an RGB or
multichannel stack, an empty or unreadable file raise :class:`VideoError` naming the file.

AnDi-2 track-1 videos (``andi_datasets.utils_videos.transform_to_video``) start with a page
that is not a frame: a VIP label image, background 255, VIP ``i`` drawn as a small block of
value ``i`` at its position in the first movie frame; pages 1..T are the frames. Image rows
are the simulator's x, columns its y; in trackpy's convention the column is ``x`` and the
row ``y``. :class:`Video` recognises that page (or is told to expect it) and exposes its
VIP marks as ``vip_marks``.
"""
from __future__ import annotations

import contextlib
import logging
import mmap
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from anomalousnet.core.errors import InputError

VIP_BACKGROUND = 255  # label value of the background in an AnDi VIP label page


class VideoError(InputError):
    """A video file cannot be used as a (T, Y, X) stack; names the file and the problem."""


# ----------------------------------------------------------------------------- reading

def looks_like_vip_labels(image: np.ndarray) -> bool:
    """Whether a page is an AnDi VIP label image rather than a movie frame.

    Such a page is (almost) all 255 with a few small blocks of values < 255 (one per VIP);
    a real frame is never 95 % saturated at exactly 255.
    """
    image = np.asarray(image)
    if image.dtype.kind not in "iu" or image.size == 0:
        return False
    background = image == VIP_BACKGROUND
    if background.mean() < 0.95:
        return False
    values = np.unique(image[~background])
    return bool(np.all(values < VIP_BACKGROUND) and (~background).sum() <= 16 * max(len(values), 1))


def vip_marks(labels: np.ndarray) -> dict[int, tuple[float, float]]:
    """VIP index -> centre ``(x, y)`` of its block in a label image (x = column, y = row, px)."""
    labels = np.asarray(labels)
    marks = {}
    for value in np.unique(labels[labels != VIP_BACKGROUND]):
        rows, cols = np.nonzero(labels == value)
        marks[int(value)] = (float(cols.mean()), float(rows.mean()))
    return marks


class Video:
    """A TIFF stack opened for reading frames; use as a context manager.

    Attributes: ``path``, ``n_frames``, ``frame_shape`` ``(Y, X)``, ``dtype``, ``memmapped``
    (True when frames come from a memory map), ``vip_labels`` (the AnDi label page or None)
    and ``vip_marks`` (VIP index -> ``(x, y)``; empty without a label page).

    ``andi_vip``: None recognises an AnDi VIP label page by its content, True requires one
    (error if page 0 is not a label image), False treats every page as a frame.
    Raises :class:`VideoError` for anything that is not a usable ``(T, Y, X)`` stack.
    """

    def __init__(self, path: os.PathLike | str, andi_vip: bool | None = None):
        import tifffile

        self.path = Path(path)
        if not self.path.exists():
            raise VideoError(path, "no such file")
        if self.path.is_dir():
            raise VideoError(path, "is a directory, not a TIFF file")
        if self.path.stat().st_size == 0:
            raise VideoError(path, "empty file (0 bytes)")
        try:
            self._tif = tifffile.TiffFile(self.path)
        except Exception as exc:  # noqa: BLE001 - tifffile raises many types for bad files
            raise VideoError(path, f"not a readable TIFF file: {exc}") from None
        try:
            with _tifffile_errors() as errors:
                n_pages = len(self._tif.pages)  # walks the whole page chain: a cut one shows here
                self._tif.series  # noqa: B018 - parsed now, so layout errors are caught here
            if errors:
                raise VideoError(path, f"truncated or damaged TIFF ({errors[0]})")
            last = self._tif.pages[n_pages - 1] if n_pages else None
            if last is not None and hasattr(last, "dataoffsets") and last.dataoffsets and \
                    last.dataoffsets[-1] + last.databytecounts[-1] > self.path.stat().st_size:
                raise VideoError(path, "truncated or damaged TIFF (last page's data lie beyond the end of the file)")
            self._open(andi_vip)
        except VideoError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - truncated or damaged files fail anywhere in parsing
            self.close()
            raise VideoError(path, f"unreadable TIFF ({type(exc).__name__}: {exc})") from None

    # Layouts: (a) one series holding the stack (tifffile, ImageJ, OME, most microscopes);
    # (b) one series per page, as imageio writes AnDi videos (page 0 has another shape).
    def _open(self, andi_vip: bool | None) -> None:
        series = self._tif.series
        if not series:
            raise VideoError(self.path, "no image data (empty TIFF)")
        shapes = [_frame_shape(self.path, s) for s in series]
        self._memmap = self._mmap = None
        if len(series) == 1:
            self._series = series[0]
            self._page_list = None
            self._n_pages = _time_length(self.path, self._series)
            if self._series.dataoffset is not None:  # contiguous and uncompressed: map it, read nothing
                import tifffile

                try:
                    mm = tifffile.memmap(self.path, series=0, mode="r")
                    self._memmap = mm.reshape((self._n_pages,) + shapes[0])
                    self._mmap = getattr(mm, "_mmap", None)
                except (ValueError, OSError):
                    self._memmap = None
        else:
            if any(len(s.pages) != 1 or _time_length(self.path, s) != 1 for s in series):
                raise VideoError(self.path, f"{len(series)} image series of several frames each; expected one "
                                            "stack (split multi-position files into one file per position)")
            # Only page 0 may differ: it is the AnDi label page there; frames must agree.
            if len(set(shapes[1:])) > 1:
                raise VideoError(self.path, f"pages have different shapes {sorted(set(shapes))}; not a stack")
            self._series = None
            self._page_list = [s.pages[0] for s in series]
            self._n_pages = len(series)
        if self._n_pages == 0:
            raise VideoError(self.path, "empty stack (no frames)")
        first = self._read_pages(0, 1)[0]
        is_labels = looks_like_vip_labels(first)
        if andi_vip is True and not is_labels:
            raise VideoError(self.path, "first page is not an AnDi VIP label image (background 255, VIP i as "
                                        "blocks of value i), but one was required (--andi-vip)")
        self._offset = 1 if (is_labels if andi_vip is None else andi_vip) else 0
        self.vip_labels = first if self._offset else None
        self.vip_marks = vip_marks(first) if self._offset else {}
        frame_shapes = set(shapes[self._offset:]) if self._page_list is not None else {shapes[0]}
        if len(frame_shapes) != 1:
            raise VideoError(self.path, f"frames have different shapes {sorted(frame_shapes)}; not a stack")
        self.frame_shape = frame_shapes.pop()
        if self.vip_labels is not None and self.vip_labels.shape != self.frame_shape:
            raise VideoError(self.path, f"VIP label page has shape {self.vip_labels.shape}, frames {self.frame_shape}")
        self.n_frames = self._n_pages - self._offset
        if self.n_frames < 2:
            what = "a single 2D image" if self._n_pages == 1 else f"{self.n_frames} frame(s) after the VIP label page"
            raise VideoError(self.path, f"is {what}, not a video stack (need >= 2 frames, shape (T, Y, X))")
        self.dtype = np.dtype(first.dtype)
        self.memmapped = self._memmap is not None

    def _read_pages(self, start: int, stop: int) -> np.ndarray:
        """Pages ``start:stop`` of the file (label page included) as ``(n, Y, X)``."""
        if self._memmap is not None:
            return self._memmap[start:stop]
        if self._page_list is not None:
            pages = [np.asarray(p.asarray()) for p in self._page_list[start:stop]]
            return np.stack([p.reshape(p.shape[:2]) for p in pages]) if pages else np.zeros((0, 0, 0))
        data = self._tif.asarray(key=range(start, stop), series=0)
        return data.reshape((stop - start,) + _frame_shape(self.path, self._series))

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``start:stop`` as an array ``(n, Y, X)``; only those frames are read."""
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        start = max(0, start)
        if start >= stop:
            return np.zeros((0,) + self.frame_shape, self.dtype)
        try:
            return np.asarray(self._read_pages(start + self._offset, stop + self._offset))
        except Exception as exc:  # noqa: BLE001 - a truncated file fails only when its pages are read
            raise VideoError(self.path, f"cannot read frames {start}..{stop - 1} ({type(exc).__name__}: {exc}); "
                                        "the file is truncated or damaged") from None

    def chunks(self, max_bytes: int = 64 << 20) -> Iterator[tuple[int, np.ndarray]]:
        """``(first_frame, frames)`` blocks of at most ``max_bytes`` (at least one frame each)."""
        per_frame = int(np.prod(self.frame_shape)) * self.dtype.itemsize
        step = max(1, int(max_bytes // max(per_frame, 1)))
        for start in range(0, self.n_frames, step):
            yield start, self.frames(start, start + step)
            self.release()

    def release(self) -> None:
        """Unmap the pages read so far (they stay in the OS page cache): reading a memory-mapped
        stack block by block would otherwise leave all of it resident in this process."""
        if self._mmap is not None and hasattr(self._mmap, "madvise"):
            self._mmap.madvise(mmap.MADV_DONTNEED)

    def sample_indices(self, n: int) -> np.ndarray:
        """``n`` frame indices spread evenly over the video (for estimating parameters)."""
        return np.unique(np.linspace(0, self.n_frames - 1, min(n, self.n_frames)).round().astype(int))

    def close(self) -> None:
        self._memmap = self._mmap = None
        tif = getattr(self, "_tif", None)
        if tif is not None:
            tif.close()

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        return (f"Video({str(self.path)!r}, n_frames={self.n_frames}, frame_shape={self.frame_shape}, "
                f"dtype={self.dtype}, memmapped={self.memmapped}, vips={len(self.vip_marks)})")


@contextlib.contextmanager
def _tifffile_errors():
    """Collect the errors tifffile logs (instead of raising) while it parses a damaged file."""
    errors: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            errors.append(record.getMessage())

    handler = Collect(level=logging.ERROR)
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield errors
    finally:
        logger.removeHandler(handler)


def _frame_shape(path: Path, series) -> tuple[int, int]:
    """``(Y, X)`` of a series; rejects RGB and multichannel data."""
    axes, shape = series.axes, series.shape
    for axis, size in zip(axes, shape):
        if axis == "S" and size > 1:
            raise VideoError(path, f"RGB or multi-sample image (axes {axes}, shape {shape}); expected a greyscale "
                                   "stack (T, Y, X)")
        if axis == "C" and size > 1:
            raise VideoError(path, f"{size} channels (axes {axes}, shape {shape}); expected one channel: split "
                                   "the channels into separate files")
    if "Y" not in axes or "X" not in axes:
        raise VideoError(path, f"no Y/X image axes (axes {axes}, shape {shape})")
    return int(shape[axes.index("Y")]), int(shape[axes.index("X")])


def _time_length(path: Path, series) -> int:
    """Number of frames in a series: the one non-singleton axis besides Y and X (or 1)."""
    axes, shape = series.axes, series.shape
    # A trailing singleton after X, e.g. (T, Y, X, 1), is a sample/channel axis.
    others = [(a, n) for i, (a, n) in enumerate(zip(axes, shape))
              if a not in "YX" and not (i > axes.index("X") and n == 1)]
    big = [(a, n) for a, n in others if n > 1]
    if len(big) > 1:
        raise VideoError(path, f"several non-spatial axes of size > 1 (axes {axes}, shape {shape}); expected one "
                               "time axis, (T, Y, X) or (T, Y, X, 1)")
    if any(a in "S" for a, _ in big):
        raise VideoError(path, f"RGB or multi-sample image (axes {axes}, shape {shape})")
    return big[0][1] if big else 1
