"""Separated audio parked on disk: bounded memory without changing a single sample."""

from __future__ import annotations


import numpy as np
import pytest

import podsep
from podsep import spill
from podsep.spill import DiskArray, SpillError, SpillStore
from podsep.lab.synth import ConversationSpec, generate_conversation
from podsep.lab.oracle import OracleSeparator


def test_store_keeps_within_budget_then_goes_to_disk():
    rng = np.random.default_rng(0)
    first = {"A": rng.standard_normal(1000).astype(np.float32)}
    second = {"A": rng.standard_normal(1000).astype(np.float32), "B": rng.standard_normal(500).astype(np.float32)}
    originals = {"A": second["A"].copy(), "B": second["B"].copy()}
    with SpillStore(budget=4000) as store:
        store.park(first)
        assert isinstance(first["A"], np.ndarray) and store.held_bytes == 4000
        store.park(second)
        assert all(isinstance(v, DiskArray) for v in second.values())
        assert store.spilled_bytes == 6000
        for speaker, original in originals.items():
            assert len(second[speaker]) == original.size
            np.testing.assert_array_equal(second[speaker][:], original)
            np.testing.assert_array_equal(second[speaker][123:456], original[123:456])
            np.testing.assert_array_equal(second[speaker][-7:], original[-7:])
            assert second[speaker][10:10].size == 0
        store.park(second)  # parking again writes nothing more
        assert store.spilled_bytes == 6000


def test_disk_array_refuses_strided_reads():
    with SpillStore(budget=0) as store:
        sources = {"A": np.arange(10, dtype=np.float32)}
        store.park(sources)
        with pytest.raises(TypeError):
            sources["A"][::2]


def test_spill_file_has_no_name_on_disk(tmp_path):
    with SpillStore(budget=0, folder=str(tmp_path)) as store:
        store.park({"A": np.ones(100, dtype=np.float32)})
        assert list(tmp_path.iterdir()) == []  # anonymous: nothing to leave behind after a crash


def test_write_failure_is_a_clear_error(monkeypatch):
    store = SpillStore(budget=0)
    handle = store._open()

    class Full:
        def __getattr__(self, name):
            return getattr(handle, name)

        def write(self, data):
            raise OSError(28, "No space left on device")

    store._file = Full()
    with pytest.raises(SpillError, match="No space left on device.*TMPDIR"):
        store.park({"A": np.ones(100, dtype=np.float32)})
    handle.close()


@pytest.mark.parametrize("budget", [0, 1_000_000])
def test_split_is_identical_with_separated_audio_on_disk(shared_dir, monkeypatch, budget):
    rate = 16000
    spec = ConversationSpec(num_speakers=2, duration=40.0, sample_rate=rate, overlap_ratio=0.25)
    conversation = generate_conversation(shared_dir / "data" / "librispeech", spec, seed=5)
    references = {s: conversation.references[s] for s in conversation.diarization.speakers}
    overrides = {"overlaps.max_window": 6.0, "overlaps.chunk_overlap": 2.0}  # chunked windows too

    def run():
        oracle = OracleSeparator(conversation.mixture, references, seed=5)
        return podsep.split(conversation.mixture, sample_rate=rate, diarization=conversation.diarization,
                            separator=oracle, overrides=overrides)

    in_memory = run()
    parked: list[int] = []
    original_park = SpillStore.park

    def counting_park(self, sources):
        original_park(self, sources)
        parked.append(sum(isinstance(v, DiskArray) for v in sources.values()))

    monkeypatch.setattr(spill, "IN_MEMORY_BUDGET", budget)
    monkeypatch.setattr(SpillStore, "park", counting_park)
    on_disk = run()
    windows = sum(len(r["windows"]) for r in in_memory.manifest["overlaps"])
    assert len(parked) == windows >= 3
    assert sum(parked) > 0 and (budget > 0) == (0 in parked)  # a budget keeps the first windows in memory
    for speaker in in_memory.tracks:
        np.testing.assert_array_equal(in_memory.tracks[speaker], on_disk.tracks[speaker])
