"""What a batch is made of: files, folders (recursive) and lists, turned into episodes.

A user points ``podsep batch`` at whatever they have: a few files, the folder of
a whole show, or a list exported from a spreadsheet with the speaker count of
each episode. Every audio or video file becomes one :class:`Episode` that knows
where its result goes: outputs mirror the input tree under ``-o`` (a folder's
sub-folders are kept; files given one by one go straight under ``-o``), each
result folder being exactly what ``podsep split`` writes there.

Problems that concern one episode (a missing file, two inputs that would write
the same result folder) are kept on the episode and reported like any failure;
only a list that cannot be read at all stops the batch, since it *is* the batch.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import PodsepError
from ..export import safe_name

#: Extensions taken from folders: what ffmpeg decodes and podcasts are published as.
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma", ".aif",
                            ".aiff", ".aifc", ".mka", ".amr", ".ac3", ".caf", ".m4b", ".mp2", ".wv"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg",
                            ".ts", ".3gp"})
LIST_SUFFIXES = frozenset({".txt", ".csv"})
RECORD_SUFFIX = ".podsep-status.json"
CSV_COLUMNS = ("path", "num_speakers", "min_speakers", "max_speakers", "names", "diarization")


@dataclass(frozen=True)
class Episode:
    """One recording of a batch and everything that is particular to it.

    ``label`` is how the episode is shown (its path relative to the folder or list
    it came from); ``output_parent`` is the folder its result folder goes into.
    Speaker hints and names given here take precedence over the command line's.
    ``problem`` is set when the episode cannot be run at all (it is then failed
    with that reason without reaching a worker).
    """

    path: Path
    label: str
    output_parent: Path
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    names: tuple[str, ...] | None = None
    diarization: str | None = None
    problem: str | None = None
    duration: float | None = field(default=None, compare=False)

    @property
    def stem(self) -> str:
        """The result's stem, as ``podsep split`` names it."""
        return safe_name(self.path.stem or "audio")

    @property
    def result_folder(self) -> Path:
        return self.output_parent / self.stem

    @property
    def record_path(self) -> Path:
        """The episode's status record, beside its result folder (never inside it: that is replaced whole)."""
        return self.output_parent / f"{self.stem}{RECORD_SUFFIX}"

    def hints(self) -> dict[str, int]:
        """The speaker counts this episode sets itself."""
        values = {"num_speakers": self.num_speakers, "min_speakers": self.min_speakers,
                  "max_speakers": self.max_speakers}
        return {key: value for key, value in values.items() if value is not None}


def is_media(path: Path) -> bool:
    """Whether a folder's file is taken as an episode (by extension, case-insensitive)."""
    suffix = path.suffix.lower()
    return suffix in AUDIO_SUFFIXES or suffix in VIDEO_SUFFIXES


def discover(inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *,
             names: Sequence[str] | None = None, diarization: str | None = None) -> list[Episode]:
    """Every episode named by ``inputs``, in a stable order, with its output location.

    ``names`` and ``diarization`` are the command line's (the latter only makes
    sense for a batch of one). The output folder itself is never searched, so
    ``podsep batch . -o split/`` does not take its own results as inputs.
    """
    out = Path(output).absolute()
    default_names = tuple(names) if names else None
    found: list[Episode] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found.extend(_from_list(path, out, default_names))
        elif path.is_dir():
            found.extend(_from_folder(path, path, out, default_names))
        else:
            problem = None if path.is_file() else "input not found"
            found.append(Episode(path.absolute(), str(raw), out, names=default_names, problem=problem))
    found = _unique(found)
    if diarization is not None:
        runnable = [e for e in found if e.problem is None]
        if len(runnable) > 1:
            raise PodsepError("--diarization describes one recording: give per-episode RTTM files in a CSV list's "
                              "'diarization' column instead")
        found = [replace(e, diarization=diarization) for e in found]
    return found


def _from_folder(folder: Path, root: Path, out: Path, names: tuple[str, ...] | None,
                 rel_base: Path | None = None) -> list[Episode]:
    """Audio and video files under ``folder`` (hidden entries and the output folder skipped)."""
    episodes = []
    base = rel_base if rel_base is not None else Path()
    for current, folders, files in os.walk(folder):
        here = Path(current)
        folders[:] = sorted(d for d in folders if not d.startswith(".") and not _same(here / d, out))
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or not is_media(path):
                continue
            relative = path.relative_to(root)
            episodes.append(Episode(path.absolute(), str(base / relative), out / base / relative.parent, names=names))
    return episodes


