"""The timeline picture ``<stem>.timeline.png``: who spoke when, and how overlaps went.

One lane per speaker with their turns (overlapped stretches hatched), then two
lanes for the overlaps: how each was handled, and how confident the source
assignment was. The axis reads h:mm:ss; the legend gives names and talk-time
shares. Everything is drawn through :mod:`.geometry`'s simplification at the
picture's own resolution, so an hour-long episode gives as few shapes (and as
small a file) as a short one and stays legible.

Matplotlib's object API with the Agg canvas is used directly (no ``pyplot``):
no global figure state, no display needed, safe in any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .geometry import activity, overlap_marks, simplify, talk_shares, talk_times, tick_step
from .model import EditorInput
from .style import (HANDLING_COLOURS, NO_CONFIDENCE_COLOUR, confidence_colour, confidence_ramp, duration_words,
                    handling_colour, hms, speaker_colours)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH_PX = 1600
DPI = 100
_LEFT, _RIGHT = 0.11, 0.965  # plot area, as fractions of the width
LANE_PX = 56
OVERLAP_LANE_PX = 34


def _short(name: str, limit: int) -> str:
    return name if len(name) <= limit else name[:limit - 1] + "…"


def plot_resolution(duration: float) -> float:
    """Seconds per pixel of the plot area."""
    return max(duration, 1e-6) / (WIDTH_PX * (_RIGHT - _LEFT))


def draw_timeline(data: EditorInput) -> "Figure":
    """The picture as a matplotlib figure (tests inspect it; :func:`write_timeline` saves it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    duration = max(float(data.duration), 1e-3)
    resolution = plot_resolution(duration)
    colours = speaker_colours(data.speakers)
    spans = activity(data)
    shares, times = talk_shares(data), talk_times(data)
    speakers = list(spans)

    handles = [Patch(facecolor=colours[s],
                     label=f"{_short(s, 40)}: {shares[s] * 100:.0f} % of talk ({duration_words(times[s])})")
               for s in speakers]
    present = [h for h in HANDLING_COLOURS if any(str(e.get("handling")) == h for e in data.overlaps)]
    handles += [Patch(facecolor=HANDLING_COLOURS[h], label=f"overlap {h}") for h in present]
    if data.overlaps:
        handles.append(Patch(facecolor="#888888", hatch="////", edgecolor="white", label="overlapped speech"))
    # as many legend columns as the longest entry allows (about 7 px a character), at most 4
    longest = max((len(h.get_label()) for h in handles), default=1)
    columns = max(1, min(4, len(handles), int(WIDTH_PX * (_RIGHT - _LEFT) // (7 * longest + 50))))
    legend_rows = -(-len(handles) // columns)
    lanes_px = LANE_PX * max(len(speakers), 1) + 2 * OVERLAP_LANE_PX
    top_px, bottom_px = max(118, 40 + 20 * legend_rows + 38), 58
    height_px = lanes_px + top_px + bottom_px
    figure = Figure(figsize=(WIDTH_PX / DPI, height_px / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    axes = figure.add_axes((_LEFT, bottom_px / height_px, _RIGHT - _LEFT, lanes_px / height_px))

    # lanes from the top: speakers, then "overlaps" (handling) and "confidence"
    lane_units = [1.0] * len(speakers) + [OVERLAP_LANE_PX / LANE_PX] * 2
    tops = []
    y = sum(lane_units)
    for units in lane_units:
        tops.append(y)
        y -= units
    overlap_by_speaker: dict[str, list[tuple[float, float]]] = {s: [] for s in speakers}
    for entry in data.overlaps:
        for speaker in entry.get("speakers") or []:
            if speaker in overlap_by_speaker:
                overlap_by_speaker[speaker].append((float(entry["start"]), float(entry["end"])))

    merged_any = False
    for lane, speaker in enumerate(speakers):
        blocks = simplify(spans[speaker], resolution)
        merged_any |= len(blocks) < len(spans[speaker])
        bottom, height = tops[lane] - 0.85, 0.7
        axes.broken_barh([(a, b - a) for a, b in blocks], (bottom, height), facecolors=colours[speaker],
                         edgecolors="none", gid=f"turns:{speaker}")
        hatched = simplify(overlap_by_speaker[speaker], resolution)
        if hatched:
            axes.broken_barh([(a, b - a) for a, b in hatched], (bottom, height), facecolors="none",
                             edgecolors="white", linewidth=0, hatch="////", gid=f"overlapped:{speaker}")

    marks = overlap_marks(data, resolution)
    merged_any |= len(marks) < len(data.overlaps)
    unit = OVERLAP_LANE_PX / LANE_PX
    for lane, name, colour_of in ((len(speakers), "handling", lambda m: handling_colour(m.handling)),
                                  (len(speakers) + 1, "confidence", lambda m: confidence_colour(m.confidence))):
        if marks:
            axes.broken_barh([(m.start, m.end - m.start) for m in marks], (tops[lane] - unit * 0.88, unit * 0.76),
                             facecolors=[colour_of(m) for m in marks], edgecolors="none", gid=f"overlaps:{name}")
    if not data.overlaps:
        axes.text(duration / 2, tops[len(speakers)] - unit, "no overlapped speech", ha="center", va="center",
                  fontsize=10, color="#666666")

    labels = speakers + ["overlaps", "confidence"]
    shown = [_short(name, 18) for name in labels]  # the longer name is in the legend
    axes.set_yticks([top - units / 2 for top, units in zip(tops, lane_units)], labels=shown, fontsize=11)
    for tick, speaker in zip(axes.get_yticklabels(), labels):
        if speaker in colours:
            tick.set_color(colours[speaker])
            tick.set_fontweight("bold")
    axes.set_ylim(0, sum(lane_units))
    axes.set_xlim(0, duration)
    step = tick_step(duration)
    axes.xaxis.set_major_locator(MultipleLocator(step))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: hms(value)))
    axes.tick_params(axis="x", labelsize=10)
    axes.tick_params(axis="y", length=0)
    axes.grid(axis="x", color="#DDDDDD", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    for boundary in tops[len(speakers):]:
        axes.axhline(boundary, color="#BBBBBB", linewidth=0.6)

    total_overlap = sum(float(e["end"]) - float(e["start"]) for e in data.overlaps)
    title = (f"{data.stem}   ·   {hms(data.duration)}   ·   {len(speakers)} speaker{'s' * (len(speakers) != 1)}"
             f"   ·   {len(data.overlaps)} overlap{'s' * (len(data.overlaps) != 1)} ({duration_words(total_overlap)})")
    figure.text(_LEFT, 1 - 14 / height_px, title, fontsize=14, fontweight="bold", va="top")
    if merged_any:
        figure.text(_RIGHT, 1 - 16 / height_px,
                    f"too dense to draw one by one: pieces less than {2 * resolution:.2g} s apart drawn as one",
                    fontsize=9, color="#666666", va="top", ha="right")

    if handles:
        figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(_LEFT, 1 - 40 / height_px),
                      ncol=columns, frameon=False, fontsize=10, handlelength=1.6, columnspacing=1.6)
    else:
        figure.text(_LEFT, 1 - 44 / height_px, "nobody speaks", fontsize=10, color="#666666", va="top")

    if data.overlaps:  # colour bar for the confidence lane
        ramp = LinearSegmentedColormap.from_list("podsep-confidence", confidence_ramp())
        bar = figure.add_axes((_RIGHT - 0.16, (lanes_px + bottom_px + 14) / height_px, 0.16, 10 / height_px))
        bar.imshow([[i / 255 for i in range(256)]], cmap=ramp, aspect="auto", extent=(0, 1, 0, 1))
        bar.set_yticks([])
        bar.set_xticks([0, 0.5, 1], labels=["0 guess", "0.5", "1 sure"], fontsize=8)
        bar.tick_params(axis="x", length=2, pad=1)
        bar.set_title("assignment confidence (grey: none)", fontsize=8, pad=2)
        for spine in bar.spines.values():
            spine.set_visible(False)
        bar.set_facecolor(NO_CONFIDENCE_COLOUR)
    return figure


def write_timeline(path: Path, data: EditorInput) -> Path:
    """Save ``<stem>.timeline.png``."""
    figure = draw_timeline(data)
    figure.savefig(path, format="png", dpi=DPI, facecolor="white")
    return path
