"""Colours, words and time formats shared by every editor output.

The picture, the page and the terminal timeline use the same colour for a
speaker and the same words for a handling, so a person who has learnt one of
them can read the others; keeping them in one place is what guarantees that.
"""

from __future__ import annotations

import colorsys
import math

# Okabe-Ito colours first (distinguishable with the common colour-vision deficiencies),
# then a few darker extras; beyond those, colours are generated.
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
            "#7B3294", "#8C6D31", "#1B7837", "#B2182B")

HANDLING_COLOURS = {
    "separated": "#264653",
    "duplicated": "#B39DDB",
    "muted": "#8A8A8A",
    "mixture": "#E63946",
}
UNKNOWN_HANDLING_COLOUR = "#AAAAAA"
NO_CONFIDENCE_COLOUR = "#C8C8C8"

HANDLING_WORDS = {
    "separated": "separated: each voice taken from the separator's output",
    "duplicated": "duplicated: the mixed audio copied into every speaker's track",
    "muted": "muted: silence in every speaker's track",
    "mixture": "left as the mixture: no separated window covered it",
}

# Confidence ramp: red (a guess) → pale yellow (a coin flip between two sources) → blue (sure).
_RAMP = ((0.0, (0xD7, 0x30, 0x27)), (0.5, (0xFE, 0xE0, 0x90)), (1.0, (0x45, 0x75, 0xB4)))


def speaker_colours(speakers: tuple[str, ...] | list[str]) -> dict[str, str]:
    """A ``#RRGGBB`` colour per speaker, by position, identical in every output."""
    colours = {}
    for index, speaker in enumerate(speakers):
        if index < len(_PALETTE):
            colours[speaker] = _PALETTE[index]
        else:  # golden-angle hues keep generated colours apart from each other
            hue = (index * 0.381966) % 1.0
            r, g, b = colorsys.hls_to_rgb(hue, 0.42, 0.65)
            colours[speaker] = "#{:02X}{:02X}{:02X}".format(round(r * 255), round(g * 255), round(b * 255))
    return colours


def handling_colour(handling: str | None) -> str:
    return HANDLING_COLOURS.get(str(handling), UNKNOWN_HANDLING_COLOUR)


def handling_words(handling: str | None) -> str:
    return HANDLING_WORDS.get(str(handling), str(handling or "unknown"))


def confidence_colour(confidence: float | None) -> str:
    """Colour of an assignment confidence in [0, 1]; grey when there is none (nothing was assigned)."""
    if confidence is None or not math.isfinite(float(confidence)):
        return NO_CONFIDENCE_COLOUR
    value = min(max(float(confidence), 0.0), 1.0)
    for (x0, c0), (x1, c1) in zip(_RAMP, _RAMP[1:]):
        if value <= x1:
            t = (value - x0) / (x1 - x0)
            return "#{:02X}{:02X}{:02X}".format(*(round(a + (b - a) * t) for a, b in zip(c0, c1)))
    return "#{:02X}{:02X}{:02X}".format(*_RAMP[-1][1])


def confidence_ramp() -> list[tuple[float, str]]:
    """The ramp's stops, for drawing a colour bar."""
    return [(x, "#{:02X}{:02X}{:02X}".format(*rgb)) for x, rgb in _RAMP]


def confidence_words(confidence: float | None) -> str:
    """How sure the source assignment was, in one word a reader can act on."""
    if confidence is None:
        return "none"
    confidence = round(float(confidence), 2)  # the word must agree with the two decimals shown beside it
    if confidence >= 0.9:
        return "high"
    if confidence >= 0.7:
        return "medium"
    return "low"


def hms(seconds: float) -> str:
    """``h:mm:ss`` (the axis format), rounded to the second."""
    total = int(round(max(seconds, 0.0)))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def hms_precise(seconds: float) -> str:
    """``h:mm:ss.s`` for lists, where a tenth of a second matters."""
    tenths = int(round(max(seconds, 0.0) * 10))
    whole, tenth = divmod(tenths, 10)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{tenth}"


def duration_words(seconds: float) -> str:
    """A length as people say it: ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    total = int(round(seconds))
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"
