"""What the model loaders share: device choice, Hub error wording, revisions.

Both model families (pyannote pipelines, speechbrain separators) load from a
Hugging Face Hub id or a local folder, through the HF cache. When that fails the
user needs to know *why* in one line (gated, not found, offline, bad folder) and
what to do about it, without their token ever being printed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import PodsepError

_SNAPSHOT = re.compile(r"snapshots[/\\]([0-9a-f]{40})")


def pick_device(requested: str = "auto") -> str:
    """``auto`` → cuda, then mps, then cpu; an explicit device must exist."""
    import torch

    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PodsepError(f"device '{requested}' requested but no CUDA device is available (use --device cpu)")
        if ":" in requested:
            try:
                index = int(requested.split(":", 1)[1])
            except ValueError as error:
                raise PodsepError(f"invalid device '{requested}'") from error
            if index >= torch.cuda.device_count():
                raise PodsepError(f"device '{requested}' does not exist ({torch.cuda.device_count()} CUDA device(s))")
        return requested
    if requested == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PodsepError("device 'mps' requested but Metal is not available (use --device cpu)")
        return "mps"
    raise PodsepError(f"unknown device '{requested}' (use auto, cpu, cuda, cuda:N or mps)")


def podsep_cache_root() -> Path:
    """podsep's own cache folder: ``$PODSEP_CACHE``, else ``$XDG_CACHE_HOME/podsep``, else ``~/.cache/podsep``."""
    root = os.environ.get("PODSEP_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "podsep"


def hub_token(explicit: str | None = None) -> str | None:
    """The token to use: ``--hf-token``, else ``HF_TOKEN``, else none (HF's stored login still applies)."""
    return explicit or os.environ.get("HF_TOKEN") or None


def looks_like_local_path(source: str) -> bool:
    """A source that is meant as a folder rather than a Hub id."""
    return source.startswith((".", "/", "~")) or os.sep in source.strip("/").replace("/", "", 1) or Path(source).expanduser().exists()


def describe_hub_error(kind: str, source: str, error: BaseException) -> str:
    """One line saying why a ``kind`` model from ``source`` could not be loaded, and what to do."""
    from huggingface_hub import errors as hub

    name = type(error).__name__
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < 5:
        chain.append(chain[-1].__cause__)  # type: ignore[arg-type]
    kinds = {type(e) for e in chain}

    def has(klass: type) -> bool:
        return any(issubclass(k, klass) for k in kinds)

    url = f"https://hf.co/{source}"
    if has(hub.GatedRepoError):
        return (f"{kind} model '{source}' is gated: accept its conditions at {url} while logged in, "
                "then pass --hf-token or set HF_TOKEN")
    if has(hub.RepositoryNotFoundError):
        return (f"{kind} model '{source}' was not found on the Hub (or is private: pass --hf-token/HF_TOKEN); "
                "check the id, or give a local folder")
    if has(hub.RevisionNotFoundError):
        return f"{kind} model '{source}' has no such revision"
    if has(hub.LocalEntryNotFoundError) or has(hub.OfflineModeIsEnabled) or _is_connection_error(chain):
        return (f"{kind} model '{source}' is not in the local cache and the Hub cannot be reached (offline?): "
                "run 'podsep models fetch' on a connected machine and copy the cache, or pass a local folder")
    if has(hub.EntryNotFoundError):
        return f"{kind} model '{source}' is missing a file the loader needs: {_first_line(error)}"
    if has(FileNotFoundError):
        return f"{kind} model '{source}' is incomplete: {_first_line(error)}"
    return f"cannot load {kind} model '{source}': {name}: {_first_line(error)}"


def _is_connection_error(chain: list[BaseException]) -> bool:
    text = " ".join(f"{type(e).__name__} {e}" for e in chain).lower()
    return any(word in text for word in ("connection", "name or service not known", "timed out", "network is unreachable"))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return redact(line[:200])


def redact(text: str) -> str:
    """Remove anything that looks like a Hugging Face token (``hf_...``) from text."""
    return re.sub(r"hf_[A-Za-z0-9]{6,}", "hf_***", text)


def resolve_revision(path: str | Path | None) -> str | None:
    """The commit hash of a file or folder inside the HF cache (``.../snapshots/<hash>/...``)."""
    if path is None:
        return None
    for candidate in (str(path), os.path.realpath(str(path))):
        match = _SNAPSHOT.search(candidate)
        if match:
            return match.group(1)
    return None


_REACHABLE: dict[str, bool] = {}


def hub_offline_requested() -> bool:
    """Whether the user asked for no Hub access (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub answers a TCP connection (checked once per process).

    ``HF_HUB_OFFLINE=1`` means no. Knowing this up front lets podsep load cached
    models straight from the cache and fail fast on missing ones, instead of
    waiting through huggingface_hub's connection retries.
    """
    import socket
    from urllib.parse import urlparse

    if hub_offline_requested():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if endpoint not in _REACHABLE:
        parsed = urlparse(endpoint)
        host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme != "http" else 80)
        try:
            with socket.create_connection((host, port), timeout=timeout):
                _REACHABLE[endpoint] = True
        except OSError:
            _REACHABLE[endpoint] = False
    return _REACHABLE[endpoint]


def offline_snapshot(kind: str, repo_id: str, revision: str | None, cache_dir: str | None,
                     token: str | None) -> Path | None:
    """When the Hub cannot be reached, the cached folder of ``repo_id`` (or a one-line ModelError).

    Returns None when the Hub is reachable: the caller then loads by id as usual.
    """
    from ..errors import ModelError

    if hub_reachable():
        return None
    try:
        return cached_snapshot(repo_id, revision, cache_dir, token)
    except Exception as error:
        raise ModelError(describe_hub_error(kind, repo_id, error)) from error


def cached_snapshot(repo_id: str, revision: str | None, cache_dir: str | None, token: str | None) -> Path:
    """The local folder of a Hub model from the cache only (no network), or the Hub's own error."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token or None,
                                  local_files_only=True))


def forget_unimportable_lazy_modules() -> None:
    """Drop speechbrain's lazy module stand-ins whose target cannot be imported here.

    speechbrain puts placeholder modules for optional integrations (k2, ...) into
    ``sys.modules``; touching any attribute of one whose dependency is missing
    raises ImportError, even ``getattr(module, "__file__", None)``, which tools
    that scan ``sys.modules`` do (hypothesis, pickle, doctest). Such a module is
    unusable anyway, so forgetting it only removes the trap.
    """
    import sys
    import warnings

    importutils = sys.modules.get("speechbrain.utils.importutils")
    lazy_type = getattr(importutils, "LazyModule", None) if importutils is not None else None
    if lazy_type is None:
        return
    for name, module in list(sys.modules.items()):
        if not isinstance(module, lazy_type) or module.__dict__.get("lazy_module") is not None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module.ensure_module(0)
        except (ImportError, AttributeError):
            sys.modules.pop(name, None)
