"""One run's context: its hook, stage timings, warnings and notes.

Stages receive the :class:`Run` and report through it; nothing in it changes
the settings (those are frozen), so every stage sees the same ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .hooks import send_warning


@dataclass
class Run:
    """State shared by the stages of one run."""

    hook: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    quiet_warnings: frozenset[str] = frozenset()

    def report(self, step: str, artifact: Any = None, *, completed: int | None = None,
               total: int | None = None) -> None:
        if self.hook is not None:
            self.hook(step, artifact, completed=completed, total=total)

    def warn(self, message: str) -> None:
        """Keep the warning for the manifest and tell the hook (unless it was already told)."""
        self.warnings.append(message)
        if message not in self.quiet_warnings:
            send_warning(self.hook, message)

    def stage(self, name: str) -> "Stage":
        return Stage(self, name)

    def substep_hook(self, stage: str) -> Any:
        """A hook for a model's own progress, reported as ``stage/sub-step``."""

        def hook(step: str, artifact: Any = None, *, completed: int | None = None, total: int | None = None,
                 **_: Any) -> None:
            self.report(f"{stage}/{step}", None, completed=completed, total=total)

        return hook


class Stage:
    """Times a stage, reports its start, and reports its completion with ``artifact``."""

    def __init__(self, run: Run, name: str) -> None:
        self.run, self.name = run, name
        self.artifact: Any = None

    def __enter__(self) -> "Stage":
        self.started = time.perf_counter()
        self.run.report(self.name, None, completed=0, total=None)
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        elapsed = time.perf_counter() - self.started
        self.run.timings[self.name] = round(self.run.timings.get(self.name, 0.0) + elapsed, 4)
        if kind is None:
            self.run.report(self.name, self.artifact, completed=1, total=1)
