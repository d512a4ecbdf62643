"""``scripts/pack_extra_speech.py``: which fetched files become which training voices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from script_loader import load_script


def _line(path: Path, peak: float = 0.5, seconds: float = 1.0) -> None:
    """A line of noise whose loudest sample is ``peak``; above 1, clipped at full scale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    audio = rng.standard_normal(int(8000 * seconds)).astype(np.float32)
    sf.write(str(path), np.clip(audio / np.abs(audio).max() * peak, -1.0, 1.0), 8000)


def test_unlabelled_games_are_dealt_into_pseudo_voices_and_bad_lines_are_left_out(tmp_path, monkeypatch) -> None:
    pack = load_script("pack_extra_speech")
    monkeypatch.setattr(pack, "LINES_PER_PSEUDO_VOICE", 6)
    for n in range(13):  # pseudo-voices of 6 and 6; the last line alone is under a third of one: dropped
        _line(tmp_path / "fotaq" / "all" / f"L{n}.wav")
    for n in range(3):
        _line(tmp_path / "bass" / "all" / f"{n}.wav")
    _line(tmp_path / "bass" / "all" / "3.wav", peak=4.0)  # clipped
    _line(tmp_path / "asterisk" / "en_US_f_Allison" / "a.wav")
    _line(tmp_path / "asterisk" / "es_MX_f_Allison" / "a.wav")  # the same reader as the English prompts
    _line(tmp_path / "fillets_cs" / "unknown" / "a.wav")  # no dialogue table entry: speaker unknown
    _line(tmp_path / "fillets_cs" / "font_big" / "a.wav")
    groups = pack.voice_groups(tmp_path)
    assert sorted(groups) == ["asterisk-en_US_f_Allison", "bass-000", "fillets_cs-font_big", "fotaq-000", "fotaq-001"]
    assert [p.stem for p in groups["fotaq-000"]] == ["L0", "L1", "L2", "L3", "L4", "L5"]  # in file order
    assert [p.stem for p in groups["fotaq-001"]] == ["L6", "L7", "L8", "L9", "L10", "L11"]  # L10 after L9
    assert [p.stem for p in groups["bass-000"]] == ["0", "1", "2"]  # the clipped line left out


def test_a_packed_voice_is_flac_pseudo_utterances_the_trainer_reads(tmp_path) -> None:
    pack = load_script("pack_extra_speech")
    for n in range(12):
        _line(tmp_path / "in" / "drascula" / "b" / f"{n}.wav", seconds=1.5)
    import sys

    sys.argv = ["pack_extra_speech.py", "--fetched", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert pack.main() == 0
    files = sorted((tmp_path / "out" / "drascula-b").glob("*.flac"))
    assert files, "no utterances written"
    lengths = [sf.info(str(f)).duration for f in files]
    assert sum(lengths) > 12 * 1.0 and all(length >= 2.0 for length in lengths)
    assert sf.info(str(files[0])).samplerate == pack.RATE
