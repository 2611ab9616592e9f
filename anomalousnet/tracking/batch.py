"""Tracking many videos: one Dask task per video, each writing its shard atomically; re-running
keeps complete shards (resume); the driver writes the store index at the end."""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

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


def track_videos(inputs: list[str], store_dir: os.PathLike | str, options: TrackOptions = TrackOptions(),
                 workers: int | None = None, scheduler_file: str | None = None, progress: bool = True
                 ) -> Summary:
    """Track every video named by ``inputs`` (paths, directories or glob patterns) into a
    trajectory store, one shard per video, one Dask task per video.

    Complete shards of an earlier run are kept (resume); a failing video is reported in
    ``failed`` while the others go on. The index is (re)written at the end from the shards
    on disk.
    """
    from anomalousnet.batch.cluster import dask_client, map_as_completed

    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    found, failed = expand_inputs(inputs, kinds=("video",))
    videos = found["video"]
    todo, kept = [], []
    for video in videos:
        shard = store_dir / shard_name(video)
        if st.needs_writing(shard):
            todo.append((str(video), str(shard)))
        else:
            kept.append(shard)
    if kept:
        log.info("%d video(s) already tracked (complete shards kept)", len(kept))
    written = []
    if todo:
        n_workers = workers or min(len(todo), len(os.sched_getaffinity(0)))
        with dask_client(n_workers, scheduler_file) as client:
            for (video, _), result in map_as_completed(client, _track_task, todo, desc="track", progress=progress,
                                                       options=options):
                if isinstance(result, BaseException):  # TrackError returned, or a lost worker
                    failed[video] = result.problem if isinstance(result, TrackError) else \
                        f"{type(result).__name__}: {result}"
                    log.info("%s: failed: %s", video, failed[video])  # the summary names it
                else:
                    written.append(Path(result))
    st.write_index(store_dir, STORE_KIND, attrs=st.provenance(
        "track", {**dataclasses.asdict(options), "inputs": list(inputs)},
        pixel_size_um=options.pixel_size_um, frame_interval_s=options.frame_interval_s))
    return Summary(store_dir, sorted(written), sorted(kept), failed)
