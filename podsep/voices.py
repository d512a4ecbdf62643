"""Voice profiles of a show: the separator adapted to its voices, and who those voices are.

Why: a show's hosts come back every episode. Adapting the separator to them
once (:mod:`podsep.adapt`) and starting the next episode from those weights
gives the gain before any new adaptation, and the hosts' reference embeddings
let podsep name their tracks without ``--names``.

A profile is a folder:

* ``profile.json``: format version, podsep version, one entry per voice (name,
  embedding file, number of episodes merged into it), the weights' hash and
  free-form notes. It is written last, so a folder whose JSON is there is a
  complete profile.
* ``separator.pt``: the adapted network in the embedded separator's own export
  format (``config``, ``state_dict``, ``recipe``: plain tensors, ints and
  strings), so :class:`~podsep.models.embedded.separator.EmbeddedSeparator`
  loads it with ``torch.load(weights_only=True)`` like the shipped weights.
* ``top_octave.pt``: the top-octave network (:mod:`podsep.models.embedded.high_band`)
  once an episode has adapted it (:mod:`podsep.adapt_top_octave`), in that
  network's own export format; the next episode at 16 kHz or more shares the
  top octave with it and adapts it further. Absent until then.
* ``voices/<name>.npy``: each voice's unit embedding (float32), read with
  ``numpy.load(allow_pickle=False)``.

About 3.5 MB for the shipped model size, 6 MB with the top-octave network;
nothing in it can run code when read.
Embeddings come from the diarizer's ``embed(list_of_waveforms, sample_rate)``
(one row per clip); this module only takes and gives arrays, so any embedder
works as long as a profile is always matched with the same one
(``embedder`` is recorded and checked).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError

PROFILE_VERSION = 1
PROFILE_FILE = "profile.json"
WEIGHTS_FILE = "separator.pt"
TOP_OCTAVE_FILE = "top_octave.pt"
VOICES_DIR = "voices"

#: Cosine similarity from which a new speaker is taken to be a saved voice (raw GE2E embeddings of
#: solo speech; ``python scripts/tune_adaptation.py --voices``: between the two halves of 251
#: train-clean-100 utterances, 8.8 % of same-speaker pairs fall below it and 0.6 % of
#: different-speaker pairs reach it; 30 s references of one voice in two episodes scored 0.98).
MATCH_THRESHOLD = 0.80


@dataclass
class VoiceProfile:
    """A loaded (or about to be saved) profile."""

    folder: Path | None
    voices: dict[str, np.ndarray]  # name -> unit embedding
    episodes: dict[str, int] = field(default_factory=dict)  # name -> episodes merged into its embedding
    embedder: str | None = None
    weights_sha256: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    top_octave_sha256: str | None = None

    def _file(self, name: str) -> Path | None:
        """The profile's file ``name``, when it is there."""
        if self.folder is None:
            return None
        path = self.folder / name
        return path if path.is_file() else None

    @property
    def weights(self) -> Path | None:
        """The adapted separator's file, when the profile has one."""
        return self._file(WEIGHTS_FILE)

    @property
    def top_octave(self) -> Path | None:
        """The adapted top-octave network's file, when an episode has adapted one."""
        return self._file(TOP_OCTAVE_FILE)

    def separator(self, *, device: str = "cpu", batch_size: int = 1, passes: int | None = None,
                  high_band: Path | bool | None = None) -> Any:
        """The profile's adapted separator (an ``EmbeddedSeparator``; ``passes`` ``None``: its default;
        the kind of passes its adaptation chose, as its recipe records), or ``None`` without weights.

        ``high_band`` is the top-octave choice of the separator the run would otherwise use (as
        ``EmbeddedSeparator`` takes it: ``False`` none, ``None`` the shipped one, or a file): the
        profile's adapted network replaces it, except that ``False`` stays ``False`` (a run with
        ``separation.high_band: off`` gets no top-octave network from a profile either).
        """
        from .models.embedded.separator import DEFAULT_PASSES, EmbeddedSeparator

        path = self.weights
        if path is None:
            return None
        if high_band is not False and self.top_octave is not None:
            high_band = self.top_octave
        return EmbeddedSeparator(path, device=device, batch_size=batch_size, high_band=high_band,
                                 passes=DEFAULT_PASSES if passes is None else passes, pass_kind=None).load()

    def match(self, embeddings: Mapping[str, np.ndarray], threshold: float = MATCH_THRESHOLD) -> "VoiceMatch":
        """Which new speakers are saved voices (see :func:`match_voices`)."""
        return match_voices(embeddings, self.voices, threshold)


