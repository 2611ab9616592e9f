"""Tracking many videos: one Dask task per video, each writing its shard atomically; re-running
keeps complete shards (resume); the driver writes the store index at the end."""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Iterator

from anomalousnet.batch.inputs import expand_inputs, shard_name
from anomalousnet.batch.summary import Summary
from anomalousnet.core.errors import InputError
from anomalousnet.io import store as st
from anomalousnet.tracking.video_tracking import STORE_KIND, TrackOptions, track_video

log = logging.getLogger(__name__)


class TrackError(InputError):
    """Tracking one video failed; names the video and the problem."""


def _track_task(item: tuple[str, str], options: TrackOptions) -> str | TrackError:
    """Dask task: track one video. A failure is returned (not raised) as a picklable
    TrackError, so an expected bad input does not fill the worker logs with tracebacks."""
    video, shard = item
    try:
        return str(track_video(video, shard, options))
    except InputError as exc:  # an unusable video, or its shard
        return TrackError(video, exc.problem)
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
        log.exception("%s: unexpected error while tracking", video)
        return TrackError(video, f"{type(exc).__name__}: {exc}")


def _split_done(videos: list[Path], store_dir: Path) -> tuple[list, list]:
    """``(video, shard)`` pairs whose shard is complete (kept), and those to track."""
    kept, todo = [], []
    for video in videos:
        shard = store_dir / shard_name(video)
        (todo if st.needs_writing(shard) else kept).append((video, shard))
    return kept, todo


def iter_tracked(videos: list[Path], store_dir: Path, options: TrackOptions, client, progress: bool = True
                 ) -> Iterator[tuple[Path, Path | TrackError]]:
    """Submit the tracking of ``videos`` into ``store_dir`` to ``client``'s workers now, one
    task per video; return an iterator of ``(video, shard path or TrackError)``: complete
    shards of an earlier run first (kept, not tracked again), then each video as it finishes.
    Only paths travel back, so the driver holds no video. Without a client the videos are
    tracked in this process, one as each is asked for."""
    from anomalousnet.batch.cluster import map_as_completed

    kept, todo = _split_done(videos, store_dir)
    todo = [(str(v), str(shard)) for v, shard in todo]
    if client is None:
        results = ((item, _track_task(item, options)) for item in todo)
    else:
        results = map_as_completed(client, _track_task, todo, desc="track", progress=progress,
                                   options=options) if todo else iter(())

    def stream():
        yield from kept
        for (video, _), result in results:
            if isinstance(result, BaseException) and not isinstance(result, TrackError):  # a lost worker
                result = TrackError(video, f"{type(result).__name__}: {result}")
            yield Path(video), (result if isinstance(result, TrackError) else Path(result))

    return stream()


def write_track_index(store_dir: Path, options: TrackOptions, inputs: list[str]) -> None:
    st.write_index(store_dir, STORE_KIND, attrs=st.provenance(
        "track", {**dataclasses.asdict(options), "inputs": list(inputs)},
        pixel_size_um=options.pixel_size_um, frame_interval_s=options.frame_interval_s))


def track_videos(inputs: list[str], store_dir: os.PathLike | str, options: TrackOptions = TrackOptions(),
                 workers: int | None = None, scheduler_file: str | None = None, progress: bool = True
                 ) -> Summary:
    """Track every video named by ``inputs`` (paths, directories or glob patterns) into a
    trajectory store, one shard per video, one Dask task per video.

    Complete shards of an earlier run are kept (resume); a failing video is reported in
    ``failed`` while the others go on. The index is (re)written at the end from the shards
    on disk.
    """
    from anomalousnet.batch.cluster import dask_client

    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    found, failed = expand_inputs(inputs, kinds=("video",))
    videos = found["video"]
    kept, todo = _split_done(videos, store_dir)
    kept = sorted(shard for _, shard in kept)
    todo = [video for video, _ in todo]
    if kept:
        log.info("%d video(s) already tracked (complete shards kept)", len(kept))
    written = []
    if todo:
        n_workers = workers or min(len(todo), len(os.sched_getaffinity(0)))
        with dask_client(n_workers, scheduler_file) as client:
            for video, result in iter_tracked(todo, store_dir, options, client, progress):
                if isinstance(result, TrackError):
                    failed[str(video)] = result.problem
                    log.info("%s: failed: %s", video, result.problem)  # the summary names it
                else:
                    written.append(result)
    write_track_index(store_dir, options, inputs)
    return Summary(store_dir, sorted(written), sorted(kept), failed)
