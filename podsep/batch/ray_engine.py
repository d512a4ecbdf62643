"""The Ray engine: the same episodes as Ray tasks, served by long-lived actors that hold the models.

Loading pyannote and SepFormer takes longer than splitting a short episode, so
models must stay loaded: each actor holds one
:class:`~podsep.batch.worker.EpisodeWorker` (the very code the local engine's
processes run, hence identical results and the same status records) and takes
episodes one at a time. On a cluster with GPUs there is one actor per GPU
(``num_gpus=1``); without, ``--workers`` CPU actors of ``--threads`` CPUs each.
Each actor also asks Ray for its expected peak memory, so that Ray never packs
more of them on a node than fit.

Without ``--ray-address`` a local Ray instance is started for the batch and
shut down after it; with one (``auto``, ``ray://...``, ``host:port``) the
cluster's nodes need podsep installed and the input and output folders
mounted at the same paths. Ray is imported only here, lazily: it is an optional
extra (``pip install 'podsep[ray]'``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from ..config import Settings
from ..errors import PodsepError
from . import worker as worker_module
from .worker import Job, Outcome

OBJECT_STORE_BYTES = 128 * 1024 * 1024  # results are small records: keep Ray's shared memory small locally


def import_ray() -> Any:
    """Ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise PodsepError("the Ray engine needs Ray: pip install 'podsep[ray]' (or pip install 'ray[default]')") from None
    return ray


class EpisodeActor:
    """A Ray actor's body: one EpisodeWorker, models loaded once (decorated with ``ray.remote`` at run time)."""

    def __init__(self, settings: Settings, hf_token: str | None, threads: int) -> None:
        from ..cli.main import _quiet_libraries

        _quiet_libraries()
        self.worker = worker_module.EpisodeWorker(settings, hf_token=hf_token, threads=threads)

    def warm_up(self, diarizer: bool) -> tuple[str, list[str], int]:
        """Load the models; (worker name, warnings, peak memory). A PodsepError says why loading failed."""
        messages = self.worker.warm_up(diarizer=diarizer)
        return self.worker.name, messages, worker_module.peak_rss_bytes()

    def split(self, job: Job) -> Outcome:
        return self.worker.run(job)


def connect(ray: Any, address: str | None, *, cpus: int) -> bool:
    """Connect to ``address`` or start a local instance with ``cpus`` CPUs; True when started here.

    A Ray already initialised in this process (a test session, a notebook) is used as it is.
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **options)
            return False
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, **options)
        return True
    except Exception as error:  # ConnectionError, RuntimeError, ValueError...: all one line for the user
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PodsepError(f"cannot connect to {where}: {first}") from error


def run_ray(jobs: list[Job], sink: Any, *, settings: Settings, hf_token: str | None, workers: int, threads: int,
            address: str | None, memory_per_worker: float | None, diarizer: bool = True) -> None:
    """Split ``jobs`` on Ray actors; every outcome goes to ``sink.finished`` (as with the local engine)."""
    ray = import_ray()
    started_here = connect(ray, address, cpus=max(1, workers) * threads)
    actors: dict[Any, str] = {}
    in_flight: dict[Any, tuple[Any, Job, float]] = {}
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpus = gpus > 0 and settings.device in ("auto", "cuda")  # Ray gives each actor its own GPU
        count = gpus if use_gpus else (workers or max(1, int(resources.get("CPU", 1) // threads)))
        options: dict[str, Any] = {"num_cpus": threads, "max_restarts": 0}
        if use_gpus:
            options["num_gpus"] = 1
        if memory_per_worker and address:
            options["memory"] = int(memory_per_worker)  # Ray packs no more actors on a node than fit
        if not use_gpus and resources.get("CPU", 0) < threads:
            raise PodsepError(f"the Ray cluster has {resources.get('CPU', 0):g} CPUs; an actor needs {threads} "
                              "(lower --threads)")
        actor_class = ray.remote(**options)(EpisodeActor)
        queue = list(reversed(jobs))  # pop() from the end: longest first, as sorted by the runner
        numbers = iter(range(1, 1 << 30))

        def start() -> Any:
            actor = actor_class.remote(settings, hf_token, threads)
            name = f"actor {next(numbers)}"
            actors[actor] = name
            sink.worker_starting(name)
            return actor

        pending_ready = {}
        for _ in range(min(count, len(queue))):
            actor = start()
            pending_ready[actor.warm_up.remote(diarizer)] = actor
        idle: list[Any] = []
        deaths_before_ready = 0
        while queue or in_flight:
            while idle and queue:
                actor, job = idle.pop(), queue.pop()
                reference = actor.split.remote(job)
                in_flight[reference] = (actor, job, time.perf_counter())
                sink.started(job, actors[actor])
            waiting = list(in_flight) + list(pending_ready)
            if not waiting:  # cannot happen while a replacement is started for every lost actor
                raise PodsepError(f"no Ray actor left to split the {len(queue)} remaining episode(s)")
            done, _ = ray.wait(waiting, num_returns=1, timeout=0.5)
            for reference in done:
                if reference in pending_ready:
                    actor = pending_ready.pop(reference)
                    try:
                        name, messages, peak = ray.get(reference)
                    except ray.exceptions.RayActorError:
                        deaths_before_ready += 1
                        actors.pop(actor, None)
                        if deaths_before_ready >= 3 and not idle and not in_flight:
                            raise PodsepError("Ray actors keep dying while loading the models (out of memory?)")
                        if queue:
                            replacement = start()
                            pending_ready[replacement.warm_up.remote(diarizer)] = replacement
                        continue
                    except ray.exceptions.RayTaskError as error:
                        raise PodsepError(_task_error(error)) from None
                    sink.worker_ready(f"{actors[actor]} ({name})", messages, peak)
                    idle.append(actor)
                    continue
                actor, job, dispatched = in_flight.pop(reference)
                try:
                    outcome = ray.get(reference)
                except ray.exceptions.RayActorError:
                    name = actors.pop(actor, "actor")
                    if job.attempt < 2:
                        sink.retrying(job, f"{name} died")
                        queue.append(Job(job.index, job.episode, job.key, True, job.record, job.attempt + 1))
                    else:
                        text = "its Ray actor died twice while splitting it (out of memory?)"
                        worker_module.failed_record(job, text)
                        sink.finished(job, Outcome(job.index, "failed", text), 0.0)
                    if queue:
                        replacement = start()
                        pending_ready[replacement.warm_up.remote(diarizer)] = replacement
                    continue
                except ray.exceptions.RayTaskError as error:
                    outcome = Outcome(job.index, "failed", _task_error(error))
                    worker_module.failed_record(job, outcome.error or "failed")
                sink.finished(job, outcome, time.perf_counter() - dispatched)
                idle.append(actor)
            sink.tick()
    finally:
        for actor in list(actors):
            try:
                ray.kill(actor)
            except Exception:
                pass
        if started_here:
            ray.shutdown()


def _task_error(error: Any) -> str:
    """The one line a failed Ray task carries (a PodsepError's own message when it is one)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, PodsepError):
        return str(cause)
    text = str(cause or error).strip().splitlines()
    return f"internal error in a Ray worker: {text[-1] if text else type(error).__name__}"
