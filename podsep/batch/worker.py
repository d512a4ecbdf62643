"""One worker of a batch: a loaded :class:`~podsep.pipeline.Splitter` and the code that runs one episode.

The local engine's processes and the Ray engine's actors both hold an
:class:`EpisodeWorker` and call :meth:`EpisodeWorker.run`, so the two engines
split the same way, byte for byte, and write the same status records: ``running``
when an episode starts, then ``done`` or ``failed`` with its one-line error, or
back to ``pending`` when the worker is stopped (Ctrl-C) mid-episode. Everything an
episode can raise becomes an :class:`Outcome`; nothing escapes to stop the batch
except an interruption.
"""

from __future__ import annotations

import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..errors import PodsepError
from . import state
from .inputs import Episode


@dataclass(frozen=True)
class Job:
    """One episode to split, as a worker receives it.

    ``record`` is what the status record says besides the status itself (key,
    settings, model identity, engine); ``attempt`` counts runs after a worker died.
    """

    index: int
    episode: Episode
    key: str
    overwrite: bool
    record: dict[str, Any]
    attempt: int = 1


@dataclass
class Outcome:
    """What became of one job (small and picklable: it travels back over a pipe or through Ray)."""

    index: int
    status: str
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    worker: str = ""
    peak_rss_bytes: int = 0


class _Listener:
    """The hook a worker gives the splitter: keeps warnings, passes stage changes on."""

    def __init__(self, index: int, on_stage: Callable[[int, str], None] | None) -> None:
        self.index, self.on_stage = index, on_stage
        self.warnings: list[str] = []
        self.stage = ""

    def __call__(self, step: str, artifact: Any = None, *, completed: int | None = None,
                 total: int | None = None) -> None:
        stage = step.partition("/")[0]
        if stage != self.stage and stage != "done":
            self.stage = stage
            if self.on_stage is not None:
                self.on_stage(self.index, stage)

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class EpisodeWorker:
    """Holds one Splitter (models loaded once) and splits episodes with it.

    ``threads`` is set for torch, OpenMP and BLAS before any model loads, so that
    the workers of a machine together use the cores it has free and no more.
    """

    def __init__(self, settings: Settings, *, hf_token: str | None, threads: int | None) -> None:
        from ..threads import configure_threads

        self.threads = configure_threads(threads)
        from ..pipeline import Splitter

        self.splitter = Splitter(settings, hf_token=hf_token)
        self.name = state.worker_name()

    def warm_up(self, *, diarizer: bool) -> list[str]:
        """Load the models now (not inside the first episode), returning their warnings.

        A model that cannot be loaded at all raises its one-line :class:`PodsepError`:
        every episode would fail the same way, so the batch stops instead.
        """
        messages: list[str] = []
        if diarizer:
            messages.extend(self.splitter.diarizer_status.warnings)
        if self.splitter.settings.overlaps.policy == "separate":
            messages.extend(self.splitter.separator_status.warnings)
        return messages

    def run(self, job: Job, on_stage: Callable[[int, str], None] | None = None) -> Outcome:
        """Split one episode; the status record says ``running`` meanwhile, then how it ended."""
        episode = job.episode
        started = time.perf_counter()
        record = dict(job.record, status=state.RUNNING, episode=episode.label, worker=self.name,
                      attempt=job.attempt, started_at=state.now(), error=None,
                      input=dict(state.input_stat(episode.path), path=str(episode.path)))
        record.pop("result", None)
        listener = _Listener(job.index, on_stage)
        try:
            state.write_record(episode.record_path, record)
            result = self.splitter.split(episode.path, output_dir=episode.output_parent,
                                         names=list(episode.names) if episode.names else None,
                                         diarization=episode.diarization, overwrite=job.overwrite,
                                         hook=listener, **episode.hints())
        except (KeyboardInterrupt, SystemExit):
            self._safe_write(episode, dict(record, status=state.PENDING, error="interrupted"))
            raise
        except PodsepError as error:
            return self._failed(job, record, str(error), started, listener)
        except MemoryError:
            return self._failed(job, record, "out of memory while splitting it (try fewer --workers or a smaller "
                                             "--batch-size)", started, listener)
        except Exception as error:  # a bug must cost one episode, not the batch
            from ..models.hub import redact

            first = str(error).splitlines()[0] if str(error) else ""
            message = redact(f"internal error: {type(error).__name__}: {first}")
            return self._failed(job, record, message, started, listener,
                                details=redact(traceback.format_exc(limit=8)))
        manifest = result.manifest
        summary = summarize(manifest)
        summary["manifest"] = result.files["manifest"].name if "manifest" in result.files else None
        wall = time.perf_counter() - started
        record["input"]["sha256"] = manifest["input"]["sha256"]
        done = dict(record, status=state.DONE, finished_at=state.now(), wall_seconds=round(wall, 3),
                    result=summary, models_used=manifest.get("models"), warnings=list(manifest.get("warnings", [])))
        try:
            state.write_record(episode.record_path, done)
        except PodsepError as error:
            return self._failed(job, record, str(error), started, listener)
        return Outcome(job.index, state.DONE, None, summary, wall, listener.warnings, self.name, peak_rss_bytes())

    def _failed(self, job: Job, record: dict[str, Any], message: str, started: float, listener: _Listener,
                details: str | None = None) -> Outcome:
        wall = time.perf_counter() - started
        record = dict(record, status=state.FAILED, error=message, finished_at=state.now(), wall_seconds=round(wall, 3))
        if details:
            record["traceback"] = details
        self._safe_write(job.episode, record)
        return Outcome(job.index, state.FAILED, message, {}, wall, listener.warnings, self.name, peak_rss_bytes())

    @staticmethod
    def _safe_write(episode: Episode, record: dict[str, Any]) -> None:
        try:
            state.write_record(episode.record_path, record)
        except PodsepError:
            pass  # the output folder went away or is read-only: the batch report still says what happened


def summarize(manifest: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a batch report shows for one episode, from its manifest."""
    overlaps = manifest.get("overlaps", [])
    return {
        "duration": manifest["input"]["duration"],
        "speakers": [s["name"] for s in manifest.get("speakers", [])],
        "overlap_seconds": round(sum(o["end"] - o["start"] for o in overlaps), 2),
        "separated_regions": sum(1 for o in overlaps if o.get("handling") == "separated"),
        "overlap_policy": manifest.get("overlap_policy"),
    }


def failed_record(job: Job, message: str) -> None:
    """Record a failure the worker could not record itself (it died while splitting)."""
    record = dict(job.record, status=state.FAILED, episode=job.episode.label, error=message, attempt=job.attempt,
                  finished_at=state.now(), input=dict(state.input_stat(job.episode.path), path=str(job.episode.path)))
    try:
        state.write_record(job.episode.record_path, record)
    except PodsepError:
        pass