@dataclass(frozen=True)
class VoiceMatch:
    """New speaker label -> saved name, for the pairs at or above the threshold; every score kept."""

    names: dict[str, str]
    scores: dict[str, dict[str, float]]  # label -> name -> cosine
    threshold: float

    def to_manifest(self) -> dict[str, Any]:
        return {"matched": dict(self.names), "threshold": self.threshold,
                "scores": {k: {n: round(v, 4) for n, v in row.items()} for k, row in self.scores.items()}}


def unit(vector: np.ndarray) -> np.ndarray:
    """The vector scaled to length 1 (a zero vector stays zero: it matches nobody)."""
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


def match_voices(embeddings: Mapping[str, np.ndarray], saved: Mapping[str, np.ndarray],
                 threshold: float = MATCH_THRESHOLD) -> VoiceMatch:
    """Match new speakers to saved voices one to one by cosine similarity.

    The assignment maximises the total cosine over all pairs (Hungarian), so two
    new speakers never take the same name; a pair below ``threshold`` stays
    unmatched (a guest keeps their label). Why one to one and a threshold: a
    recurring host should get their name, and a new voice that merely resembles
    a host should not.
    """
    from scipy.optimize import linear_sum_assignment

    labels, names = list(embeddings), list(saved)
    scores: dict[str, dict[str, float]] = {label: {} for label in labels}
    if not labels or not names:
        return VoiceMatch({}, scores, float(threshold))
    a = np.stack([unit(embeddings[label]) for label in labels]).astype(np.float64)
    b = np.stack([unit(saved[name]) for name in names]).astype(np.float64)
    if a.shape[1] != b.shape[1]:
        raise ModelError(f"voice embeddings of size {a.shape[1]} cannot be matched with a profile's of size "
                         f"{b.shape[1]} (another embedder?)")
    cosine = a @ b.T
    for i, label in enumerate(labels):
        scores[label] = {name: float(cosine[i, j]) for j, name in enumerate(names)}
    rows, cols = linear_sum_assignment(-cosine)
    matched = {labels[i]: names[j] for i, j in zip(rows, cols) if cosine[i, j] >= threshold}
    return VoiceMatch(matched, scores, float(threshold))


def load_profile(folder: str | os.PathLike[str]) -> VoiceProfile | None:
    """The profile in ``folder``; ``None`` when there is none yet (a first episode). Damage is an error."""
    folder = Path(folder).expanduser()
    path = folder / PROFILE_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        version = int(meta.get("version", 0))
    except (OSError, ValueError, TypeError) as error:
        raise ModelError(f"cannot read voice profile {path}: {error}") from error
    if version != PROFILE_VERSION:
        raise ModelError(f"voice profile {folder} has format version {version}; this podsep reads version "
                         f"{PROFILE_VERSION}")
    voices: dict[str, np.ndarray] = {}
    episodes: dict[str, int] = {}
    for entry in meta.get("voices", []):
        file = folder / VOICES_DIR / str(entry["file"])
        if Path(entry["file"]).name != entry["file"]:
            raise ModelError(f"voice profile {folder}: bad file name {entry['file']!r}")
        try:
            vector = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot read voice {entry.get('name')!r} of profile {folder}: {error}") from error
        voices[str(entry["name"])] = unit(vector)
        episodes[str(entry["name"])] = int(entry.get("episodes", 1))
    return VoiceProfile(folder, voices, episodes, meta.get("embedder"), meta.get("weights_sha256"),
                        dict(meta.get("notes") or {}), meta.get("top_octave_sha256"))


