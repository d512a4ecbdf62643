"""Parking separated window audio on disk until assembly reads it back.

Separation finishes every window before assembly starts, so the separated
sources of the whole recording would otherwise sit in memory at once: their
size grows with the recording's overlapped time (a three-hour episode at
48 kHz with an hour of cross-talk holds gigabytes). Past a small in-memory
budget, each finished window's sources go to one anonymous temporary file
(unlinked at creation, so a crash or Ctrl-C leaves nothing behind) and are
read back slice by slice with ``pread``: memory stays bounded by the budget
plus one assembly block, whatever the length of the recording.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from .errors import PodsepError

#: Separated audio kept in memory before windows start going to disk.
IN_MEMORY_BUDGET = 256 * 1024 * 1024


class SpillError(PodsepError):
    """The temporary file for separated audio could not be written or read."""


class DiskArray:
    """A read-only float32 array (a vector, or ``(channels, n)`` rows) stored in a spill file.

    Slicing reads just that part: ``array[a:b]`` for a vector, ``array[:, a:b]``
    for rows.
    """

    def __init__(self, fd: int, offset: int, length: int, rows: int | None = None) -> None:
        self._fd = fd
        self._offset = offset
        self._length = length
        self._rows = rows

    def __len__(self) -> int:
        return self._length if self._rows is None else self._rows

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._length,) if self._rows is None else (self._rows, self._length)

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._rows is not None:
            if not (isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None)):
                raise TypeError("a multi-row DiskArray only supports [:, a:b]")
            return np.stack([self._read(row * self._length, key[1]) for row in range(self._rows)])
        return self._read(0, key)

    def _read(self, base: int, key: Any) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a DiskArray only supports contiguous slices")
        start, stop, _ = key.indices(self._length)
        count = max(0, stop - start)
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        try:
            data = os.pread(self._fd, 4 * count, self._offset + 4 * (base + start))
        except OSError as error:
            raise SpillError(f"cannot read back separated audio from the temporary file: {error.strerror}") from error
        if len(data) != 4 * count:
            raise SpillError("the temporary file for separated audio was cut short")
        return np.frombuffer(data, dtype=np.float32).copy()


class SpillStore:
    """Keeps finished windows' sources in memory up to ``budget`` bytes, then on disk.

    Use as a context manager; closing it deletes the file (it has no name on
    disk anyway). ``spilled_bytes`` says how much went to disk.
    """

    def __init__(self, budget: int | None = None, folder: str | None = None) -> None:
        self.budget = IN_MEMORY_BUDGET if budget is None else budget
        self.folder = folder
        self.held_bytes = 0
        self.spilled_bytes = 0
        self._file: Any = None

    def park(self, sources: dict[str, Any]) -> None:
        """Move a finished window's ``{speaker: float32 vector or (channels, n) array}`` to disk if the budget is spent (in place)."""
        size = sum(v.nbytes for v in sources.values() if not isinstance(v, DiskArray))
        if size == 0:
            return
        if self.held_bytes + size <= self.budget:
            self.held_bytes += size
            return
        handle = self._open()
        for speaker, vector in list(sources.items()):
            if isinstance(vector, DiskArray):
                continue
            data = np.ascontiguousarray(vector, dtype=np.float32)
            try:
                offset = handle.seek(0, os.SEEK_END)
                handle.write(data.tobytes())
                handle.flush()
            except OSError as error:
                raise SpillError(f"cannot write separated audio to a temporary file in "
                                 f"{self.folder or tempfile.gettempdir()}: {error.strerror} "
                                 f"(set TMPDIR to a disk with more room)") from error
            rows = data.shape[0] if data.ndim == 2 else None
            sources[speaker] = DiskArray(handle.fileno(), offset, data.shape[-1], rows)
            self.spilled_bytes += data.nbytes

    def _open(self) -> Any:
        if self._file is None:
            try:
                self._file = tempfile.TemporaryFile(prefix="podsep-separated-", dir=self.folder)
            except OSError as error:
                raise SpillError(f"cannot create a temporary file for separated audio: {error.strerror}") from error
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "SpillStore":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
