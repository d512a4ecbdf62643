"""The ``podsep`` command line.

``podsep split`` runs the whole job on one or more files. Every error a user can
cause ends as one line on stderr and a non-zero exit code; ``--debug`` shows
the traceback of unexpected errors.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from typing import Any

from .. import __version__
from ..errors import PodsepError

EXIT_ERROR = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podsep",
        description="Split a podcast or interview into one clean, full-length track per speaker.",
    )
    parser.add_argument("--version", action="version", version=f"podsep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    split = commands.add_parser("split", help="split recordings into per-speaker tracks",
                                description="Diarize, separate overlapped speech and write one track per speaker.")
    split.add_argument("inputs", nargs="+", metavar="INPUT", help="audio or video files (anything ffmpeg reads)")
    add_split_options(split)
    split.set_defaults(func=run_split)
    for register in _command_registrars():
        register(commands)
    return parser


def add_split_options(parser: argparse.ArgumentParser) -> None:
    """Every ``podsep split`` option except the inputs, so that ``podsep batch`` accepts them with the same meaning."""
    parser.add_argument("-o", "--output", default="podsep_out", help="output folder; results go to OUTPUT/<stem>/ (default: %(default)s)")
    parser.add_argument("--names", help="comma-separated speaker names, in order of first speech (e.g. Alice,Bob)")
    parser.add_argument("--num-speakers", type=int, help="exact number of speakers, if known")
    parser.add_argument("--min-speakers", type=int, help="lower bound on the number of speakers")
    parser.add_argument("--max-speakers", type=int, help="upper bound on the number of speakers")
    parser.add_argument("--diarization", metavar="RTTM", help="use this RTTM (file.rttm or file.rttm:URI) instead of running a diarizer")
    parser.add_argument("--diarizer", choices=["auto", "pyannote", "embedded"],
                        help="auto (default): the pyannote model if it loads, else the embedded diarizer; "
                             "pyannote: that or an error; embedded: no download at all")
    parser.add_argument("--diarization-model", help="pyannote pipeline: Hub id or local folder")
    parser.add_argument("--separator", choices=["auto", "sepformer", "embedded"],
                        help="auto (default): SepFormer if it loads, else podsep's embedded separator; "
                             "sepformer: that or overlaps.fallback; embedded: podsep's own model only")
    parser.add_argument("--separation-model", help="SepFormer model: Hub id or local folder")
    adapt = parser.add_mutually_exclusive_group()
    adapt.add_argument("--adapt", dest="adapt", action="store_const", const="on",
                       help="fine-tune the embedded separator on this recording's own voices before separating "
                            "(default: separation.adapt, auto)")
    adapt.add_argument("--no-adapt", dest="adapt", action="store_const", const="off",
                       help="never adapt the separator to the recording")
    parser.add_argument("--voices", metavar="DIR",
                        help="voice profiles of a show: start from and update the adapted weights and named voices here")
    parser.add_argument("--overlap", choices=["separate", "duplicate", "mute"], help="what to do with overlapped speech (default: separate)")
    parser.add_argument("--overlap-fallback", choices=["duplicate", "mute", "error"],
                        help="what overlaps become when no separator can be loaded (default: duplicate)")
    parser.add_argument("--no-cache", action="store_true", help="do not reuse or store cached diarizations")
    parser.add_argument("--context", type=float, help="seconds of context around each overlap given to the separator")
    parser.add_argument("--crossfade", type=float, help="crossfade length in seconds")
    parser.add_argument("--format", choices=["wav", "flac", "mp3"], help="track format (default: wav)")
    parser.add_argument("--bit-depth", choices=["16", "24", "float"], help="WAV/FLAC sample format (default: 16)")
    parser.add_argument("--batch-size", type=int, help="separation windows per forward pass")
    parser.add_argument("--config", help="YAML settings file (see configs/default.yaml); flags override it")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--hf-token", help="Hugging Face token for gated models (default: $HF_TOKEN)")
    parser.add_argument("--cache-dir", help="model cache folder (default: the Hugging Face cache)")
    parser.add_argument("--no-extras", action="store_true",
                        help="write only tracks, background, RTTM and manifest (no timeline PNG, labels, REAPER project, review page)")
    parser.add_argument("--no-background", action="store_true",
                        help="do not write <stem>.background (the input minus the speaker tracks)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing result folder")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch, OpenMP and BLAS, per worker in a batch (default: the cores other "
                             "processes leave free, divided between the workers)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")


def _command_registrars() -> list[Any]:
    """Every other subcommand, registered explicitly (an import error is a real error).

    Each module exposes ``register(subparsers)``, which adds its parser and sets
    ``func`` (taking the parsed args, returning an exit code).
    """
    from ..lab import bench, evaluate
    from . import batch_cmd, models_cmd

    return [batch_cmd.register, models_cmd.register, evaluate.register, bench.register]


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "diarization.num_speakers": args.num_speakers,
        "diarization.min_speakers": args.min_speakers,
        "diarization.max_speakers": args.max_speakers,
        "diarization.model": args.diarization_model,
        "diarization.backend": args.diarizer,
        "diarization.cache": False if args.no_cache else None,
        "overlaps.fallback": args.overlap_fallback,
        "separation.model": args.separation_model,
        "separation.backend": args.separator,
        "separation.adapt": args.adapt,
        "separation.voices": args.voices,
        "separation.batch_size": args.batch_size,
        "overlaps.policy": args.overlap,
        "overlaps.context": args.context,
        "assembly.crossfade": args.crossfade,
        "output.format": args.format,
        "output.bit_depth": args.bit_depth,
        "output.extras": False if args.no_extras else None,
        "output.background": False if args.no_background else None,
        "device": args.device,
        "cache_dir": args.cache_dir,
    }
    return {key: value for key, value in pairs.items() if value is not None}


def _threads(args: argparse.Namespace) -> int | None:
    """``--threads`` checked (None: let podsep choose from the free cores)."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise PodsepError(f"--threads must be at least 1, not {threads}")
    return threads


