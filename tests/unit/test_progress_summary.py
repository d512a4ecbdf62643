"""The CLI's closing lines say whether the voices were learnt, and why not when they were not."""

from __future__ import annotations

from podsep.cli.progress import adaptation_line

OVERLAP = [{"start": 1.0, "end": 2.0, "handling": "separated"}]


def test_a_run_that_learnt_the_voices_says_how_much_it_gained():
    manifest = {"overlaps": OVERLAP, "adaptation": {"mode": "auto", "used": True, "steps": 110, "reason": "kept",
                                                    "validation_si_sdri_db": {"generic": 5.28, "adapted": 10.34}}}
    assert adaptation_line(manifest) == ("voices learnt (110 steps; on mixtures of their held-out solo speech "
                                         "5.3 -> 10.3 dB SI-SDRi)")


def test_the_top_octave_is_reported_where_it_was_learnt_or_tried():
    entry = {"mode": "auto", "used": True, "steps": 110, "reason": "kept",
             "validation_si_sdri_db": {"generic": 5.28, "adapted": 10.34},
             "top_octave": {"used": True, "steps": 100, "validation_top_octave_snr_db": {"incoming": 7.34,
                                                                                        "adapted": 8.25}}}
    assert adaptation_line({"overlaps": OVERLAP, "adaptation": entry}).endswith(
        "SI-SDRi); their top octave learnt (7.3 -> 8.2 dB SNR)")
    entry["top_octave"] = {"used": False, "reason": "too little solo speech for B", "steps": 0,
                           "validation_top_octave_snr_db": {"incoming": None, "adapted": None}}
    assert adaptation_line({"overlaps": OVERLAP, "adaptation": entry}).endswith("; their top octave not learnt")


def test_a_run_that_did_not_learn_says_why():
    manifest = {"overlaps": OVERLAP, "adaptation": {"mode": "auto", "used": False, "steps": 0,
                                                    "reason": "only 0.4 s of overlapped speech"}}
    assert adaptation_line(manifest) == "voices not learnt: only 0.4 s of overlapped speech"


def test_nothing_is_said_where_learning_never_applied():
    learnt = {"mode": "auto", "used": True, "steps": 3, "validation_si_sdri_db": {"generic": 1.0, "adapted": 2.0}}
    assert adaptation_line({"overlaps": [], "adaptation": learnt}) is None  # nothing overlapped
    assert adaptation_line({"overlaps": OVERLAP, "adaptation": {"mode": "off", "used": False}}) is None
    other_separator = {"mode": "auto", "used": False, "reason": "only podsep's embedded separator can be adapted"}
    assert adaptation_line({"overlaps": OVERLAP, "adaptation": other_separator}) is None
    assert adaptation_line({"overlaps": OVERLAP}) is None
