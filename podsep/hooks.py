"""Progress hooks: how the silent library tells the outside world what it is doing.

A hook is any callable ``hook(step, artifact=None, *, completed=None, total=None)``.
``step`` is a stage name (``decode``, ``diarization``, ``overlaps``,
``separation``, ``assembly``, ``export``) or a sub-step after a slash
(``diarization/embeddings``); ``done`` closes the run with the
:class:`~podsep.pipeline.SplitResult` as artifact.

Artifacts are the real results, handed over when a stage finishes (``completed ==
total``): the :class:`~podsep.diarization.Diarization` after ``diarization``, the
list of :class:`~podsep.overlaps.OverlapRegion` after ``overlaps``, each
:class:`~podsep.assignment.WindowAssignment` as ``separation`` progresses, the
track plans after ``assembly``, the written files after ``export``.

Warnings do not travel as a fake step: a hook that also has a ``warning(message)``
method receives them there. The CLI's rich display, bench's per-stage memory and
:class:`TimingHook` are all just hooks; :class:`Hooks` calls several in order.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

#: The stage names, in the order a run reports them.
STAGES = ("decode", "diarization", "overlaps", "adaptation", "separation", "assembly", "export")


@runtime_checkable
class Hook(Protocol):
    """Receives progress: a step name, an optional artifact and a count."""

    def __call__(self, step: str, artifact: Any = None, *, completed: int | None = None,
                 total: int | None = None) -> None: ...


def send_warning(hook: Any, message: str) -> None:
    """Deliver a warning to ``hook`` if it listens for warnings (a ``warning`` method)."""
    listener = getattr(hook, "warning", None)
    if callable(listener):
        listener(message)


class Hooks:
    """Several hooks called in order, as one hook (``None`` entries are skipped)."""

    def __init__(self, *hooks: Any) -> None:
        self.hooks = [h for h in hooks if h is not None]

    def __call__(self, step: str, artifact: Any = None, *, completed: int | None = None,
                 total: int | None = None) -> None:
        for hook in self.hooks:
            hook(step, artifact, completed=completed, total=total)

    def warning(self, message: str) -> None:
        for hook in self.hooks:
            send_warning(hook, message)

    def __enter__(self) -> "Hooks":
        for hook in self.hooks:
            if hasattr(hook, "__enter__"):
                hook.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for hook in reversed(self.hooks):
            if hasattr(hook, "__exit__"):
                hook.__exit__(*exc)


class TimingHook:
    """Wall time per stage, from the first report of a stage to its completion."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def __call__(self, step: str, artifact: Any = None, *, completed: int | None = None,
                 total: int | None = None) -> None:
        stage = step.partition("/")[0]
        if stage not in STAGES:
            return
        now = time.perf_counter()
        self.started.setdefault(stage, now)
        if total is not None and completed is not None and completed >= total:
            self.seconds[stage] = round(now - self.started[stage], 4)
