"""``podsep models``: which models podsep would use, whether they work right now, and fetching them.

A user behind a firewall, without a token, or preparing an air-gapped machine
needs to see, before running a long job, where each model comes from, whether
it is cached, how big it is, which revision it is, and if it cannot be used,
why. ``podsep models fetch`` fills the Hugging Face cache on a connected machine
so the cache can be copied to an offline one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import load_settings
from ..errors import PodsepError
from ..models.hub import describe_hub_error, hub_reachable, hub_token, looks_like_local_path, resolve_revision


@dataclass
class ModelStatus:
    role: str
    source: str
    origin: str          # hub, local or packaged
    location: str | None  # cache snapshot, folder or file
    size_bytes: int | None
    revision: str | None
    usable: bool
    reason: str


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def hub_model_status(role: str, repo_id: str, revision: str | None, cache_dir: str | None, token: str | None,
                     required: tuple[str, ...]) -> ModelStatus:
    """Status of a Hub id or local folder: cached? reachable? gated?"""
    folder = Path(repo_id).expanduser()
    if folder.is_dir() or looks_like_local_path(repo_id):
        missing = [name for name in required if not (folder / name).exists()]
        usable = folder.is_dir() and not missing
        reason = "local folder" if usable else (
            f"folder not found: {folder}" if not folder.is_dir() else f"missing {', '.join(missing)}")
        return ModelStatus(role, repo_id, "local", str(folder), _size(folder) if folder.is_dir() else None, None,
                           usable, reason)
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                          local_files_only=True))
        return ModelStatus(role, repo_id, "hub", str(snapshot), _size(snapshot), resolve_revision(snapshot), True,
                           "cached: works offline")
    except Exception:
        pass
    if not hub_reachable():
        return ModelStatus(role, repo_id, "hub", None, None, revision, False,
                           "not cached and the Hub cannot be reached: run 'podsep models fetch' where it can")
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo_id, revision=revision, token=token, files_metadata=True)
        size = sum((s.size or 0) for s in (info.siblings or []))
        from huggingface_hub import auth_check

        auth_check(repo_id, token=token)
        return ModelStatus(role, repo_id, "hub", None, size or None, info.sha, True,
                           "not cached: downloaded on first use (or 'podsep models fetch')")
    except Exception as error:  # gated, missing, private...
        return ModelStatus(role, repo_id, "hub", None, None, revision, False,
                           describe_hub_error(role, repo_id, error))


def packaged_status(role: str, package: str, relative: str) -> ModelStatus:
    """Weights shipped inside an installed wheel."""
    from ..models.embedded.vad import package_file

    try:
        path = package_file(package, relative)
    except Exception as error:
        return ModelStatus(role, f"{package}:{relative}", "packaged", None, None, None, False,
                           f"package '{package}' not installed ({error})")
    ok = path.is_file()
    version = _package_version(package)
    return ModelStatus(role, f"{package}:{relative}", "packaged", str(path), path.stat().st_size if ok else None,
                       version, ok, "ships in the wheel: works offline" if ok else "weights file missing")


def _package_version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return None


def collect(settings: Any, token: str | None) -> list[ModelStatus]:
    rows = [
        hub_model_status("diarization", settings.diarization.model, settings.diarization.revision,
                         settings.cache_dir, token, ("config.yaml",)),
        hub_model_status("separation", settings.separation.model, settings.separation.revision,
                         settings.cache_dir, token, ("hyperparams.yaml",)),
        packaged_status("embedded VAD", "silero_vad", "data/silero_vad.jit"),
        packaged_status("embedded speaker encoder", "resemblyzer", "pretrained.pt"),
        packaged_status("embedded overlap detector", "podsep", "data/overlap_detector.pt"),
        packaged_status("embedded separator", "podsep", "data/separator.pt"),
    ]
    return rows


def run_models(args: argparse.Namespace) -> int:
    overrides = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    settings = load_settings(args.config, overrides)
    token = hub_token(args.hf_token)
    if args.action == "fetch":
        return _fetch(settings, token)
    rows = collect(settings, token)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        _print_table(rows)
    return 0


def _print_table(rows: list[ModelStatus]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="podsep models")
    for column in ("role", "source", "where", "size", "revision", "usable now"):
        table.add_column(column, overflow="fold")
    for row in rows:
        size = f"{row.size_bytes / 1e6:.1f} MB" if row.size_bytes else "-"
        usable = f"[green]yes[/green]: {row.reason}" if row.usable else f"[red]no[/red]: {row.reason}"
        table.add_row(row.role, row.source, row.location or f"({row.origin})", size, (row.revision or "-")[:12], usable)
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
    table.caption = f"Hugging Face cache: {cache}"
    Console().print(table)


def _fetch(settings: Any, token: str | None) -> int:
    """Download the configured Hub models into the cache, for offline use later."""
    from huggingface_hub import snapshot_download

    if not hub_reachable():
        raise PodsepError("the Hugging Face Hub cannot be reached from this machine: run 'podsep models fetch' on a "
                          "connected one, copy its Hugging Face cache here and set HF_HUB_OFFLINE=1")
    failures = 0
    for role, repo_id, revision in (
        ("diarization", settings.diarization.model, settings.diarization.revision),
        ("separation", settings.separation.model, settings.separation.revision),
    ):
        if Path(repo_id).expanduser().exists():
            print(f"{role}: {repo_id} is a local folder, nothing to fetch")
            continue
        try:
            path = snapshot_download(repo_id, revision=revision, cache_dir=settings.cache_dir, token=token)
            print(f"{role}: {repo_id} -> {path}")
        except Exception as error:
            failures += 1
            print(f"podsep: error: {describe_hub_error(role, repo_id, error)}", file=sys.stderr)
    if failures:
        raise PodsepError(f"{failures} model(s) could not be fetched")
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "models", help="list the configured models and whether they work now; 'fetch' downloads them",
        description="List each model podsep uses: source, cache location, size, revision and whether it is usable "
                    "right now (and why not). 'podsep models fetch' downloads the Hub models into the cache.",
    )
    parser.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    parser.add_argument("--config", help="YAML settings file (models are read from it)")
    parser.add_argument("--hf-token", help="Hugging Face token (default: $HF_TOKEN)")
    parser.add_argument("--cache-dir", help="cache folder (default: the Hugging Face cache)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run_models)
