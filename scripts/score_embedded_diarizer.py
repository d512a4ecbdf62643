#!/usr/bin/env python
"""Score the embedded diarizer: DER/JER per file at collar 0 and 0.25, plus real-time factor.

Overlapped speech is scored (``skip_overlap=False``). Data: the two-speaker
pyannote sample and every AMI debug excerpt listed in the ``.lst`` files of
``shared/data/ami``, scored inside their ``.uem``. Some file names are not
plain ASCII (``trñ00.wav``) while the RTTM/UEM call the recording ``trn00``;
the URI is matched after folding accents. ``empty.wav`` has no reference and
is run only to prove it returns nothing without crashing.

Usage: python scripts/score_embedded_diarizer.py [--shared DIR] [--threads N]
       [--oracle-count] [--no-overlap] [--set name=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def fold(name: str) -> str:
    """ASCII-fold a name (``trñ00`` -> ``trn00``) to match RTTM/UEM URIs."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")


def read_uem(path: Path) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) >= 4:
            out.setdefault(fields[0], []).append((float(fields[2]), float(fields[3])))
    return out


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> int:
    from podsep.lab.paths import shared_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=shared_root())
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--oracle-count", action="store_true", help="pass the reference speaker count")
    parser.add_argument("--no-overlap", action="store_true", help="exclusive turns only")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="diarizer tunable")
    parser.add_argument("--json", type=Path, help="also write the per-file results here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*uem.*")
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    from podsep.diarization import Diarization
    from podsep.models.embedded import EmbeddedDiarizer

    tunables = {key: parse_value(value) for key, value in (item.split("=", 1) for item in args.set)}
    if args.no_overlap:
        tunables["overlap"] = False
    diarizer = EmbeddedDiarizer(**tunables)

    data = args.shared / "data"
    jobs: list[tuple[str, str, Path, Path | None, list[tuple[float, float]] | None]] = []
    sample = data / "pyannote-sample"
    jobs.append(("pyannote", "sample", sample / "sample.wav", sample / "sample.rttm", None))
    ami = data / "ami"
    for subset in ("train", "development", "test"):
        lst = ami / f"debug.{subset}.lst"
        uems = read_uem(ami / f"debug.{subset}.uem")
        for name in lst.read_text(encoding="utf-8").split():
            uri = fold(name)
            jobs.append((f"ami-{subset}", uri, ami / f"{name}.wav", ami / f"debug.{subset}.rttm", uems.get(uri)))
    jobs.append(("ami", "empty", ami / "empty.wav", None, None))

    metrics = {
        (kind, collar): cls(collar=collar, skip_overlap=False)
        for kind, cls in (("DER", DiarizationErrorRate), ("JER", JaccardErrorRate))
        for collar in (0.0, 0.25)
    }
    group_metrics: dict[str, dict] = {}
    rows = []
    total_audio = total_time = 0.0
    # Warm-up so model loading is not charged to the first file's RTF.
    diarizer(np.zeros(16000, dtype=np.float32), 16000)
    for group, uri, wav, rttm, uem_regions in jobs:
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        ref = Diarization.from_rttm(rttm, uri) if rttm is not None else None
        start = time.perf_counter()
        hyp = diarizer(
            audio, sr, uri=uri, num_speakers=len(ref.speakers) if (ref and args.oracle_count) else None
        )
        elapsed = time.perf_counter() - start
        duration = len(audio) / sr
        total_audio += duration
        total_time += elapsed
        row = {"group": group, "uri": uri, "file": wav.name, "ref_spk": len(ref.speakers) if ref else 0,
               "hyp_spk": len(hyp.speakers), "rtf": elapsed / max(duration, 1e-9)}
        if ref is not None:
            uem = Timeline([Segment(s, e) for s, e in (uem_regions or [(0.0, duration)])])
            gm = group_metrics.setdefault(group, {
                key: type(m)(collar=m.collar, skip_overlap=False) for key, m in metrics.items()
            })
            for (kind, collar), metric in metrics.items():
                value = metric(ref.to_annotation(), hyp.to_annotation(), uem=uem)
                gm[(kind, collar)](ref.to_annotation(), hyp.to_annotation(), uem=uem)
                row[f"{kind}@{collar}"] = value
        rows.append(row)

    header = f"{'file':<14}{'group':<16}{'spk ref/hyp':>12}{'DER c0':>9}{'DER c.25':>10}{'JER c0':>9}{'JER c.25':>10}{'RTF':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        cells = [f"{100 * row[k]:8.1f}%" if k in row else f"{'-':>9}" for k in ("DER@0.0", "DER@0.25", "JER@0.0", "JER@0.25")]
        print(f"{row['uri']:<14}{row['group']:<16}{row['ref_spk']:>6}/{row['hyp_spk']:<5}{cells[0]}{' ' + cells[1]}{cells[2]}{' ' + cells[3]}{row['rtf']:8.3f}")
    print("-" * len(header))
    for group, gm in list(group_metrics.items()) + [("ALL", metrics)]:
        cells = [f"{100 * abs(gm[(k, c)]):8.1f}%" for k, c in (("DER", 0.0), ("DER", 0.25), ("JER", 0.0), ("JER", 0.25))]
        print(f"{'TOTAL':<14}{group:<16}{'':>12}{cells[0]}{' ' + cells[1]}{cells[2]}{' ' + cells[3]}")
    print(f"real-time factor: {total_time / total_audio:.3f} ({total_time:.1f} s for {total_audio:.0f} s of audio, "
          f"{args.threads} torch thread(s), {os.cpu_count()} CPU cores)")
    print("diarizer:", json.dumps(diarizer.describe()["overlap"]))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "describe": diarizer.describe()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
