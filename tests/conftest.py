"""Shared test settings.

Real speech and reference files live outside the repository, in ``../shared``
beside the checkout (also in CI). ``PODSEP_SHARED`` overrides that location.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from podsep.lab.paths import shared_root

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config) -> None:
    """Ctrl-C as under a terminal, for this process and the podsep runs the tests start.

    A suite started in the background by a non-interactive shell (``cmd &``) has
    SIGINT ignored, and child processes inherit that: Python then installs no
    KeyboardInterrupt handler, and the tests that Ctrl-C a run would see it finish.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep podsep's caches (diarizations, model links) inside the test session."""
    os.environ["PODSEP_CACHE"] = str(tmp_path_factory.mktemp("podsep-cache"))
    yield


@pytest.fixture(autouse=True)
def _no_broken_lazy_modules():
    """Test helpers import speechbrain directly; keep its unusable lazy stand-ins out of
    ``sys.modules`` so tools scanning it (hypothesis) do not trip over them."""
    from podsep.models.hub import forget_unimportable_lazy_modules

    forget_unimportable_lazy_modules()
    yield


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_root()
    if not (path / "data").is_dir():
        pytest.fail(f"shared data folder not found at {path}; set PODSEP_SHARED")
    return path


@pytest.fixture(scope="session")
def training_voices(shared_dir: Path):
    """``training_voices(rate, seconds)``: the first ``seconds`` of two train-clean-100 voices (speakers
    198 and 8770, as ``A`` and ``B``) at ``rate``: solo speech for the adaptation tests."""
    import soundfile as sf

    from podsep.audio import resample

    def load(rate: int, seconds: float) -> dict[str, np.ndarray]:
        folder = shared_dir / "data" / "librispeech" / "train-clean-100"
        out = {}
        for name, speaker in (("A", "198"), ("B", "8770")):
            audio, file_rate = sf.read(sorted(folder.glob(f"{speaker}-*.flac"))[0], dtype="float32")
            out[name] = resample(audio, file_rate, rate)[: int(seconds * rate)]
        return out

    return load


@pytest.fixture(scope="session")
def fixture_models(tmp_path_factory, shared_dir) -> dict[str, Path]:
    """Small random-weight models in the exact on-disk formats of the defaults.

    They load through the same code as the Hub models (``Pipeline.from_pretrained``,
    ``SepformerSeparation.from_hparams``); only the path differs. Their output
    is meaningless as quality: tests use them for wiring, shapes and files only.
    """
    from podsep.lab.fixture_models import build_pyannote_pipeline, build_sepformer

    root = tmp_path_factory.mktemp("fixture-models")
    return {
        "pyannote": build_pyannote_pipeline(
            root / "pyannote", plda_dir=shared_dir / "models" / "pyannote-community-1-plda"
        ),
        "sepformer": build_sepformer(root / "sepformer"),
    }


@pytest.fixture(scope="session")
def two_speaker_wav(shared_dir) -> Path:
    """A real two-person conversation (30 s, 16 kHz) with reference turns beside it."""
    return shared_dir / "data" / "pyannote-sample" / "sample.wav"
