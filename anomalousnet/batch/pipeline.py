"""The main job: inputs -> track -> predict -> segment -> ensemble -> results.

Inputs are TIFF videos (one trajectory shard per video), trajectory stores (each shard is one
field of view) or AnDi-style trajectory CSVs (``traj_idx,frame,x,y``). Every field of view (FOV)
becomes one shard of the results store, processed and written before the next is read,
so memory does not grow with the number of inputs. Videos stream: they are tracked on the
Dask workers (:func:`anomalousnet.tracking.batch.iter_tracked`) while this process predicts
and segments those already tracked; only shard paths come back, so at most one video per
worker and one FOV in this process are in memory.

Layout of ``RESULTS/``::

    store/          results store (kind "results"): per point the input columns and
                    pred_alpha, pred_K, pred_state; per track particle (+ vip, fallback);
                    tables segments (particle, start, end, frame_start, alpha, K, state)
                    and ensemble (per state: means, variances, weight); provenance with
                    the model's sha256 and all parameters
    tracks/         trajectory store tracked from the video inputs (if any)
    segments.csv    one row per segment of every FOV (K also in um^2/s^alpha when the
                    pixel size and frame interval are given)
    ensemble.csv    one row per FOV and state
    ensemble/       AnDi-2 ``ensemble_labels.txt``-style file per FOV
    figures/        with ``report``: one PNG per FOV
    summary.json    what this run wrote, kept (resumed) and could not process, and why

Re-running resumes: a FOV whose results shard is whole and was made with the same model
and parameters is kept. A bad input is named in the summary and skipped; the others go on.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from anomalousnet import ensemble as ens
from anomalousnet.batch.inputs import expand_inputs, shard_name
from anomalousnet.batch.summary import Summary
from anomalousnet.batch.tables import finite, remove_stale_figures, write_figures, write_tables
from anomalousnet.core.errors import InputError
from anomalousnet.core.names import REQUIRED_PRED_COLUMNS, STATE_PROB_COLUMNS
from anomalousnet.core.trajectories import Trajectories
from anomalousnet.io import store as st
from anomalousnet.io.andi_files import TrajectoryFileError, read_andi_csv
from anomalousnet.segments.segmentation import SegmentOptions, with_frames, with_quality
from anomalousnet.segments.zones import ZoneOptions, segments_with_zones

log = logging.getLogger(__name__)

STORE_DIR, TRACKS_DIR, FIGURES_DIR = "store", "tracks", "figures"


@dataclasses.dataclass(frozen=True)
class InferOptions:
    """Configuration of :func:`run_infer`.

    model: "default" (the shipped bundle) or a bundle directory.
    batch_size: windows per forward pass of the networks.
    pixel_size_um, frame_interval_s: physical units of the inputs (None: unknown); with
        both, segments.csv also gives K in um^2/s^alpha.
    segment: change-point options.
    zones: options of the field-of-view stage (anomalousnet.segments.zones; None: off).
    report: write a PNG figure per FOV.
    workers, scheduler_file: Dask cluster for tracking and change points (see
        anomalousnet.batch.cluster.dask_client); workers=1 runs change points in-process.
    track_options: anomalousnet.tracking.video_tracking.TrackOptions for video inputs (None: its defaults).
    fill_gaps: CSV inputs whose trajectories skip frames (trackpy's ``link`` with ``memory``)
        are filled by interpolation and flagged (``interpolated``) instead of refused.
    min_length: trajectories shorter than this (frames), and fallback ones, are kept in the
        store and tables (flagged) but left out of the ensembles.
    csv_columns: CSV inputs' column names for particle (traj_idx), frame, x, y, when neither
        those nor trackpy's or TrackMate's (see anomalousnet.io.andi_files.CSV_ALIASES).
    """

    model: str = "default"
    batch_size: int = 1024
    pixel_size_um: float | None = None
    frame_interval_s: float | None = None
    segment: SegmentOptions = SegmentOptions()
    zones: ZoneOptions | None = ZoneOptions()
    report: bool = False
    workers: int | None = None
    scheduler_file: str | None = None
    track_options: object | None = None
    fill_gaps: bool = False
    csv_columns: dict | None = None
    min_length: int = 10
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Source:
    """One field of view to process: ``origin`` is the user's input (video, CSV, shard),
    ``path`` the file holding its trajectories (a CSV or a trajectory shard)."""

    kind: str  # "csv" | "shard"
    path: Path
    origin: Path

    @property
    def name(self) -> str:
        """Results shard name, from the origin's path (stable across runs)."""
        return shard_name(self.origin)


# ----------------------------------------------------------------------------- inputs

def listed_sources(found: Mapping[str, list[Path]], failed: dict[str, str]) -> list[Source]:
    """Sources (one per FOV) of the expanded inputs that are trajectories already (CSVs,
    shards, stores); videos become sources as they are tracked (:func:`tracked_sources`)."""
    sources = [Source("csv", p, p) for p in found["csv"]]
    sources += [Source("shard", p, p) for p in found["shard"]]
    for store_dir in found["store"]:
        try:
            index = st.read_index(store_dir)
        except st.StoreError as exc:
            failed[str(store_dir)] = str(exc)
            continue
        sources += [Source("shard", store_dir / name, store_dir / name) for name in index.shard_names]
    return sources


def tracked_sources(videos: list[Path], tracks_dir: Path, options: InferOptions, client,
                    failed: dict[str, str]) -> Iterator[Source]:
    """Start tracking every video on ``client``'s workers now (without a client: in this
    process, each when asked for); yield each video's source as its shard is written, so that
    the driver predicts and segments video i while the workers track the next ones. The tracks
    index is written when the last one is done."""
    from anomalousnet.tracking.batch import iter_tracked, write_track_index
    from anomalousnet.tracking.video_tracking import TrackOptions

    track_options = options.track_options or TrackOptions()
    tracks_dir.mkdir(parents=True, exist_ok=True)
    stream = iter_tracked(videos, tracks_dir, track_options, client, progress=options.progress)

    def sources():
        for video, result in stream:
            if isinstance(result, Path):
                yield Source("shard", result, video)
            else:
                failed[str(video)] = f"tracking failed: {result.problem}"
        write_track_index(tracks_dir, track_options, [str(v) for v in videos])

    return sources()


def load_source(source: Source, fill_gaps: bool = False, csv_columns: dict | None = None
                ) -> tuple[Trajectories, dict]:
    """Trajectories of one source and its provenance (source path and checksum, units)."""
    if source.kind == "csv":
        traj = read_andi_csv(source.path, fill_gaps=fill_gaps, columns=csv_columns)
        return traj, {"source_path": str(source.origin), "source_sha256": st.sha256_of(source.path)}
    shard = st.read_shard(source.path)
    if shard.trajectories.n_tracks == 0:
        return shard.trajectories, {}
    attrs = shard.attrs
    origin_is_video = source.origin != source.path
    return shard.trajectories, {
        "source_path": str(source.origin) if origin_is_video else str(source.path),
        "source_sha256": attrs.get("source_sha256", "") if origin_is_video else st.sha256_of(source.path),
        "tracks_path": str(source.path) if origin_is_video else "",
        "input_pixel_size_um": attrs.get("pixel_size_um", float("nan")),
        "input_frame_interval_s": attrs.get("frame_interval_s", float("nan")),
        "input_units": attrs.get("units", ""),
    }


# ----------------------------------------------------------------------------- one FOV

def analyse_fov(traj: Trajectories, bundle, options: InferOptions, client=None, timer=None
                ) -> tuple[dict, dict, dict, dict]:
    """Predict, segment and summarise one FOV: (per-point predictions, segments, ensemble,
    zones). ``timer(stage, seconds)``, if given, receives the time of each stage."""
    from anomalousnet.networks.predict import predict, with_predictions

    timer = timer or (lambda stage, seconds: None)
    t = time.perf_counter()
    preds = predict(bundle, traj, batch_size=options.batch_size)
    timer("predict", time.perf_counter() - t)
    t = time.perf_counter()
    flagged = traj.with_tracks({"fallback": np.asarray(preds["fallback"], bool)})
    segments, zones = segments_with_zones(with_predictions(flagged, preds), options.segment, options.zones, client,
                                          bundle, options.batch_size)
    segments = with_quality(with_frames(segments, traj), flagged, options.min_length)
    ensemble = ens.ensemble_of(segments)
    timer("segment", time.perf_counter() - t)
    return preds, segments, ensemble, zones


def _zones_config(zones: ZoneOptions | None) -> dict | None:
    return None if zones is None else dataclasses.asdict(zones)


def config_key(bundle, options: InferOptions) -> str:
    """What a results shard depends on besides its input; a kept shard must match it."""
    key = {"model_sha256": bundle.sha256, "segment": dataclasses.asdict(options.segment),
           "zones": _zones_config(options.zones),
           "pixel_size_um": options.pixel_size_um, "frame_interval_s": options.frame_interval_s,
           "fill_gaps": options.fill_gaps, "min_length": options.min_length}
    if options.csv_columns:
        key["csv_columns"] = options.csv_columns
    return json.dumps(key, sort_keys=True)


def _existing_matches(path: Path, key: str, source: Source) -> bool:
    """Whether a results shard from an earlier run can be kept: whole, made with the same
    model and parameters, and (for CSV and shard inputs) from an unchanged input file."""
    if st.needs_writing(path):
        return False
    attrs = st.read_attrs(path)
    if attrs.get("config") != key:
        log.warning("%s was made with another model or other parameters; redoing it", path)
        return False
    if source.origin == source.path and attrs.get("source_sha256") != st.sha256_of(source.path):
        log.warning("%s changed since %s was made; redoing it", source.path, path)
        return False
    return True


def process_source(source: Source, store_dir: Path, bundle, options: InferOptions, client=None,
                   timer=None) -> Path:
    """Analyse one FOV and write its results shard (atomically). Raises on bad input."""
    from anomalousnet.networks.predict import compute_device, with_predictions

    timer = timer or (lambda stage, seconds: None)
    t = time.perf_counter()
    traj, source_attrs = load_source(source, options.fill_gaps, options.csv_columns)
    timer("read", time.perf_counter() - t)
    path = store_dir / source.name
    if traj.n_tracks == 0:
        raise TrajectoryFileError(source.origin, "no trajectories (nothing tracked or an empty file)")
    preds, segments, ensemble, zones = analyse_fov(traj, bundle, options, client, timer)
    t = time.perf_counter()
    tracks = {**traj.tracks, "fallback": np.asarray(preds["fallback"], dtype=bool)}
    units = {**st.DEFAULT_UNITS, "pred_alpha": "1", "pred_K": "px^2/frame^alpha", "pred_state": "0 immobile, "
             "1 confined, 2 free, 3 directed", **{c: "probability" for c in STATE_PROB_COLUMNS}}
    parameters = {"model": str(bundle.path), "model_sha256": bundle.sha256, "batch_size": options.batch_size,
                  "segment": dataclasses.asdict(options.segment), "zones": _zones_config(options.zones)}
    attrs = st.provenance("infer", parameters, source_attrs.pop("source_path"), source_attrs.pop("source_sha256"),
                          units=units, pixel_size_um=_nan(options.pixel_size_um),
                          frame_interval_s=_nan(options.frame_interval_s))
    attrs.update({k: v for k, v in source_attrs.items()})
    attrs.update({"model_sha256": bundle.sha256, "model_path": str(bundle.path),
                  "config": config_key(bundle, options), "device": compute_device()})
    written = st.write_shard(path, Trajectories(traj.offsets, with_predictions(traj, preds).points, tracks),
                             kind="results", attrs=attrs,
                             tables={"segments": segments, "ensemble": ensemble, "zones": zones})
    timer("write", time.perf_counter() - t)
    return written


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


# ----------------------------------------------------------------------------- whole run

def _wants_cluster(options: InferOptions) -> bool:
    """Whether the options name a cluster or ask for more than one worker."""
    return bool(options.scheduler_file) or (options.workers or len(os.sched_getaffinity(0))) > 1


def _client_context(options: InferOptions, wanted: bool):
    """A Dask client (see anomalousnet.batch.cluster.dask_client) when ``wanted``, else none."""
    import contextlib

    if wanted:
        from anomalousnet.batch.cluster import dask_client

        return dask_client(options.workers, options.scheduler_file)
    return contextlib.nullcontext(None)


def _start_networks(bundle, summary: Summary) -> None:
    """Import the Keras backend and build every head of the model (seconds of start-up),
    recording where they run; done while the first videos are tracked."""
    from anomalousnet.networks.predict import compute_device

    summary.info["device"] = compute_device()
    log.info("networks run on %s", summary.info["device"])
    for target in bundle.targets:
        bundle.model(target)


def run_infer(inputs: Sequence[str], out_dir: os.PathLike | str, options: InferOptions = InferOptions()
              ) -> Summary:
    """Run the main job on ``inputs`` (paths or glob patterns) into ``out_dir``.

    Returns a :class:`Summary` (``info``: the compute ``device`` and the ``figures`` written);
    bad inputs are in ``failed`` (the run goes on). When no input gives a result, no tables
    or figures are written (and with no usable input at all, nothing, not even the model is
    loaded). An unusable model raises :class:`~anomalousnet.networks.bundle.BundleError`
    before anything is written.
    """
    from tqdm import tqdm

    from anomalousnet.networks.bundle import BundleError, load_bundle

    out_dir = Path(out_dir)
    bundle = load_bundle(options.model)  # model.json only: the networks' start-up comes when they run
    missing = [t for t in ("alpha", "K", "state") if t not in bundle.targets]
    if missing:
        raise BundleError(bundle.path, f"has no {', '.join(missing)} head(s); infer needs alpha, K and "
                                                 "state (train them with `anomalousnet-batch train --target all`)")
    summary = Summary(out_dir)
    found, summary.failed = expand_inputs(inputs)
    if not any(found.values()):  # nothing to run: write nothing
        return summary
    store_dir = out_dir / STORE_DIR
    store_dir.mkdir(parents=True, exist_ok=True)
    key = config_key(bundle, options)
    listed = listed_sources(found, summary.failed)
    sources: list[Source] = []
    # Videos are tracked on the cluster, except one alone (and no cluster named): starting
    # workers would take longer than tracking it here.
    videos_on_cluster = len(found["video"]) > 1 or bool(options.scheduler_file)
    with _client_context(options, videos_on_cluster if found["video"] else _wants_cluster(options)) as client:
        stream = iter(listed)
        warm = None
        if found["video"]:  # tracking starts now; on workers, the networks start meanwhile here
            tracked = tracked_sources(found["video"], out_dir / TRACKS_DIR, options, client, summary.failed)
            stream = itertools.chain(listed, tracked)
            if videos_on_cluster:  # (beside tracking in this process, the two would share the GIL)
                warm = threading.Thread(target=_start_networks, args=(bundle, summary), daemon=True)
                warm.start()
        # Change points on the cluster when it has several workers, else in this process; and in
        # this process when there are videos: a task would wait there for a whole video.
        segment_client = None if found["video"] else client
        with tqdm(total=len(listed) + len(found["video"]), desc="infer", unit="fov",
                  disable=not options.progress) as bar:
            while True:
                t = time.perf_counter()
                source = next(stream, None)  # for a video: waits until it is tracked
                summary.add_time("track" if found["video"] else "list", time.perf_counter() - t)
                if source is None:
                    break
                sources.append(source)
                path = store_dir / source.name
                if path.exists() and _existing_matches(path, key, source):
                    summary.kept.append(path)
                    bar.update()
                    continue
                if warm is not None:
                    warm.join()
                    warm = None
                if "device" not in summary.info:
                    _start_networks(bundle, summary)
                try:
                    summary.written.append(process_source(source, store_dir, bundle, options, segment_client,
                                                          summary.add_time))
                except (InputError, ValueError, OSError) as exc:
                    problem = getattr(exc, "problem", None) or str(exc)
                    log.error("%s: %s", source.origin, problem)
                    summary.failed[str(source.origin)] = problem
                bar.update()
    if warm is not None:
        warm.join()
    if summary.kept:
        log.info("%d field(s) of view already done (complete results shards kept)", len(summary.kept))
    t = time.perf_counter()
    _write_index(store_dir, st.provenance("infer", {"inputs": list(inputs), "config": key}))
    shards = sorted({store_dir / s.name for s in sources})
    if not any(path.exists() for path in shards):  # every input failed: earlier tables stay as they were
        (out_dir / "summary.json").write_text(summary.to_json() + "\n")
        return summary
    write_tables(shards, out_dir, options.pixel_size_um, options.frame_interval_s)
    summary.add_time("tables", time.perf_counter() - t)
    if options.report:
        t = time.perf_counter()
        summary.info["figures"] = write_figures(shards, out_dir / FIGURES_DIR, progress=options.progress)
        summary.add_time("report", time.perf_counter() - t)
    else:
        summary.info["stale_figures_removed"] = remove_stale_figures(shards, out_dir / FIGURES_DIR)
    (out_dir / "summary.json").write_text(summary.to_json() + "\n")
    return summary


def _write_index(store_dir: Path, attrs: dict) -> Path:
    """Index the results store; a shard damaged after the fact (not one of this run's) is
    moved aside (``NAME.corrupt``) rather than stopping the run at its very end."""
    while True:
        try:
            return st.write_index(store_dir, "results", attrs)
        except st.StoreError as exc:
            bad = Path(exc.path)
            if bad.parent != store_dir or not bad.exists() or not st.needs_writing(bad):
                raise  # e.g. a valid shard of another kind: the user's --out is another store


def _predicting_bundle(path: Path, attrs: Mapping, bundles: dict):
    """The model bundle that predicted a shard (its recorded ``model_path``, when still there
    with the recorded sha256), for ``crop_min_frames``; None, with a warning naming the shard,
    when it is gone or changed: that shard's segments then keep the whole-track values."""
    from anomalousnet.networks.bundle import BundleError, load_bundle

    spec = str(attrs.get("model_path") or "")
    if spec not in bundles:
        try:
            bundles[spec] = load_bundle(spec) if spec else None
        except (BundleError, OSError, ValueError):
            bundles[spec] = None
    bundle = bundles[spec]
    if bundle is None or bundle.sha256 != attrs.get("model_sha256"):
        log.warning("%s: the model that predicted it (%s) is gone or changed; its segments' alpha comes "
                    "from the whole-track predictions (crop_min_frames not applied)", path, spec or "not recorded")
        return None
    return bundle


def segment_store(store_dir: os.PathLike | str, options: SegmentOptions = SegmentOptions(),
                  out_dir: os.PathLike | str | None = None, workers: int | None = 1,
                  scheduler_file: str | None = None, pixel_size_um: float | None = None,
                  frame_interval_s: float | None = None, progress: bool = True, report: bool = False,
                  zones: ZoneOptions | None = ZoneOptions()) -> list[Path]:
    """Change points alone: recompute the segments, ensemble and zones tables of every shard
    of a store that holds predictions (each shard rewritten atomically), then write
    segments.csv and ensemble.csv into ``out_dir`` (default: the store's parent folder)
    and, with ``report``, the figures (``out_dir/figures``); without it, figures drawn from
    the old segments are removed. Raises StoreError (naming the shard) when a shard has no
    predictions."""
    from tqdm import tqdm

    store_dir = st.store_dir(store_dir)
    index = st.read_index(store_dir)
    paths = [store_dir / n for n in index.shard_names]
    opts = InferOptions(workers=workers, scheduler_file=scheduler_file)
    bundles: dict[str, object] = {}
    with _client_context(opts, _wants_cluster(opts)) as client:
        for path in tqdm(paths, desc="segment", unit="fov", disable=not progress):
            shard = st.read_shard(path)
            missing = [c for c in REQUIRED_PRED_COLUMNS if c not in shard.trajectories.points]
            if missing:
                raise st.StoreError(path, f"no predictions ({', '.join(missing)} missing): run `infer` first")
            bundle = _predicting_bundle(path, shard.attrs, bundles) if options.crop_min_frames else None
            segments, zone_table = segments_with_zones(shard.trajectories, options, zones, client, bundle)
            attrs = dict(shard.attrs)
            min_length = json.loads(attrs.get("config") or "{}").get("min_length", 1)  # as `infer` had it
            segments = with_quality(with_frames(segments, shard.trajectories), shard.trajectories, min_length)
            tables = {**shard.tables, "segments": segments, "ensemble": ens.ensemble_of(segments),
                      "zones": zone_table}
            params = json.loads(attrs.get("parameters") or "{}")
            params["segment"], params["zones"] = dataclasses.asdict(options), _zones_config(zones)
            attrs["parameters"] = json.dumps(params, sort_keys=True, default=str)
            if "config" in attrs:
                config = json.loads(attrs["config"])
                config["segment"], config["zones"] = dataclasses.asdict(options), _zones_config(zones)
                attrs["config"] = json.dumps(config, sort_keys=True)
            st.write_shard(path, shard.trajectories, kind=shard.attrs["kind"], attrs=attrs, tables=tables)
    st.write_index(store_dir, index.kind, st.provenance("segment", {"segment": dataclasses.asdict(options)}))
    out_dir = Path(out_dir) if out_dir else store_dir.parent
    if paths and pixel_size_um is None and frame_interval_s is None:  # the units `infer` was given
        attrs = st.read_attrs(paths[0])
        pixel_size_um, frame_interval_s = finite(attrs.get("pixel_size_um")), finite(attrs.get("frame_interval_s"))
    write_tables(paths, out_dir, pixel_size_um, frame_interval_s)
    if report:
        write_figures(paths, out_dir / FIGURES_DIR, progress=progress)
    else:
        remove_stale_figures(paths, out_dir / FIGURES_DIR)
    return paths
