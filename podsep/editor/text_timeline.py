"""The terminal timeline: one line per speaker under the summary table.

Each cell is a slice of the episode; the block's height says how much of that
slice the speaker talks, in the speaker's colour (the same as in the picture
and the page), so the shape of the conversation is visible without opening
anything.
"""

from __future__ import annotations

from rich.text import Text

from .geometry import activity, coverage, talk_shares
from .model import EditorInput
from .style import speaker_colours

_BLOCKS = " ▁▂▃▄▅▆▇█"
_NAME_WIDTH = 16


def _cell(fraction: float) -> str:
    if fraction <= 0.0:
        return _BLOCKS[0]
    return _BLOCKS[max(1, min(len(_BLOCKS) - 1, round(fraction * (len(_BLOCKS) - 1))))]


def text_timeline(data: EditorInput, width: int = 60) -> list[Text]:
    """One rich ``Text`` per speaker: name, ``width`` cells of activity, talk-time share."""
    width = max(int(width), 1)
    spans = activity(data)
    shares = talk_shares(data)
    colours = speaker_colours(data.speakers)
    names = {s: (s if len(s) <= _NAME_WIDTH else s[:_NAME_WIDTH - 1] + "…") for s in spans}
    name_width = max((len(n) for n in names.values()), default=0)
    lines = []
    for speaker, intervals in spans.items():
        colour = colours.get(speaker, "white")
        fractions = coverage(intervals, float(data.duration), width)
        line = Text()
        line.append(names[speaker].ljust(name_width), style=f"bold {colour}")
        line.append(" │", style="dim")
        line.append("".join(_cell(float(f)) for f in fractions), style=colour)
        line.append("│ ", style="dim")
        line.append(f"{shares.get(speaker, 0.0) * 100:3.0f} %")
        lines.append(line)
    return lines
