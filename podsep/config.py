"""Settings: every knob of the pipeline, with defaults, YAML loading and overrides.

The dataclasses below are the single source of truth for defaults;
``configs/default.yaml`` documents each knob and a test keeps it equal to them.
A run's settings are: defaults, then a YAML file (``--config``), then explicit
overrides (CLI flags or keyword arguments), each layer replacing only the keys it
names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import PodsepError

OVERLAP_POLICIES = ("separate", "duplicate", "mute")
CROSSFADE_LAWS = ("power", "gain")
DIARIZER_BACKENDS = ("auto", "pyannote", "embedded")
SEPARATOR_BACKENDS = ("auto", "sepformer", "embedded")
ADAPT_MODES = ("auto", "on", "off")
FALLBACK_POLICIES = ("duplicate", "mute", "error")


@dataclass(frozen=True)
class DiarizationSettings:
    """Who speaks when."""

    backend: str = "auto"
    model: str = "pyannote/speaker-diarization-community-1"
    revision: str | None = None
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    cache: bool = True
    chunk_minutes: float = 30.0
    link_threshold: float = 0.4


@dataclass(frozen=True)
class OverlapSettings:
    """How overlapped speech is found and cut into separation windows."""

    policy: str = "separate"
    fallback: str = "duplicate"
    min_duration: float = 0.05
    merge_gap: float = 0.5
    context: float = 1.0
    max_window: float = 30.0
    chunk_overlap: float = 2.0


@dataclass(frozen=True)
class SeparationSettings:
    """The source-separation model run inside the windows."""

    backend: str = "auto"
    model: str = "speechbrain/sepformer-whamr16k"
    revision: str | None = None
    batch_size: int = 1
    embedded_model: str | None = None
    passes: int = 2  # separations the embedded separator averages (see podsep.models.embedded.separator)
    high_band: str = "auto"  # the embedded separator's top-octave network: auto (the shipped one), off, or a file
    adapt: str = "auto"
    adapt_budget: float = 600.0
    adapt_top_octave: bool = True  # also fine-tune the top-octave network on the episode (podsep.adapt_top_octave)
    voices: str | None = None


@dataclass(frozen=True)
class AssignmentSettings:
    """Matching separated sources to diarized speakers."""

    min_context: float = 0.2
    embedding_weight: float = 1.0
    continuity_weight: float = 1.0
    reference_speech: float = 30.0


@dataclass(frozen=True)
class AssemblySettings:
    """Stitching per-speaker tracks back together."""

    crossfade: float = 0.03
    crossfade_law: str = "power"
    overlap_rendering: str = "rebuild"


@dataclass(frozen=True)
class OutputSettings:
    """What gets written."""

    format: str = "wav"
    bit_depth: str = "16"
    extras: bool = True
    background: bool = True


@dataclass(frozen=True)
class Settings:
    """All settings of one run."""

    device: str = "auto"
    cache_dir: str | None = None
    diarization: DiarizationSettings = field(default_factory=DiarizationSettings)
    overlaps: OverlapSettings = field(default_factory=OverlapSettings)
    separation: SeparationSettings = field(default_factory=SeparationSettings)
    assignment: AssignmentSettings = field(default_factory=AssignmentSettings)
    assembly: AssemblySettings = field(default_factory=AssemblySettings)
    output: OutputSettings = field(default_factory=OutputSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_overrides(self, overrides: dict[str, Any] | None = None, **keywords: Any) -> "Settings":
        """A new, validated Settings with dotted overrides applied (``{"overlaps.context": 0.5}``).

        Settings are frozen: a run can hand them to every stage without any
        stage changing what another one sees. Keyword arguments use ``__`` for
        dots (``overlaps__context=0.5``).
        """
        tree = self.to_dict()
        merged = dict(overrides or {})
        merged.update({key.replace("__", "."): value for key, value in keywords.items()})
        for dotted, value in merged.items():
            _set_dotted(tree, dotted, value)
        return _build(Settings, tree, "").validate()

    def validate(self) -> "Settings":
        """Reject values that would fail later, with the name of the knob."""
        checks = [
            (self.overlaps.policy in OVERLAP_POLICIES, f"overlaps.policy must be one of {', '.join(OVERLAP_POLICIES)}"),
            (self.overlaps.fallback in FALLBACK_POLICIES, f"overlaps.fallback must be one of {', '.join(FALLBACK_POLICIES)}"),
            (self.assembly.overlap_rendering in ("rebuild", "paste"), "assembly.overlap_rendering must be rebuild or paste"),
            (self.assembly.crossfade_law in CROSSFADE_LAWS, f"assembly.crossfade_law must be one of {', '.join(CROSSFADE_LAWS)}"),
            (self.diarization.backend in DIARIZER_BACKENDS, f"diarization.backend must be one of {', '.join(DIARIZER_BACKENDS)}"),
            (self.separation.adapt in ADAPT_MODES, "separation.adapt must be on, off or auto"),
            (self.separation.adapt_budget >= 0, "separation.adapt_budget must be >= 0 seconds"),
            (self.separation.backend in SEPARATOR_BACKENDS, f"separation.backend must be one of {', '.join(SEPARATOR_BACKENDS)}"),
            (self.output.format in ("wav", "flac", "mp3"), "output.format must be wav, flac or mp3"),
            (self.output.bit_depth in ("16", "24", "float"), "output.bit_depth must be 16, 24 or float"),
            (not (self.output.format == "flac" and self.output.bit_depth == "float"), "FLAC cannot store float samples: use bit_depth 16 or 24"),
            (self.overlaps.context >= 0, "overlaps.context must be >= 0"),
            (self.diarization.chunk_minutes >= 0, "diarization.chunk_minutes must be >= 0 (0 = no chunking)"),
            (0 < self.diarization.link_threshold < 2, "diarization.link_threshold must be between 0 and 2"),
            (self.overlaps.merge_gap >= 0, "overlaps.merge_gap must be >= 0"),
            (self.overlaps.min_duration >= 0, "overlaps.min_duration must be >= 0"),
            (self.overlaps.max_window > 2 * self.overlaps.chunk_overlap + 1.0, "overlaps.max_window must exceed 2 x chunk_overlap + 1 s"),
            (self.overlaps.chunk_overlap >= 0, "overlaps.chunk_overlap must be >= 0"),
            (self.assembly.crossfade >= 0, "assembly.crossfade must be >= 0"),
            (self.separation.batch_size >= 1, "separation.batch_size must be >= 1"),
            (self.separation.passes >= 1, "separation.passes must be >= 1"),
            (bool(str(self.separation.high_band).strip()), "separation.high_band must be auto, off or a file"),
            (self.assignment.min_context >= 0, "assignment.min_context must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise PodsepError(f"invalid setting: {message}")
        counts = [self.diarization.num_speakers, self.diarization.min_speakers, self.diarization.max_speakers]
        if any(value is not None and value < 1 for value in counts):
            raise PodsepError("invalid setting: speaker counts must be >= 1")
        low, high = self.diarization.min_speakers, self.diarization.max_speakers
        if low is not None and high is not None and low > high:
            raise PodsepError(f"invalid setting: min_speakers ({low}) > max_speakers ({high})")
        return self


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults, then the YAML file at ``path``, then dotted ``overrides`` (``{"overlaps.context": 0.5}``)."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as error:
            raise PodsepError(f"cannot read config {path}: {error.strerror or error}") from error
        except yaml.YAMLError as error:
            raise PodsepError(f"config {path} is not valid YAML: {str(error).splitlines()[0]}") from error
        if not isinstance(loaded, dict):
            raise PodsepError(f"config {path} must be a mapping of sections")
        tree = loaded
    tree = {key: (dict(value) if isinstance(value, dict) else value) for key, value in tree.items()}
    for dotted, value in (overrides or {}).items():
        _set_dotted(tree, dotted, value)
    return _build(Settings, tree, "").validate()


#: Settings that were renamed, so an old config gets a pointer instead of a list of names.
RENAMED = {"separation.shifts": "separation.passes (now also negates the input on every second pass)"}


def _build(klass: type, tree: dict[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(klass)}
    values = {}
    for key, value in tree.items():
        if f"{prefix}{key}" in RENAMED:
            raise PodsepError(f"setting '{prefix}{key}' is now {RENAMED[prefix + key]}")
        if key not in known:
            raise PodsepError(f"unknown setting '{prefix}{key}' (known: {', '.join(known)})")
        kind = known[key].default_factory if known[key].default_factory is not dataclasses.MISSING else None
        if kind is not None and dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise PodsepError(f"setting '{prefix}{key}' must be a section")
            values[key] = _build(kind, value, f"{prefix}{key}.")
        else:
            values[key] = _coerce(value, known[key].default, f"{prefix}{key}")
    return klass(**values)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b`` in a nested settings tree, refusing names Settings does not have."""
    klass: Any = Settings
    target = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        fields = {f.name: f for f in dataclasses.fields(klass)}
        factory = fields[part].default_factory if part in fields else None
        if factory is None or factory is dataclasses.MISSING or not dataclasses.is_dataclass(factory):
            raise PodsepError(f"unknown setting '{dotted}'")
        klass = factory
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise PodsepError(f"setting '{part}' must be a section")
    if dotted in RENAMED:
        raise PodsepError(f"setting '{dotted}' is now {RENAMED[dotted]}")
    if parts[-1] not in {f.name for f in dataclasses.fields(klass)}:
        raise PodsepError(f"unknown setting '{dotted}'")
    target[parts[-1]] = value


def _coerce(value: Any, default: Any, name: str) -> Any:
    """Convert YAML/CLI values to the type of the default (bit depths stay strings)."""
    if value is None:
        return None
    if isinstance(value, bool) and isinstance(default, str):  # YAML reads on/off as booleans
        return "on" if value else "off"
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, str):
            return str(value)
        if default is None and name.endswith(("speakers",)):
            return int(value)
    except (TypeError, ValueError) as error:
        raise PodsepError(f"invalid value for setting '{name}': {value!r}") from error
    return value