def save_profile(folder: str | os.PathLike[str], embeddings: Mapping[str, np.ndarray], *,
                 separator: Any = None, previous: VoiceProfile | None = None, embedder: str | None = None,
                 notes: Mapping[str, Any] | None = None) -> VoiceProfile:
    """Write (or update) a profile: the separator's weights and each named voice's embedding.

    ``embeddings`` maps speaker names to this episode's embeddings (one vector
    each, e.g. the mean of their solo clips). With ``previous`` (the profile
    this episode started from), a returning voice's embedding becomes the
    running mean over the episodes it was heard in, and voices absent from this
    episode are kept. ``separator`` (an ``EmbeddedSeparator``, adapted or not)
    provides the weights; without it, the previous weights are kept. Its top-octave
    network is saved only when this episode adapted it (``high_band_adapted``);
    otherwise the profile's previous one, if any, is kept: a generic network is
    no news, and a run without one (``separation.high_band: off``) should not
    erase what earlier episodes learnt.
    Files are replaced atomically and ``profile.json`` is written last.
    """
    import torch

    from .export import safe_name, write_atomically

    folder = Path(folder).expanduser()
    (folder / VOICES_DIR).mkdir(parents=True, exist_ok=True)
    if previous is not None and embedder and previous.embedder and previous.embedder != embedder:
        raise ModelError(f"voice profile {folder} was made with embedder {previous.embedder}, not {embedder}")
    voices = dict(previous.voices) if previous is not None else {}
    episodes = dict(previous.episodes) if previous is not None else {}
    for name, vector in embeddings.items():
        vector = unit(vector)
        count = episodes.get(name, 0)
        if name in voices and count > 0:
            vector = unit((voices[name].astype(np.float64) * count + vector) / (count + 1))
        voices[name], episodes[name] = vector, count + 1

    sha = previous.weights_sha256 if previous is not None else None
    if separator is not None:
        network = separator.load().network if hasattr(separator, "load") else separator.network
        payload = {"config": network.config.to_dict(),
                   "state_dict": {k: v.detach().cpu().clone() for k, v in network.state_dict().items()},
                   "recipe": _plain(dict(getattr(separator, "recipe", {}) or {}))}
        write_atomically(folder / WEIGHTS_FILE, lambda path: torch.save(payload, path))
        sha = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    top_sha = previous.top_octave_sha256 if previous is not None else None
    if separator is not None and getattr(separator, "high_band_adapted", False):
        top_sha = _save_top_octave(folder / TOP_OCTAVE_FILE, separator)

    entries, used = [], set()
    for name in sorted(voices):
        stem = safe_name(name)
        file, k = f"{stem}.npy", 1
        while file.lower() in used:
            k += 1
            file = f"{stem}_{k}.npy"
        used.add(file.lower())
        write_atomically(folder / VOICES_DIR / file, lambda path, v=voices[name]: _save_npy(path, v))
        entries.append({"name": name, "file": file, "episodes": episodes[name]})
    from . import __version__

    meta = {"version": PROFILE_VERSION, "podsep": __version__, "embedder": embedder or
            (previous.embedder if previous is not None else None), "weights": WEIGHTS_FILE if sha else None,
            "weights_sha256": sha, "top_octave": TOP_OCTAVE_FILE if top_sha else None,
            "top_octave_sha256": top_sha, "voices": entries, "notes": _plain(dict(notes or {}))}
    write_atomically(folder / PROFILE_FILE,
            lambda path: path.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"))
    return VoiceProfile(folder, voices, episodes, meta["embedder"], sha, meta["notes"], top_sha)


def _save_top_octave(path: Path, separator: Any) -> str:
    """Write the separator's (adapted) top-octave network in its export format; the file's sha256."""
    import torch

    from .export import write_atomically

    net = separator.top_octave_network
    payload = {"config": net.config.to_dict(),
               "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
               "recipe": _plain({"adapted_to_episode": True, "tensors_sha256": separator.high_band_sha256})}
    write_atomically(path, lambda target: torch.save(payload, target))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plain(value: Any) -> Any:
    """Only what ``torch.load(weights_only=True)`` reads back: dicts, lists, strings, numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _save_npy(path: Path, vector: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, np.asarray(vector, dtype=np.float32), allow_pickle=False)
