"""Dask clients for the embarrassingly parallel stages (simulate, track, segment).

One place decides where tasks run: a local cluster of ``workers`` single-threaded
processes (default), or an existing cluster reached through a scheduler file
(``dask scheduler --scheduler-file F`` on a SLURM allocation, see ``slurm/``).
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

if TYPE_CHECKING:
    import distributed

log = logging.getLogger(__name__)


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler_file: str | None = None) -> Iterator["distributed.Client"]:
    """A ``distributed.Client``: to the cluster in ``scheduler_file``, else a local cluster.

    The local cluster has ``workers`` processes (default: the CPUs available to this
    process) with one thread each, so numerical libraries do not oversubscribe cores.
    """
    import distributed

    if scheduler_file:
        with distributed.Client(scheduler_file=scheduler_file) as client:
            log.info("connected to Dask scheduler %s", client.scheduler.address)
            yield client
        return
    n = workers or len(os.sched_getaffinity(0))
    with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR,
                                  env={"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
                                       "TF_NUM_INTEROP_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                       "MKL_NUM_THREADS": "1"}) as cluster, \
            distributed.Client(cluster) as client:
        log.info("local Dask cluster with %d workers", n)
        yield client


def map_as_completed(client, func: Callable, items: Sequence, *, desc: str = "", progress: bool = True,
                     **kwargs) -> Iterator[tuple[object, object | BaseException]]:
    """Submit ``func(item, **kwargs)`` for every item to the cluster now; return an iterator
    of ``(item, result)`` as tasks finish, with a progress bar. A task's exception is its
    result (not raised) so one bad input never stops the others; the caller reports it.
    """
    futures = {client.submit(func, item, pure=False, **kwargs): item for item in items}
    return _as_completed(futures, desc, progress)


def _as_completed(futures: dict, desc: str, progress: bool) -> Iterator[tuple[object, object | BaseException]]:
    import distributed
    from tqdm import tqdm

    with tqdm(total=len(futures), desc=desc, unit="task", disable=not progress) as bar:
        for future in distributed.as_completed(futures):
            item = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - reported per item by the caller
                result = exc
            bar.update()
            yield item, result
