"""CPU threads of one podsep process: chosen from the cores that are actually free, and set explicitly.

PyTorch, OpenMP, MKL and OpenBLAS each start one thread per core by default and
(OpenMP) keep them spinning between parallel regions. On a machine where
another process already holds a core, every parallel region then waits for the
thread that shares that core: a 10-minute split that takes 15 s alone took 36 s
with one of two cores busy, and several such processes side by side burn CPU
time spinning against each other. So podsep decides the count itself:

* :func:`free_cores` looks at how busy this process's cores were over a short
  sample (``/proc/stat``) and at the cgroup CPU quota, not at the core count;
* :func:`threads_per_worker` divides those cores between the workers of a batch,
  so that workers never oversubscribe the machine;
* :func:`configure_threads` sets torch's intra-op and inter-op pools, the
  OpenMP/MKL/OpenBLAS environment (for libraries loaded later, and for child
  processes) and, through ``threadpoolctl`` when present, BLAS libraries that
  are already loaded. OpenMP threads are told to sleep rather than spin while
  they wait (``OMP_WAIT_POLICY=PASSIVE``), unless the user chose otherwise.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")
SAMPLE_SECONDS = 0.25  # how long free_cores() watches the cores
BUSY_SHARE = 0.5  # a core busy more than this share of the sample counts as taken


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, math.floor(quota + 0.5)))
    return max(1, count)


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup v2 (``cpu.max``) or v1 (``cfs_quota_us``) quota, if any."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _cpu_times() -> dict[int, tuple[int, int]]:
    """(busy, total) jiffies per CPU from ``/proc/stat``."""
    times: dict[int, tuple[int, int]] = {}
    with open("/proc/stat", encoding="ascii") as stream:
        for line in stream:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *fields = line.split()
            values = [int(v) for v in fields[:8]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            times[int(name[3:])] = (sum(values) - idle, sum(values))
    return times


def free_cores(sample_seconds: float = SAMPLE_SECONDS) -> int:
    """Usable cores that other processes are not keeping busy right now (at least 1).

    Where ``/proc/stat`` cannot be read (not Linux) every usable core counts as free.
    """
    usable = usable_cores()
    try:
        allowed = os.sched_getaffinity(0)
        before = _cpu_times()
        time.sleep(sample_seconds)
        after = _cpu_times()
    except (AttributeError, OSError, ValueError):
        return usable
    busy = 0.0
    for cpu in allowed:
        if cpu in before and cpu in after:
            total = after[cpu][1] - before[cpu][1]
            if total > 0:
                busy += (after[cpu][0] - before[cpu][0]) / total
    taken = math.floor(busy + 1.0 - BUSY_SHARE)  # a core busy more than BUSY_SHARE of the time is taken
    return max(1, usable - taken)


def threads_per_worker(workers: int = 1, cores: int | None = None) -> int:
    """Threads each of ``workers`` processes should use so that together they fit ``cores``.

    ``cores`` defaults to :func:`free_cores`. Never below one thread: with more
    workers than free cores the workers share cores, one thread each.
    """
    cores = free_cores() if cores is None else cores
    return max(1, cores // max(1, workers))


def _threads_from_environment() -> int | None:
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return value if value > 0 else None


_configured = False  # set once podsep's CLI or batch worker chose this process's threads


@contextmanager
def threads_for_a_library_call() -> Iterator[int]:
    """While ``podsep.split`` runs inside someone else's program: torch threads within the free cores.

    torch starts one thread per core; on a machine where another job keeps a
    core busy, two threads made a 90 s split take 210 s instead of 2 s (every
    parallel region waits for the thread that shares the busy core). The CLI
    and batch workers choose their threads up front (:func:`configure_threads`,
    which this leaves alone, as it does an explicit single thread); a library
    call gets the free cores for its duration and the caller's setting back.
    """
    import torch

    previous = torch.get_num_threads()
    if _configured or previous <= 1 or _threads_from_environment() is not None:
        yield previous
        return
    allowed = max(1, min(previous, free_cores()))
    torch.set_num_threads(allowed)
    try:
        yield allowed
    finally:
        torch.set_num_threads(previous)


@contextmanager
def one_torch_thread(device: str = "cpu") -> Iterator[None]:
    """Run a block on one torch thread (on the CPU), then give the caller's thread count back.

    For podsep's small CPU models one thread per forward pass costs little (the embedded
    separator is faster so, and far faster on a core another job keeps busy; the speaker encoder
    runs groups of windows side by side instead), and their outputs are then the same bits
    whatever thread count the caller chose. A library call takes its count
    from the cores it finds free (:func:`threads_for_a_library_call`), so without this the same
    input could give tracks that differ in their last bits with the machine's load (session 28:
    up to 7e-8 between one and two threads, through the speaker encoder, which now runs fixed
    groups of windows side by side, each on one thread). OpenMP's count is per thread, so each
    worker thread that runs such a model says it itself.
    """
    if not str(device).startswith("cpu"):
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def configure_threads(n: int | None) -> int:
    """Make this process use ``n`` CPU threads in torch, OpenMP, MKL and OpenBLAS; returns ``n``.

    ``None`` means ``OMP_NUM_THREADS`` when the user set it, else
    :func:`threads_per_worker` for one worker (the free cores). Environment
    variables are set for libraries not loaded yet and for child processes;
    torch and loaded BLAS libraries are told directly.
    """
    global _configured
    if n is None:
        n = _threads_from_environment() or threads_per_worker(1)
    n = max(1, int(n))
    _configured = True
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when OpenMP loads, i.e. with torch below
    os.environ.setdefault("KMP_BLOCKTIME", "0")  # the same for Intel's OpenMP
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1 if n == 1 else min(n, 2))
    except RuntimeError:  # already set, or parallel work already started in this process
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    except Exception:  # threadpoolctl missing or a library it cannot drive: the variables above still hold
        pass
    return n