def _progress_hook(quiet: bool) -> Any:
    if quiet:
        return None
    from .progress import PlainProgress, RichProgress

    if sys.stderr.isatty():
        return RichProgress()
    return PlainProgress()


def run_split(args: argparse.Namespace) -> int:
    from ..audio import check_input_path
    from ..config import load_settings
    from ..pipeline import Splitter

    if args.diarization and len(args.inputs) > 1:
        raise PodsepError("--diarization describes one recording: give one input with it")
    settings = load_settings(args.config, _overrides(args))
    if len(args.inputs) == 1:  # fail on a bad path before any work or progress output
        check_input_path(args.inputs[0])
    names = [n for n in args.names.split(",")] if args.names else None
    from ..threads import configure_threads

    configure_threads(_threads(args))  # before any model loads: never more threads than free cores
    splitter = Splitter(settings, hf_token=args.hf_token)  # models load once, for every input
    failures = 0
    for path in args.inputs:
        hook = _progress_hook(args.quiet)
        context = hook if hasattr(hook, "__enter__") else None
        if context is not None:
            context.__enter__()
        try:
            check_input_path(path)
            splitter.split(path, output_dir=args.output, names=names, diarization=args.diarization,
                           overwrite=args.overwrite, hook=hook)
        except PodsepError as error:
            if len(args.inputs) == 1:
                raise
            failures += 1  # a batch goes on with the other files; each failure is one line
            print(f"podsep: error: {error}", file=sys.stderr)
        finally:
            if context is not None:
                context.__exit__(None, None, None)
    if failures:
        raise PodsepError(f"{failures} of {len(args.inputs)} inputs failed (see above)")
    return 0


def _quiet_libraries() -> None:
    """Third-party libraries log and warn freely; the CLI shows only podsep's own output."""
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    warnings.filterwarnings("ignore")
    for name in ("speechbrain", "pyannote", "lightning", "pytorch_lightning", "lightning_fabric", "huggingface_hub", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    _quiet_libraries()
    debug = getattr(args, "debug", False) or os.environ.get("PODSEP_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except PodsepError as error:
        print(f"podsep: error: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:  # output piped into a command that stopped reading (e.g. head)
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("podsep: interrupted; no partial output was left under a final name", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("podsep: error: out of memory (try a smaller --batch-size or overlaps.max_window)", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # never a traceback for users, unless asked
        if debug:
            raise
        from ..models.hub import redact

        print(f"podsep: internal error: {type(error).__name__}: {redact(str(error).splitlines()[0] if str(error) else '')} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
