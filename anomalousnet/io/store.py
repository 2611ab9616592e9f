"""HDF5 stores, schema version 1: one writer, one reader and one validator, side by side.

A store is a directory of shard files plus an index file (``index.h5``):

* Each shard is one HDF5 file (HDF5 has no safe concurrent writers). It is written
  under a temporary name (``.NAME.tmp``) and renamed when whole, so a shard on disk is
  either complete or absent; commands skip complete shards when re-run (resume).
* The index lists the complete shards (name, number of tracks and points) and links
  them with HDF5 external links, so ``h5py.File("index.h5")["shards/NAME"]`` opens any
  shard. Only the driver process writes it, after each shard is renamed.

Layout of a shard (trackpy vocabulary, tidy long form, sorted by particle then frame)::

    /                       attrs: schema, schema_version, kind, package_version,
                                   created_utc, command, parameters, source_path,
                                   source_sha256, units, pixel_size_um, frame_interval_s
    /tracks/offsets         int64 (n_tracks + 1,)  CSR offsets into /points
    /tracks/particle        int64 (n_tracks,)      + optional per-track columns
    /points/frame           int64 (n_points,)      one position per frame
    /points/x, /points/y    float64 (n_points,)    + optional per-point columns
                                                   (labels: alpha, K, state; predictions: pred_*)
    /tables/NAME/COLUMN     optional tables of equal-length columns (segments, ensemble)

``kind`` is ``trajectories`` (tracked or simulated positions), ``training`` (with the
per-frame labels ``alpha``, ``K``, ``state`` required) or ``results`` (with predictions).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterator, Mapping

import h5py
import numpy as np

from anomalousnet import __version__
from anomalousnet.core.errors import InputError
from anomalousnet.core.trajectories import Trajectories, frame_problem
from anomalousnet.io.atomic import TMP_SUFFIX, atomic_path

log = logging.getLogger(__name__)

SCHEMA = "anomalousnet-store"
SCHEMA_VERSION = 1
KINDS = ("trajectories", "training", "results")
INDEX_NAME = "index.h5"
SHARD_SUFFIX = ".h5"
REQUIRED_POINTS = ("frame", "x", "y")
REQUIRED_TRACKS = ("particle",)
REQUIRED_BY_KIND = {"trajectories": (), "training": ("alpha", "K", "state"), "results": ()}
DEFAULT_UNITS = {"x": "px", "y": "px", "frame": "frame", "K": "px^2/frame^alpha", "alpha": "1"}


class StoreError(InputError):
    """A store file is missing, unreadable or does not follow the schema; names the file."""


@dataclasses.dataclass(frozen=True)
class Shard:
    """One shard file: trajectories, root attributes (provenance) and optional tables."""

    path: Path
    trajectories: Trajectories
    attrs: dict
    tables: dict[str, dict[str, np.ndarray]]


def sha256_of(path: os.PathLike | str, chunk: int = 1 << 22) -> str:
    """Checksum of a source file, recorded in the provenance of what is made from it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def provenance(command: str, parameters: Mapping | None = None, source_path: str = "", source_sha256: str = "",
               units: Mapping | None = None, pixel_size_um: float = float("nan"),
               frame_interval_s: float = float("nan")) -> dict:
    """The provenance attributes every store file carries."""
    return {
        "package_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "parameters": json.dumps(dict(parameters or {}), sort_keys=True, default=str),
        "source_path": str(source_path),
        "source_sha256": source_sha256,
        "units": json.dumps(dict(units or DEFAULT_UNITS), sort_keys=True),
        "pixel_size_um": float(pixel_size_um),
        "frame_interval_s": float(frame_interval_s),
    }


def _write_column(group: h5py.Group, name: str, values) -> None:
    values = np.asarray(values)
    if values.dtype.kind in "UO":
        group.create_dataset(name, data=values.astype(object), dtype=h5py.string_dtype())
    elif values.size:
        group.create_dataset(name, data=values, chunks=True, compression="gzip", compression_opts=1, shuffle=True)
    else:
        group.create_dataset(name, data=values)


