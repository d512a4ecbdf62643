"""Tests for the random-weight stand-ins of podsep's pretrained models.

Other tests rely on these folders loading through the *public* loaders exactly
like the Hub models, so these tests check the on-disk layout, the checkpoint
format, that loading and running work without any network access, and that
the outputs have the shapes and types podsep expects.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from podsep.lab.fixture_models import (
    EMBEDDING_DIMENSION,
    build_pyannote_pipeline,
    build_sepformer,
    main,
)

SAMPLE_RATE = 16000


@pytest.fixture(scope="module", autouse=True)
def _no_telemetry() -> Iterator[None]:
    """pyannote.audio 4 sends usage metrics to otel.pyannote.ai unless told not to."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYANNOTE_METRICS_ENABLED", "false")
        yield


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The CI machine has two cores shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Make any connection attempt fail loudly, and record it."""
    attempts: list[object] = []

    def refuse_connect(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError(f"network access attempted during a test: {address!r}")

    def refuse_lookup(host: object, *args: object, **kwargs: object) -> None:
        attempts.append(host)
        raise OSError(f"DNS lookup attempted during a test: {host!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    return attempts


@pytest.fixture(scope="session")
def plda_dir(shared_dir: Path) -> Path:
    return shared_dir / "models" / "pyannote-community-1-plda"


@pytest.fixture(scope="session")
def pyannote_dir(tmp_path_factory: pytest.TempPathFactory, plda_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("fixture-models") / "speaker-diarization"
    return build_pyannote_pipeline(folder, plda_dir=plda_dir, size="small", seed=0)


@pytest.fixture(scope="session")
def sepformer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fixture-models") / "sepformer"
    return build_sepformer(folder, size="small", seed=0)


@pytest.fixture(scope="session")
def speech_20s(shared_dir: Path) -> torch.Tensor:
    """First 20 s of a real two-person conversation, as a (1, samples) tensor."""
    data, sample_rate = sf.read(
        shared_dir / "data" / "pyannote-sample" / "sample.wav", dtype="float32", always_2d=True
    )
    assert sample_rate == SAMPLE_RATE
    return torch.from_numpy(np.ascontiguousarray(data[: 20 * SAMPLE_RATE, 0]))[None]


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- pyannote


def test_pyannote_folder_has_the_hub_layout(pyannote_dir: Path, plda_dir: Path) -> None:
    assert _files(pyannote_dir) == {
        "README.md",
        "config.yaml",
        "segmentation/pytorch_model.bin",
        "embedding/pytorch_model.bin",
        "plda/plda.npz",
        "plda/xvec_transform.npz",
    }
    # config and PLDA are the real files, byte for byte
    assert (pyannote_dir / "config.yaml").read_bytes() == (plda_dir / "config.yaml").read_bytes()
    for name in ("plda.npz", "xvec_transform.npz"):
        assert (pyannote_dir / "plda" / name).read_bytes() == (plda_dir / "plda" / name).read_bytes()


def test_pyannote_checkpoints_are_lightning_checkpoints(pyannote_dir: Path) -> None:
    from pyannote.audio import __version__
    from pyannote.audio.core.task import Problem, Resolution

    segmentation = torch.load(
        pyannote_dir / "segmentation" / "pytorch_model.bin", map_location="cpu", weights_only=False
    )
    assert {"state_dict", "hyper_parameters", "pytorch-lightning_version", "pyannote.audio"} <= set(segmentation)
    entry = segmentation["pyannote.audio"]
    assert entry["versions"] == {"pyannote.audio": __version__}
    assert entry["architecture"] == {"module": "pyannote.audio.models.segmentation.PyanNet", "class": "PyanNet"}
    specs = entry["specifications"]
    assert specs.problem == Problem.MONO_LABEL_CLASSIFICATION
    assert specs.resolution == Resolution.FRAME
    assert specs.duration == 10.0
    assert specs.classes == ["speaker#1", "speaker#2", "speaker#3"]
    assert specs.powerset_max_classes == 2
    assert specs.num_powerset_classes == 7
    assert specs.permutation_invariant

    embedding = torch.load(
        pyannote_dir / "embedding" / "pytorch_model.bin", map_location="cpu", weights_only=False
    )
    assert embedding["pyannote.audio"]["architecture"] == {
        "module": "pyannote.audio.models.embedding.wespeaker",
        "class": "WeSpeakerResNet34",
    }
    assert embedding["pyannote.audio"]["specifications"].problem == Problem.REPRESENTATION


def test_pyannote_models_load_through_model_from_pretrained(pyannote_dir: Path) -> None:
    from pyannote.audio import Model
    from pyannote.audio.models.embedding.wespeaker import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    segmentation = Model.from_pretrained(pyannote_dir, subfolder="segmentation")
    assert isinstance(segmentation, PyanNet)
    embedding = Model.from_pretrained(pyannote_dir, subfolder="embedding")
    assert isinstance(embedding, WeSpeakerResNet34)

    with torch.inference_mode():
        scores = segmentation.eval()(torch.randn(2, 1, 10 * SAMPLE_RATE))
        vectors = embedding.eval()(torch.randn(2, 1, 3 * SAMPLE_RATE))
    assert scores.shape == (2, segmentation.num_frames(10 * SAMPLE_RATE), 7)
    # powerset scores are log-probabilities
    assert torch.allclose(scores.exp().sum(dim=-1), torch.ones(2, scores.shape[1]), atol=1e-4)
    assert vectors.shape == (2, EMBEDDING_DIMENSION)


# pyannote probes the embedding model with too-short inputs (std over one
# frame) and averages empty slices for inactive speakers; the real models
# warn the same way, so these warnings say nothing about the fixture.
@pytest.mark.filterwarnings("ignore:.*degrees of freedom is <= 0:UserWarning")
@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_pyannote_pipeline_loads_and_runs_offline(
    pyannote_dir: Path, speech_20s: torch.Tensor, no_network: list[object]
) -> None:
    from pyannote.audio import Pipeline
    from pyannote.audio.pipelines import SpeakerDiarization
    from pyannote.core import Annotation

    pipeline = Pipeline.from_pretrained(str(pyannote_dir))
    assert isinstance(pipeline, SpeakerDiarization)

    output = pipeline({"waveform": speech_20s, "sample_rate": SAMPLE_RATE})
    diarization = output.speaker_diarization
    assert isinstance(diarization, Annotation)
    assert isinstance(output.exclusive_speaker_diarization, Annotation)
    labels = diarization.labels()
    assert output.speaker_embeddings.shape == (len(labels), EMBEDDING_DIMENSION)
    if labels:
        extent = diarization.get_timeline().extent()
        assert 0.0 <= extent.start and extent.end <= 20.0 + 1e-3
    assert no_network == []


def test_pyannote_fixture_rejects_bad_arguments(tmp_path: Path, plda_dir: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        build_pyannote_pipeline(tmp_path / "a", plda_dir=plda_dir, size="medium")
    with pytest.raises(FileNotFoundError):
        build_pyannote_pipeline(tmp_path / "b", plda_dir=tmp_path / "nowhere")


# ---------------------------------------------------------------- SepFormer


def test_sepformer_folder_has_the_hub_layout(sepformer_dir: Path) -> None:
    assert _files(sepformer_dir) == {
        "README.md",
        "hyperparams.yaml",
        "encoder.ckpt",
        "masknet.ckpt",
        "decoder.ckpt",
    }
    # plain YAML view of the file (custom tags ignored): the keys the
    # speechbrain inference interface and its pretrainer rely on
    class _IgnoreTags(yaml.SafeLoader):
        pass

    def untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    _IgnoreTags.add_multi_constructor("!", untagged)
    hparams = yaml.load((sepformer_dir / "hyperparams.yaml").read_text(), Loader=_IgnoreTags)
    assert hparams["sample_rate"] == 16000
    assert hparams["num_spks"] == 2
    assert set(hparams["modules"]) == {"encoder", "masknet", "decoder"}
    assert set(hparams["pretrainer"]["loadables"]) == {"encoder", "masknet", "decoder"}
    for name in ("encoder", "masknet", "decoder"):
        state = torch.load(sepformer_dir / f"{name}.ckpt", map_location="cpu", weights_only=True)
        assert state and all(isinstance(v, torch.Tensor) for v in state.values())


def test_sepformer_loads_and_separates_offline(
    sepformer_dir: Path, tmp_path: Path, no_network: list[object]
) -> None:
    from speechbrain.inference.separation import SepformerSeparation

    model = SepformerSeparation.from_hparams(source=str(sepformer_dir), savedir=str(tmp_path / "savedir"))
    assert model is not None
    # speechbrain loads parameters non-strictly: make sure every saved
    # tensor really landed in the module it belongs to
    for name in ("encoder", "masknet", "decoder"):
        saved = torch.load(sepformer_dir / f"{name}.ckpt", map_location="cpu", weights_only=True)
        loaded = model.mods[name].state_dict()
        assert saved.keys() == loaded.keys()
        assert all(torch.equal(saved[k], loaded[k]) for k in saved)

    with torch.inference_mode():
        estimates = model.separate_batch(torch.randn(1, SAMPLE_RATE))
    assert estimates.shape == (1, SAMPLE_RATE, 2)
    assert torch.isfinite(estimates).all()
    assert no_network == []


def test_sepformer_weights_depend_only_on_the_seed(tmp_path: Path) -> None:
    def weights(folder: Path) -> dict[str, torch.Tensor]:
        return torch.load(folder / "masknet.ckpt", map_location="cpu", weights_only=True)

    first = weights(build_sepformer(tmp_path / "a", seed=1))
    again = weights(build_sepformer(tmp_path / "b", seed=1))
    other = weights(build_sepformer(tmp_path / "c", seed=2))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


# ---------------------------------------------------------------- CLI


def test_command_line_writes_both_folders(tmp_path: Path, plda_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--pyannote", str(tmp_path / "pyannote"),
            "--sepformer", str(tmp_path / "sepformer"),
            "--plda-dir", str(plda_dir),
        ]
    )  # fmt: skip
    assert code == 0
    assert (tmp_path / "pyannote" / "segmentation" / "pytorch_model.bin").is_file()
    assert (tmp_path / "sepformer" / "masknet.ckpt").is_file()
    assert "written to" in capsys.readouterr().out


def test_command_line_needs_a_destination() -> None:
    with pytest.raises(SystemExit):
        main([])
