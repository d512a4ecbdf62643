"""Per-episode status records: what was done, with which input, settings and models.

A batch over an archive is rerun: after Ctrl-C, after a crash, after a new
model revision, after someone fixed three broken files. Each episode therefore
has a small JSON record beside its result folder (``<stem>.podsep-status.json``)
saying ``pending``, ``running``, ``done`` or ``failed`` (with its one-line
error), the input's size, modification time and SHA-256, the settings that
shape the result, and the identity of the models. Records are replaced
atomically (written beside, then renamed), so a reader sees the old record or
the new one, never half of one.

:func:`decide` turns a record into what a rerun does: skip an episode done with
the same input and settings, redo one whose input, settings or models changed,
leave a failure alone unless ``--retry-failed``, and redo anything that was in
flight when the batch stopped. Both engines write the same records, so a batch
begun on one engine can be finished on the other.

The input check is quick first: the recorded size and modification time. Only
when those differ is the file hashed again, so rerunning a finished archive
costs a ``stat`` per episode, not a read of every file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Settings
from ..errors import OutputError
from ..export import write_atomically
from .inputs import Episode

RECORD_FORMAT = "podsep-batch-status/1"
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
LOCK_NAME = ".podsep-batch.lock"


# -- records -------------------------------------------------------------------------------------


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None when there is none (or it is not one of ours)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    return record


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Replace the record at ``path`` in one rename (a reader never sees half a record)."""
    first = {key: record[key] for key in ("status", "episode", "error") if key in record}
    rest = {k: v for k, v in record.items() if k not in first and k not in ("format", "updated_at")}  # re-written
    record = dict(first, **rest, format=RECORD_FORMAT, updated_at=now())
    text = json.dumps(record, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    def write(temporary: Path) -> None:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())  # a record survives a crash of the machine, not just of the worker

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, write)
    except OSError as error:
        raise OutputError(f"cannot write status record {path}: {error.strerror or error}") from error


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def worker_name() -> str:
    """``host:pid``: where an episode runs (a record saying ``running`` names it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def input_stat(path: Path) -> dict[str, Any]:
    """Size and modification time: the quick check of "same input"."""
    try:
        stat = path.stat()
    except OSError:
        return {"size": None, "mtime_ns": None}
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file (as the manifest's ``input.sha256``), or None if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


# -- what shapes a result ----------------------------------------------------------------------


def relevant_settings(settings: Settings, *, given_diarization: bool) -> dict[str, Any]:
    """The settings that can change this episode's result files (the rest never triggers a redo).

    Where the cache lives, whether it is used, and the knobs of a stage that does
    not run (separation under ``--overlap duplicate``, the diarizer when an RTTM
    is given) cannot change a result, so changing them redoes nothing.
    Everything else, including settings added later, counts.
    """
    tree = settings.to_dict()
    tree.pop("cache_dir", None)
    diarization = tree.get("diarization", {})
    diarization.pop("cache", None)
    if given_diarization:
        tree.pop("diarization", None)
    elif diarization.get("backend") == "embedded":
        diarization.pop("model", None)
        diarization.pop("revision", None)
    overlaps = tree.get("overlaps", {})
    if overlaps.get("policy") != "separate":
        tree.pop("separation", None)
        tree.pop("assignment", None)
        for key in ("fallback", "context", "max_window", "chunk_overlap"):
            overlaps.pop(key, None)
    else:
        separation = tree.get("separation", {})
        if separation.get("backend") == "embedded":
            separation.pop("model", None)
            separation.pop("revision", None)
        elif separation.get("backend") == "sepformer":
            separation.pop("embedded_model", None)
            separation.pop("passes", None)
            separation.pop("high_band", None)
    return tree


def model_identity(settings: Settings, *, hf_token: str | None = None, diarizer: bool = True) -> dict[str, Any]:
    """Which models would run, as precisely as can be known without loading them.

    A Hub model is its commit (asked of the Hub when it answers, else the cached
    snapshot's), a local folder its file listing, an embedded model its weight
    files' SHA-256 and package versions. A model that cannot be had is recorded as
    such, so that it becoming available (a fallback no longer needed) redoes the
    episodes it would change. Computed once per batch.
    """
    identity: dict[str, Any] = {"podsep": __version__}
    if diarizer:
        backend = settings.diarization.backend
        entry: dict[str, Any] = {"backend": backend}
        if backend in ("auto", "pyannote"):
            entry["pyannote"] = _source_identity(settings.diarization.model, settings.diarization.revision,
                                                 settings.cache_dir, hf_token)
        if backend in ("auto", "embedded"):
            entry["embedded"] = _embedded_diarizer_identity()
        identity["diarization"] = entry
    if settings.overlaps.policy == "separate":
        backend = settings.separation.backend
        entry = {"backend": backend}
        if backend in ("auto", "sepformer"):
            entry["sepformer"] = _source_identity(settings.separation.model, settings.separation.revision,
                                                  settings.cache_dir, hf_token)
        if backend in ("auto", "embedded"):
            entry["embedded"] = _embedded_separator_identity(settings.separation.embedded_model,
                                                             settings.separation.high_band)
        identity["separation"] = entry
    return identity


def _source_identity(source: str, revision: str | None, cache_dir: str | None, token: str | None) -> dict[str, Any]:
    from ..models.diarizers import folder_fingerprint
    from ..models.hub import cached_snapshot, hub_reachable, hub_token, looks_like_local_path, resolve_revision

    folder = Path(source).expanduser()
    if folder.is_dir():
        return {"folder": str(folder.absolute()), "fingerprint": folder_fingerprint(folder)}
    if looks_like_local_path(source):
        return {"folder": str(folder), "fingerprint": None}
    token = hub_token(token)
    if hub_reachable():
        with contextlib.suppress(Exception):
            from huggingface_hub import HfApi

            return {"hub": source, "commit": HfApi().model_info(source, revision=revision, token=token).sha}
    try:
        return {"hub": source, "commit": resolve_revision(cached_snapshot(source, revision, cache_dir, token))}
    except Exception:
        return {"hub": source, "commit": None, "revision": revision}


def _embedded_diarizer_identity() -> dict[str, Any]:
    from importlib import metadata

    from ..models.embedded.separator import SHIPPED_WEIGHTS

    versions = {}
    for package in ("silero-vad", "resemblyzer"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    data = Path(__file__).resolve().parent.parent / "data"
    files = {p.name: file_sha256(p) for p in sorted(data.glob("*")) if p.is_file() and p.name != SHIPPED_WEIGHTS}
    return {"packages": versions, "data": files}


def _embedded_separator_identity(weights: str | None, high_band: str = "auto") -> dict[str, Any]:
    from ..models.embedded.separator import high_band_file, high_band_setting, shipped_weights_path

    path = Path(weights).expanduser() if weights else shipped_weights_path()
    identity: dict[str, Any] = {"weights": path.name, "sha256": file_sha256(path) if path.is_file() else None}
    top = high_band_file(high_band_setting(high_band))
    if top is not None:
        identity["high_band"] = {"weights": top.name, "sha256": file_sha256(top) if top.is_file() else None}
    return identity


def episode_key(settings: dict[str, Any], episode: Episode, identity: dict[str, Any]) -> str:
    """One hash of everything that shapes this episode's result besides its input."""
    rttm = None
    if episode.diarization:
        rttm_path = Path(episode.diarization)
        if not rttm_path.exists() and ":" in episode.diarization:  # file.rttm:URI, as podsep split reads it
            rttm_path = Path(episode.diarization.rpartition(":")[0])
        rttm = {"file": episode.diarization, "sha256": file_sha256(rttm_path)}
    payload = {"settings": settings, "names": list(episode.names or []), "diarization": rttm, "models": identity}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# -- deciding ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What a batch does with one episode: ``run`` it, ``skip`` it (done) or report it ``failed``."""

    action: str
    reason: str
    overwrite: bool = False
    refresh_stat: bool = False


def decide(episode: Episode, key: str, record: dict[str, Any] | None, *, retry_failed: bool,
           overwrite: bool) -> Decision:
    """Skip, redo or leave alone one episode, from its record (see the module docstring)."""
    if episode.problem is not None:
        return Decision("fail", episode.problem)
    if record is None:
        if episode.result_folder.exists() and not overwrite:
            return Decision("fail", f"output {episode.result_folder} already exists and no batch record accounts "
                                    "for it (use --overwrite to replace it)")
        return Decision("run", "new", overwrite=overwrite)
    if overwrite:
        return Decision("run", "--overwrite", overwrite=True)
    same_input, stat_changed = same_input_as(episode.path, record.get("input") or {})
    same_key = record.get("key") == key
    status = record.get("status")
    if status == DONE and same_input and same_key and _result_present(episode, record):
        return Decision("skip", "done with the same input and settings", refresh_stat=stat_changed)
    if status == FAILED and same_input and same_key and not retry_failed:
        return Decision("fail", f"{record.get('error') or 'failed'} (failed before; --retry-failed tries again)")
    if not same_input:
        reason = "input changed"
    elif not same_key:
        reason = "settings or models changed"
    elif status == FAILED:
        reason = "retrying a failure"
    elif status == DONE:
        reason = "result folder missing"
    else:
        reason = f"was {status} when a batch stopped"
    return Decision("run", reason, overwrite=True)


def same_input_as(path: Path, recorded: dict[str, Any]) -> tuple[bool, bool]:
    """(same input, stat changed): size and mtime first, SHA-256 only when they differ."""
    current = input_stat(path)
    if current["size"] is None:
        return False, True
    if current == {"size": recorded.get("size"), "mtime_ns": recorded.get("mtime_ns")}:
        return True, False
    if not recorded.get("sha256") or current["size"] != recorded.get("size"):
        return False, True
    return file_sha256(path) == recorded["sha256"], True


def _result_present(episode: Episode, record: dict[str, Any]) -> bool:
    manifest = (record.get("result") or {}).get("manifest")
    if manifest:
        return (episode.result_folder / manifest).is_file()
    return episode.result_folder.is_dir()


def clean_staging(episode: Episode) -> None:
    """Remove hidden staging folders a killed worker left beside this episode's result.

    ``podsep split`` writes into ``.<name>.partial-*`` and retires an old result as
    ``.<name>.old-*`` (see :class:`podsep.export.ResultStaging`); only a process
    that died mid-write leaves them. Called when no worker is writing this episode.
    """
    prefix = f".{episode.result_folder.name[:40]}."
    try:
        entries = list(episode.output_parent.iterdir())
    except OSError:
        return
    for entry in entries:
        rest = entry.name[len(prefix):] if entry.name.startswith(prefix) else ""
        if rest.startswith(("partial-", "old-")) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def release_unfinished(episode: Episode) -> None:
    """Put an episode whose worker was killed mid-run back to ``pending`` (its record still says ``running``).

    A stopped worker normally rewrites its own record; one killed (after the stop's
    grace period, or by Ray) cannot. Called by the driver once no worker is writing
    this episode, so that the record says what a rerun will do with it.
    """
    record = read_record(episode.record_path)
    if record is None or record.get("status") != RUNNING:
        return
    try:
        write_record(episode.record_path, dict(record, status=PENDING, error="interrupted (its worker was stopped)"))
    except OutputError:
        pass  # the output folder went away or is read-only: the report still says pending


# -- one batch at a time per output folder -------------------------------------------------------


class BatchLock:
    """An exclusive lock on the output folder: two batches writing one archive would redo each other's work."""

    def __init__(self, output: Path) -> None:
        self.path = output / LOCK_NAME
        self._handle: Any = None

    def __enter__(self) -> "BatchLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a+", encoding="utf-8")
        except OSError as error:
            raise OutputError(f"cannot write into output folder {self.path.parent}: "
                              f"{error.strerror or error}") from error
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "another process"
            self._handle.close()
            raise OutputError(f"another podsep batch ({holder}) is writing into {self.path.parent}; "
                              "wait for it to finish or choose another -o") from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(worker_name())
        self._handle.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.truncate(0)
            self._handle.close()