def _same(path: Path, other: Path) -> bool:
    try:
        return path.absolute() == other or path.resolve() == other.resolve()
    except OSError:
        return False


def _from_list(path: Path, out: Path, names: tuple[str, ...] | None) -> list[Episode]:
    """A ``.txt`` list (one path a line; blank lines and ``#`` comments skipped) or a ``.csv`` list."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise PodsepError(f"cannot read list {path}: {reason}") from error
    base = path.parent
    rows: Iterable[tuple[int, dict[str, str]]]
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(path, text)
    else:
        rows = ((number, {"path": line.strip()}) for number, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.lstrip().startswith("#"))
    episodes: list[Episode] = []
    for number, row in rows:
        where = f"{path.name} line {number}"
        entry = Path(row["path"]).expanduser()
        full = entry if entry.is_absolute() else base / entry
        values = _row_values(row, where, base)
        episode_names = values.pop("names", None) or names
        if full.is_dir():
            relative = _relative_or_name(full, base, directory=True)
            for episode in _from_folder(full, full, out, episode_names, rel_base=relative):
                episodes.append(replace(episode, **values))
            continue
        relative = _relative_or_name(full, base)
        problem = None if full.is_file() else f"input not found ({where})"
        episodes.append(Episode(full.absolute(), str(relative), out / relative.parent, names=episode_names,
                                problem=problem, **values))
    return episodes


def _relative_or_name(path: Path, base: Path, *, directory: bool = False) -> Path:
    """``path`` relative to the list's folder when inside it; otherwise its name alone."""
    try:
        return path.absolute().relative_to(base.absolute())
    except ValueError:
        return Path(path.name) if not directory else Path(path.absolute().name)


def _csv_rows(path: Path, text: str) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader)
    except StopIteration:
        raise PodsepError(f"list {path} is empty") from None
    except csv.Error as error:
        raise PodsepError(f"cannot read list {path}: {error}") from error
    columns = [h.strip().lower().replace("-", "_").replace(" ", "_") for h in header]
    if "path" not in columns:
        raise PodsepError(f"list {path} has no 'path' column (its columns: {', '.join(header) or 'none'}); "
                          f"a CSV list needs 'path' and may have {', '.join(CSV_COLUMNS[1:])}")
    try:
        for number, cells in enumerate(reader, 2):
            if not any(cell.strip() for cell in cells):
                continue
            row = {column: (cells[i].strip() if i < len(cells) else "") for i, column in enumerate(columns)}
            if not row["path"]:
                raise PodsepError(f"{path.name} line {number}: the 'path' cell is empty")
            yield number, row
    except csv.Error as error:
        raise PodsepError(f"cannot read list {path}: {error}") from error


def _row_values(row: dict[str, str], where: str, base: Path) -> dict[str, object]:
    """Per-episode values of one list row (speaker counts, names, an RTTM), checked."""
    values: dict[str, object] = {}
    for key in ("num_speakers", "min_speakers", "max_speakers"):
        cell = row.get(key, "")
        if cell:
            try:
                number = int(cell)
            except ValueError:
                raise PodsepError(f"{where}: {key} must be a whole number, not {cell!r}") from None
            if number < 1:
                raise PodsepError(f"{where}: {key} must be at least 1, not {number}")
            values[key] = number
    low, high = values.get("min_speakers"), values.get("max_speakers")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        raise PodsepError(f"{where}: min_speakers ({low}) is above max_speakers ({high})")
    cell = row.get("names", "")
    if cell:
        separator = ";" if ";" in cell else ","
        values["names"] = tuple(n.strip() for n in cell.split(separator) if n.strip())
    cell = row.get("diarization", "")
    if cell:
        rttm = Path(cell).expanduser()
        values["diarization"] = str(rttm if rttm.is_absolute() else base / rttm)
    return values


def _unique(episodes: list[Episode]) -> list[Episode]:
    """Drop repeats of one file; refuse (per episode) two inputs that would write one result folder."""
    seen_files: set[Path] = set()
    owners: dict[str, Episode] = {}
    kept: list[Episode] = []
    for episode in episodes:
        if episode.problem is None:
            try:
                real = episode.path.resolve()
            except OSError:
                real = episode.path
            if real in seen_files:
                continue
            seen_files.add(real)
        key = os.path.normcase(str(episode.result_folder)).casefold()
        owner = owners.get(key)
        if owner is not None and episode.problem is None:
            episode = replace(episode, problem=f"its result folder {episode.result_folder} is already the result of "
                                               f"{owner.label}; rename one of them or split them in separate batches")
        elif owner is None:
            owners[key] = episode
        kept.append(episode)
    return kept
