"""Helpers shared by every stage that runs tasks on a Dask cluster (package-internal).

``fbp_to_zarr`` (tomofuse.distributed) and ``reconstruct_series`` (tomofuse.ptycho) submit
one task per slab or projection: at most two per worker thread in flight
(``run_bounded``), each task using its host's CPUs divided by the worker threads on
that host (``worker_threads_per_host`` on the client, ``task_threads`` in the task) so
the workers of one host do not oversubscribe it.  ``distributed`` is imported only
when a cluster is used.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Union

__all__ = ["check_client", "host_cpus", "run_bounded", "task_threads", "worker_threads_per_host"]


def check_client(client) -> None:
    """``TypeError`` unless ``client`` is None or looks like a ``distributed.Client``."""
    if client is not None and not (hasattr(client, "submit") and hasattr(client, "nthreads")):
        raise TypeError(f"client must be a distributed.Client or None, got {type(client).__name__}")


def host_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_threads_per_host(client) -> dict[str, int]:
    """Worker threads per host of a dask.distributed client (each task then uses the host's
    CPUs divided by that count, so the workers of one host do not oversubscribe it)."""
    from distributed.comm import get_address_host

    per_host: dict[str, int] = {}
    for address, n in client.nthreads().items():
        host = get_address_host(address)
        per_host[host] = per_host.get(host, 0) + n
    return per_host


def task_threads(threads: Union[None, int, Mapping[str, int]]) -> Optional[int]:
    """Threads of one task: ``threads`` itself, or, for a ``worker_threads_per_host`` mapping,
    the CPUs of the host this task runs on divided by that host's worker threads (at least 1)."""
    if not isinstance(threads, Mapping):
        return threads
    from distributed import get_worker
    from distributed.comm import get_address_host

    n = threads.get(get_address_host(get_worker().address), 1)
    return max(1, host_cpus() // max(1, n))


def run_bounded(client, items, submit, handle, *, on_error, catch=Exception) -> None:
    """Run one task per item on a dask.distributed client, at most two per worker thread in flight.

    ``submit(item)`` starts a task and returns its future; ``handle(future)`` takes each
    finished one in completion order (calling ``future.result()`` re-raises the task's
    error). If that raises ``catch``, ``on_error(unfinished futures)`` runs before the
    exception propagates.
    """
    from distributed import as_completed

    limit = max(2, 2 * sum(client.nthreads().values()))
    pending = list(items)
    in_flight = []

    def start():
        fut = submit(pending.pop(0))
        in_flight.append(fut)
        return fut

    queue = as_completed([start() for _ in range(min(limit, len(pending)))])
    try:
        for fut in queue:
            handle(fut)
            in_flight.remove(fut)
            if pending:
                queue.add(start())
    except catch:
        on_error(in_flight)
        raise
