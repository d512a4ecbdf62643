"""``podsep batch``: split a whole archive, on this machine or on a Ray cluster.

It takes every ``podsep split`` option with the same meaning, plus how to run
(``--engine``, ``--workers``, ``--ray-address``, ``--retry-failed``). Each failed
episode is one line on stderr (also with ``-q``); ``OUT/batch-report.csv`` lists
every episode; the exit code is non-zero when any episode failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import PodsepError
from .main import _overrides, _threads, add_split_options


def run_batch_command(args: argparse.Namespace) -> int:
    """Discover the episodes, run the batch, print the summary; non-zero exit when any episode failed."""
    from ..batch import BatchOptions, discover, run_batch
    from ..batch.progress import make_view
    from ..config import load_settings

    if args.ray_address and args.engine != "ray":
        raise PodsepError("--ray-address needs --engine ray")
    settings = load_settings(args.config, _overrides(args))
    names = [n for n in args.names.split(",")] if args.names else None
    episodes = discover(args.inputs, args.output, names=names, diarization=args.diarization)
    if not episodes:
        raise PodsepError(f"no audio or video files found in {', '.join(args.inputs)}")
    if args.engine == "ray":
        from ..batch.ray_engine import import_ray

        import_ray()  # a missing extra is one line now, not after the plan
    options = BatchOptions(output=Path(args.output), engine=args.engine, workers=args.workers,
                           threads=_threads(args), ray_address=args.ray_address, retry_failed=args.retry_failed,
                           overwrite=args.overwrite, hf_token=args.hf_token)
    view = make_view(args.quiet)
    summary = run_batch(episodes, settings, options, view)
    view.close(summary.rows, summary.wall_seconds, summary.report)
    if summary.failed:
        raise PodsepError(f"{summary.failed} of {len(summary.rows)} episodes failed (see {summary.report})")
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "batch", help="split a whole archive: folders and lists, resumable, on N workers or a Ray cluster",
        description="Split many episodes with models loaded once per worker. Every 'podsep split' option works "
                    "the same way. A rerun skips episodes already done with the same input and settings, redoes "
                    "what changed and retries failures only with --retry-failed. OUT/batch-report.csv lists every "
                    "episode.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio or video files, folders (searched recursively) or lists: .txt (one path a line) "
                             "or .csv (a 'path' column; optional num_speakers, min_speakers, max_speakers, names, "
                             "diarization)")
    add_split_options(parser)
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local (default): worker processes on this machine; ray: Ray actors "
                             "(pip install 'podsep[ray]')")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes (or Ray CPU actors); default: as many as free cores and memory allow")
    parser.add_argument("--ray-address", metavar="ADDRESS",
                        help="Ray cluster to use (auto, host:port or ray://...); default: start a local Ray instance")
    parser.add_argument("--retry-failed", action="store_true",
                        help="split again the episodes that failed before (otherwise they are reported, not retried)")
    parser.set_defaults(func=run_batch_command)