def write_shard(path: os.PathLike | str, trajectories: Trajectories, kind: str = "trajectories",
                attrs: Mapping | None = None, tables: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> Path:
    """Write one shard atomically: to ``.NAME.tmp`` first, renamed to ``NAME`` when complete.

    ``attrs`` are root attributes (usually :func:`provenance`); ``tables`` optional named
    tables. Raises StoreError when the data do not follow the schema (nothing is written).
    """
    path = Path(path)
    _check_trajectories(path, trajectories, kind)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": kind})
            for key, value in (attrs or provenance("unknown")).items():
                f.attrs[key] = value
            tracks = f.create_group("tracks")
            _write_column(tracks, "offsets", trajectories.offsets.astype(np.int64))
            for name, col in trajectories.tracks.items():
                _write_column(tracks, name, col)
            points = f.create_group("points")
            for name, col in trajectories.points.items():
                _write_column(points, name, col)
            group = f.create_group("tables")
            for table, columns in (tables or {}).items():
                _check_table(path, table, columns)
                sub = group.create_group(table)
                for name, col in columns.items():
                    _write_column(sub, name, col)
    return path


def _read_column(dataset: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return np.asarray(dataset.asstr()[()], dtype=str)
    return dataset[()]


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise StoreError(path, "no such file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(path, f"not a readable HDF5 file (truncated or corrupt?): {exc}") from None


def _check_header(path: Path, f: h5py.File) -> str:
    schema = f.attrs.get("schema")
    if schema != SCHEMA:
        raise StoreError(path, f"schema is {schema!r}, expected {SCHEMA!r} (not an anomalousnet store file)")
    version = f.attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(path, f"schema version {version!r}; this release (anomalousnet {__version__}) reads "
                               f"version {SCHEMA_VERSION} only")
    kind = f.attrs.get("kind")
    if kind not in KINDS:
        raise StoreError(path, f"kind {kind!r} is not one of {KINDS}")
    return kind


def _check_trajectories(path: Path, t: Trajectories, kind: str) -> None:
    if kind not in KINDS:
        raise StoreError(path, f"kind {kind!r} is not one of {KINDS}")
    off = np.asarray(t.offsets)
    if off.ndim != 1 or len(off) < 1 or off[0] != 0 or np.any(np.diff(off) < 0):
        raise StoreError(path, "tracks/offsets must be a non-decreasing 1-D array starting at 0")
    if np.any(np.diff(off) == 0):
        raise StoreError(path, f"track {int(np.flatnonzero(np.diff(off) == 0)[0])} is empty")
    for name in REQUIRED_POINTS + REQUIRED_BY_KIND[kind]:
        if name not in t.points:
            raise StoreError(path, f"points/{name} is missing (required for kind {kind!r})")
    for name in REQUIRED_TRACKS:
        if name not in t.tracks:
            raise StoreError(path, f"tracks/{name} is missing")
    for name, col in t.points.items():
        if np.shape(col) != (off[-1],):
            raise StoreError(path, f"points/{name} has shape {np.shape(col)}, expected ({off[-1]},) from offsets")
    for name, col in t.tracks.items():
        if np.shape(col) != (len(off) - 1,):
            raise StoreError(path, f"tracks/{name} has shape {np.shape(col)}, expected ({len(off) - 1},)")
    frame = np.asarray(t.points["frame"])
    if frame.dtype.kind not in "iu":
        raise StoreError(path, f"points/frame must be integer, not {frame.dtype}")
    problem = frame_problem(t)
    if problem:
        raise StoreError(path, problem)


def _check_table(path: Path, table: str, columns: Mapping[str, np.ndarray]) -> None:
    lengths = {name: np.shape(col) for name, col in columns.items()}
    if len({s for s in lengths.values()}) > 1 or any(len(s) != 1 for s in lengths.values()):
        raise StoreError(path, f"table {table!r} columns must be 1-D of equal length, got {lengths}")


def read_shard(path: os.PathLike | str) -> Shard:
    """Read and validate one shard; raises StoreError naming the file and the problem."""
    path = Path(path)
    with _open(path) as f:
        kind = _check_header(path, f)
        try:
            tracks = {name: _read_column(ds) for name, ds in f["tracks"].items()}
            points = {name: _read_column(ds) for name, ds in f["points"].items()}
            tables = {t: {c: _read_column(ds) for c, ds in g.items()} for t, g in f.get("tables", {}).items()}
        except (KeyError, OSError) as exc:
            raise StoreError(path, f"damaged or incomplete content: {exc}") from None
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    if "offsets" not in tracks:
        raise StoreError(path, "tracks/offsets is missing")
    traj = Trajectories(tracks.pop("offsets"), points, tracks)
    _check_trajectories(path, traj, kind)
    for table, columns in tables.items():
        _check_table(path, table, columns)
    return Shard(path, traj, attrs, tables)


def read_attrs(path: os.PathLike | str) -> dict:
    """The root attributes (provenance) of a store file alone, without reading its data."""
    path = Path(path)
    with _open(path) as f:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}


def validate_shard(path: os.PathLike | str) -> Shard:
    """Validate one shard (alias of :func:`read_shard` that reads everything once)."""
    return read_shard(path)


# ----------------------------------------------------------------------------- stores

def shard_paths(store: os.PathLike | str) -> list[Path]:
    """Complete shards in a store directory, by name (temporary files and the index excluded)."""
    store = Path(store)
    return sorted(p for p in store.glob("*" + SHARD_SUFFIX) if p.name != INDEX_NAME and not p.name.startswith("."))


def leftover_tmp_paths(store: os.PathLike | str) -> list[Path]:
    """Shards left under their temporary name by an interrupted run (never read; redone on re-run)."""
    return sorted(Path(store).glob("." + "*" + SHARD_SUFFIX + "*" + TMP_SUFFIX))


def needs_writing(path: os.PathLike | str) -> bool:
    """Whether a command must (re)write shard ``path``; used to resume interrupted runs.

    A whole, valid shard is kept (False). An absent one is to be written (True). A file
    under the shard's name that fails validation (damaged after the fact) is moved aside
    to ``NAME.corrupt``, never deleted, and is to be written again (True).
    """
    path = Path(path)
    if not path.exists():
        return True
    try:
        read_shard(path)
        return False
    except StoreError as exc:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        log.warning("%s; moved aside to %s and redone", exc, aside.name)
        return True


def write_index(store: os.PathLike | str, kind: str, attrs: Mapping | None = None) -> Path:
    """(Re)write the store's index from the complete shards on disk; atomic like a shard.

    Every shard is validated first, so an index never lists a bad shard.
    """
    store = Path(store)
    names, n_tracks, n_points = [], [], []
    for path in shard_paths(store):
        shard = read_shard(path)
        if shard.attrs["kind"] != kind:
            raise StoreError(path, f"kind {shard.attrs['kind']!r} in a store of kind {kind!r}")
        names.append(path.name)
        n_tracks.append(shard.trajectories.n_tracks)
        n_points.append(shard.trajectories.n_points)
    index = store / INDEX_NAME
    with atomic_path(index) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": kind, "role": "index"})
        for key, value in (attrs or provenance("index")).items():
            f.attrs[key] = value
        f.create_dataset("shard_names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("n_tracks", data=np.array(n_tracks, dtype=np.int64))
        f.create_dataset("n_points", data=np.array(n_points, dtype=np.int64))
        links = f.create_group("shards")
        for name in names:
            links[name] = h5py.ExternalLink(name, "/")
    return index


def store_dir(path: os.PathLike | str) -> Path:
    """The store a path names: the path itself, or for a results folder (``infer --out``),
    the store inside it (``RESULTS/store``), which is what users type first."""
    path = Path(path)
    if not (path / INDEX_NAME).exists() and (path / "store" / INDEX_NAME).exists():
        return path / "store"
    return path


@dataclasses.dataclass(frozen=True)
class StoreIndex:
    path: Path
    kind: str
    shard_names: list[str]
    n_tracks: np.ndarray
    n_points: np.ndarray
    attrs: dict


def read_index(store: os.PathLike | str) -> StoreIndex:
    """Read a store's index and check it against the directory; raises StoreError on any mismatch.

    A shard on disk that the index does not list (or the reverse) is an error, not skipped;
    shards left under their temporary name are reported in the log and ignored.
    """
    store = store_dir(store)
    index = store / INDEX_NAME
    if not store.is_dir():
        raise StoreError(store, "not a store directory")
    with _open(index) as f:
        kind = _check_header(index, f)
        if f.attrs.get("role") != "index":
            raise StoreError(index, "is a shard, not a store index")
        names = list(f["shard_names"].asstr()[()])
        result = StoreIndex(index, kind, names, f["n_tracks"][()], f["n_points"][()],
                            {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()})
    on_disk = [p.name for p in shard_paths(store)]
    missing = sorted(set(names) - set(on_disk))
    if missing:
        raise StoreError(store / missing[0], "listed in the index but missing from the store")
    extra = sorted(set(on_disk) - set(names))
    if extra:
        raise StoreError(store / extra[0], "complete shard not listed in the index (interrupted run?): "
                                           "re-run the command that writes this store to finish it")
    for tmp in leftover_tmp_paths(store):
        log.warning("%s: incomplete shard left by an interrupted run, ignored (re-running the command redoes it)",
                    tmp)
    return result


def iter_shards(store: os.PathLike | str) -> Iterator[Shard]:
    """Validated shards of a store, in index order, one at a time (memory stays flat)."""
    store = store_dir(store)
    index = read_index(store)
    for name in index.shard_names:
        yield read_shard(store / name)


def validate_store(store: os.PathLike | str) -> StoreIndex:
    """Validate a store: its index, and every shard it lists, with counts matching the index."""
    store = store_dir(store)
    index = read_index(store)
    for name, n_tracks, n_points in zip(index.shard_names, index.n_tracks, index.n_points):
        shard = read_shard(store / name)
        if shard.attrs["kind"] != index.kind:
            raise StoreError(shard.path, f"kind {shard.attrs['kind']!r} in a store of kind {index.kind!r}")
        if (shard.trajectories.n_tracks, shard.trajectories.n_points) != (n_tracks, n_points):
            raise StoreError(shard.path, "track/point counts differ from the index (shard replaced after indexing?)")
    return index


def validate_path(path: os.PathLike | str):
    """Validate a store directory, or a single shard file."""
    path = Path(path)
    return validate_store(path) if path.is_dir() else validate_shard(path)
