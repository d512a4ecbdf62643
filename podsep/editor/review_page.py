"""The review page ``<stem>.html``: look at the split and listen to it before importing.

A single file that works opened straight from disk: CSS, script and the
timeline (SVG) are inline, nothing is fetched from a network, and the only
references are the tracks beside it (relative names) and the original where it
lies (a ``file:`` URL). Every track and the original have an ``<audio>`` element
in the markup itself, so the page still plays without script; the script only
keeps the players in step, moves the playhead, and makes the overlap list and
the timeline seek every player at once.

The timeline is drawn with the same simplification as the PNG, and the page
holds no audio or images, so an hour-long episode stays a light page.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .geometry import activity, overlap_marks, simplify, talk_shares, talk_times, tick_step
from .model import EditorInput
from .style import (HANDLING_COLOURS, NO_CONFIDENCE_COLOUR, confidence_colour, confidence_ramp, confidence_words,
                    duration_words, handling_colour, handling_words, hms, hms_precise, speaker_colours)

_SVG_WIDTH = 1200
_SVG_LEFT = 120  # label column
_SVG_RIGHT = 1188
_LANE = 34
_OVERLAP_LANE = 20


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _n(value: float) -> str:
    """A short number for SVG coordinates (two decimals are below a screen pixel)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _relative_url(name: str) -> str:
    return quote(name.replace("\\", "/"))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- words ----------------------------------------------------------------------------
def fallback_sentences(fallbacks: dict) -> list[str]:
    """Each recorded fallback as a sentence saying what happened instead."""
    sentences = []
    for key, value in fallbacks.items():
        if key == "diarization_fallback":
            sentences.append(f"The diarization model could not be used ({value}), so podsep's embedded "
                             "diarizer decided who speaks when instead.")
        elif key == "separation_fallback":
            details = value if isinstance(value, dict) else {"reason": value}
            policy, separator = str(details.get("policy")), str(details.get("separator"))
            if policy == "separate" and separator == "embedded":
                instead = "podsep's embedded separator (lower quality than SepFormer) separated the overlaps"
            else:
                instead = {
                    "duplicate": "overlapped speech was copied, still mixed, into every active speaker's track",
                    "mute": "overlapped speech was silenced in every track",
                }.get(policy, "overlapped speech was not separated by the configured model")
            sentences.append(f"The separation model could not be loaded ({details.get('reason')}), so {instead}.")
        else:
            detail = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            sentences.append(f"{key.replace('_', ' ').capitalize()}: {detail}.")
    return sentences


def model_sentences(models: dict) -> list[tuple[str, str]]:
    """``(stage, what was used)`` for the diarizer and the separator, in plain words."""
    rows = []
    for stage in ("diarization", "separation"):
        info = models.get(stage)
        rows.append((stage.capitalize(), _describe_model(stage, info)))
    for stage, info in models.items():
        if stage not in ("diarization", "separation"):
            rows.append((str(stage).capitalize(), _describe_model(stage, info)))
    return rows


def _describe_model(stage: str, info: Any) -> str:
    if not info:
        return ("none: overlapped speech was not separated" if stage == "separation"
                else "none recorded")
    if not isinstance(info, dict):
        return str(info)
    kind = str(info.get("kind", ""))
    source = info.get("source")
    if kind == "pyannote.audio.Pipeline":
        text = f"pyannote.audio pipeline {source}"
    elif kind == "embedded":
        parts = [str((info.get(k) or {}).get("model")) for k in ("voice_activity", "speaker_embedding")
                 if isinstance(info.get(k), dict) and (info.get(k) or {}).get("model")]
        text = "podsep's embedded diarizer" + (f" ({', '.join(parts)})" if parts else "")
    elif kind == "reference":
        text = f"turns read from your diarization file {source}"
    elif kind == "speechbrain.SepformerSeparation":
        text = f"SepFormer {source}"
    elif kind == "podsep.embedded-convtasnet":
        text = f"podsep's embedded separator (Conv-TasNet, {source})"
    else:
        text = " ".join(str(x) for x in (kind or "model", source) if x)
    if info.get("revision"):
        text += f", revision {str(info['revision'])[:12]}"
    if info.get("device"):
        text += f", on {info['device']}"
    chunking = info.get("chunking")
    if isinstance(chunking, dict) and chunking.get("chunk_seconds"):
        text += f", in chunks of {duration_words(float(chunking['chunk_seconds']))}"
    return text


def overlap_summary(data: EditorInput) -> str:
    """One sentence on the overlaps: how many, how long, how they were handled."""
    if not data.overlaps:
        return "No overlapped speech was found: every track is the original where its speaker talks."
    total = sum(float(e["end"]) - float(e["start"]) for e in data.overlaps)
    counts: dict[str, int] = {}
    for entry in data.overlaps:
        counts[str(entry.get("handling"))] = counts.get(str(entry.get("handling")), 0) + 1
    parts = []
    for handling, count in counts.items():
        part = f"{count} {handling}"
        if handling == "separated":
            low = sum(1 for e in data.overlaps if e.get("handling") == "separated"
                      and e.get("confidence") is not None and float(e["confidence"]) < 0.7)
            if low:
                part += f" ({low} with low confidence: listen to those first)"
        parts.append(part)
    return (f"{_plural(len(data.overlaps), 'overlap')}, {duration_words(total)} in all: "
            + ", ".join(parts) + ".")


# -- timeline -------------------------------------------------------------------------
def timeline_svg(data: EditorInput) -> str:
    """The timeline as inline SVG, simplified at its own width (bounded size for any length)."""
    duration = max(float(data.duration), 1e-3)
    width = _SVG_RIGHT - _SVG_LEFT
    scale = width / duration
    resolution = duration / width
    colours = speaker_colours(data.speakers)
    spans = activity(data)
    speakers = list(spans)
    top = 6
    height = top + _LANE * len(speakers) + 2 * _OVERLAP_LANE + 28
    out = [f'<svg id="timeline" viewBox="0 0 {_SVG_WIDTH} {height}" '
           f'role="img" aria-label="timeline: who speaks when, and the overlaps">']
    y = top
    for speaker in speakers:
        blocks = simplify(spans[speaker], resolution)
        out.append(f'<text class="lane" x="{_SVG_LEFT - 8}" y="{y + _LANE / 2 + 4}" fill="{colours[speaker]}">'
                   f'{_e(speaker)}</text>')
        out.append(_bars(blocks, scale, y + 5, _LANE - 10, colours[speaker], 0.5))
        y += _LANE
    marks = overlap_marks(data, resolution)
    for name, colour_of in (("overlaps", lambda m: handling_colour(m.handling)),
                            ("confidence", lambda m: confidence_colour(
                                None if m.confidence is None else round(m.confidence * 20) / 20))):
        out.append(f'<line x1="{_SVG_LEFT}" x2="{_SVG_RIGHT}" y1="{y}" y2="{y}" class="rule"/>'
                   f'<text class="lane" x="{_SVG_LEFT - 8}" y="{y + _OVERLAP_LANE / 2 + 4}">{name}</text>')
        by_colour: dict[str, list[tuple[float, float]]] = {}
        for mark in marks:
            by_colour.setdefault(colour_of(mark), []).append((mark.start, mark.end))
        out += [_bars(spans_, scale, y + 3, _OVERLAP_LANE - 6, colour, 1.0) for colour, spans_ in by_colour.items()]
        y += _OVERLAP_LANE
    out.append(f'<line x1="{_SVG_LEFT}" x2="{_SVG_RIGHT}" y1="{y}" y2="{y}" class="axis"/>')
    step = tick_step(duration, max_ticks=10)
    tick = 0.0
    while tick <= duration + 1e-9:
        x = _n(_SVG_LEFT + tick * scale)
        anchor = "end" if tick * scale > width - 30 else ("start" if tick == 0 else "middle")
        out.append(f'<line x1="{x}" x2="{x}" y1="{top}" y2="{y + 4}" class="grid"/>'
                   f'<text class="tick" x="{x}" y="{y + 18}" text-anchor="{anchor}">{hms(tick)}</text>')
        tick += step
    out.append(f'<line id="playhead" x1="{_SVG_LEFT}" x2="{_SVG_LEFT}" y1="{top - 4}" y2="{y}"/>')
    out.append("</svg>")
    return "".join(out)


def _bars(spans: list[tuple[float, float]], scale: float, y: float, height: float, colour: str,
          min_width: float) -> str:
    """Bars of one colour as a single path (a third of the bytes of one ``<rect>`` each)."""
    if not spans:
        return ""
    d = "".join(f"M{_n(_SVG_LEFT + a * scale)} {_n(y)}h{_n(max((b - a) * scale, min_width))}v{_n(height)}"
                f"h-{_n(max((b - a) * scale, min_width))}z" for a, b in spans)
    return f'<path fill="{colour}" d="{d}"/>'


def _legend(data: EditorInput) -> str:
    present = [h for h in HANDLING_COLOURS if any(str(e.get("handling")) == h for e in data.overlaps)]
    items = [f'<span><i style="background:{HANDLING_COLOURS[h]}"></i>overlap {h}</span>' for h in present]
    if data.overlaps:
        stops = ", ".join(f"{colour} {x * 100:.0f}%" for x, colour in confidence_ramp())
        items.append(f'<span><i class="ramp" style="background:linear-gradient(90deg, {stops})"></i>'
                     f'confidence 0 (a guess) → 1 (sure)</span>')
        items.append(f'<span><i style="background:{NO_CONFIDENCE_COLOUR}"></i>no confidence (not separated)</span>')
    return f'<p class="legend">{"".join(items)}</p>' if items else ""


# -- players ---------------------------------------------------------------------------
def _player(index: int, role: str, name: str, src: str, colour: str, note: str, *, listen: bool) -> str:
    checked = " checked" if listen else ""
    muted = "" if listen else " muted"
    return (f'<div class="track" style="--c:{colour}">'
            f'<label class="name"><input type="checkbox" class="listen" data-player="p{index}"{checked}>'
            f'{_e(name)}</label><span class="note">{_e(note)}</span>'
            f'<button type="button" class="only" data-player="p{index}" title="listen to this track alone">only</button>'
            f'<audio id="p{index}" class="player" data-role="{role}" controls preload="metadata"{muted} '
            f'src="{_e(src)}"></audio><span class="error" hidden></span></div>')


def _players(data: EditorInput) -> str:
    colours = speaker_colours(data.speakers)
    shares, times = talk_shares(data), talk_times(data)
    rows = []
    index = 0
    for speaker in data.speakers:
        if speaker not in data.track_files:
            continue
        note = f"{shares.get(speaker, 0) * 100:.0f} % of talk, {duration_words(times.get(speaker, 0))}"
        rows.append(_player(index, "speaker", speaker, _relative_url(data.track_files[speaker]), colours[speaker],
                            note, listen=True))
        index += 1
    if data.background_file:
        rows.append(_player(index, "background", "Background", _relative_url(data.background_file), "#777777",
                            "everything that is not speech", listen=True))
        index += 1
    if data.original_path:
        rows.append(_player(index, "original", "Original", Path(data.original_path).as_uri(), "#222222",
                            f"{data.original_path} (muted: tick to compare)", listen=False))
    return "".join(rows)


# -- overlap list ----------------------------------------------------------------------
def _doubt_key(entry: dict) -> float:
    """Sort key for "most doubtful first": mixture, then separated by confidence, then the rest."""
    handling = entry.get("handling")
    if handling == "mixture":
        return -1.0
    if handling == "separated" and entry.get("confidence") is not None:
        return float(entry["confidence"])
    return 2.0


def _overlap_rows(data: EditorInput) -> str:
    """One row per overlap; colours come from classes so an hour's worth of rows stays small."""
    index = {speaker: i for i, speaker in enumerate(data.speakers)}
    rows = []
    ordered = sorted(data.overlaps, key=lambda e: (float(e["start"]), float(e["end"])))
    for number, entry in enumerate(ordered, start=1):
        start, end = float(entry["start"]), float(entry["end"])
        confidence = entry.get("confidence")
        who = " + ".join(f'<b class="s{index[s]}">{_e(s)}</b>' if s in index else f"<b>{_e(s)}</b>"
                         for s in entry.get("speakers") or [])
        if confidence is None:
            sure = '<span class="muted">none</span>'
        else:
            value = float(confidence)
            sure = (f'<i class="dot" style="background:{confidence_colour(value)}"></i>'
                    f'{value:.2f} {confidence_words(value)}')
        handling = str(entry.get("handling"))
        rows.append(
            f'<tr class="overlap" tabindex="0" data-start="{start!r}" data-end="{end!r}" data-n="{number}" '
            f'data-doubt="{_doubt_key(entry)!r}"><td>{number}</td><td class="when">▶ {hms_precise(start)}</td>'
            f'<td>{end - start:.1f} s</td><td>{who}</td>'
            f'<td><i class="dot h-{_e(handling)}"></i>{_e(handling)}</td><td>{sure}</td>'
            f'<td>{len(entry.get("windows") or [])}</td></tr>')
    return "".join(rows)


def _row_styles(data: EditorInput) -> str:
    """Per-speaker and per-handling colour classes used by the overlap rows."""
    colours = speaker_colours(data.speakers)
    rules = [f".s{i}{{color:{colours[s]}}}" for i, s in enumerate(data.speakers)]
    rules += [f".h-{h}{{background:{c}}}" for h, c in HANDLING_COLOURS.items()]
    return "".join(rules)


def _handling_key(data: EditorInput) -> str:
    present = [h for h in HANDLING_COLOURS if any(str(e.get("handling")) == h for e in data.overlaps)]
    present += sorted({str(e.get("handling")) for e in data.overlaps} - set(present))
    return "<ul class=\"key\">" + "".join(
        f'<li><i class="dot h-{_e(h)}"></i>{_e(handling_words(h))}</li>' for h in present) + "</ul>"


# -- page ------------------------------------------------------------------------------
_CSS = """
:root{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#fafafa}
body{max-width:1240px;margin:0 auto;padding:18px 22px 60px}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.sub{color:#555;margin:0 0 .8rem}.muted{color:#888}
.box{border-radius:8px;padding:.6rem .9rem;margin:.6rem 0}
.ok{background:#eaf6ee;border:1px solid #b9dfc4}.warn{background:#fff6dd;border:1px solid #f0d58c}
.box ul{margin:.2rem 0;padding-left:1.2rem}
#timeline{width:100%;height:auto;background:#fff;border:1px solid #e3e3e3;border-radius:8px;cursor:crosshair}
#timeline .lane{font-size:13px;text-anchor:end;font-weight:600}#timeline .tick{font-size:11px;fill:#444}
#timeline .grid{stroke:#ececec}#timeline .rule{stroke:#cfcfcf}#timeline .axis{stroke:#888}
#playhead{stroke:#d62728;stroke-width:2}
.legend span{display:inline-flex;align-items:center;margin-right:1.1rem;font-size:.9rem;color:#444}
.legend i,.dot{display:inline-block;width:.85rem;height:.85rem;border-radius:3px;margin-right:.35rem;vertical-align:-1px}
.legend i.ramp{width:4rem}
.transport{display:flex;gap:.8rem;align-items:center;margin:.4rem 0 .6rem}
button{font:inherit;padding:.3rem .8rem;border:1px solid #bbb;border-radius:6px;background:#fff;cursor:pointer}
button:hover{background:#f0f0f0}#clock{font-variant-numeric:tabular-nums;font-size:1.1rem}
.track{display:grid;grid-template-columns:14rem 1fr auto 22rem;gap:.6rem;align-items:center;padding:.35rem .5rem;
border-left:5px solid var(--c);background:#fff;margin:.3rem 0;border-radius:4px}
.track .name{font-weight:600;color:var(--c);overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.track .note{color:#666;font-size:.85rem;overflow-wrap:anywhere}
.track audio{width:100%;height:34px}.track .error{grid-column:1/-1;color:#b00020;font-size:.85rem}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.92rem}
th,td{text-align:left;padding:.3rem .55rem;border-bottom:1px solid #eee}th{background:#f3f3f3;position:sticky;top:0}
tr.overlap{cursor:pointer}tr.overlap:hover{background:#f1f6ff}tr.overlap:focus{outline:2px solid #4575b4}
tr.overlap.current{background:#dbe8ff}td.when{white-space:nowrap;font-variant-numeric:tabular-nums;color:#2a5db0}
.sort button.on{background:#1d1d1f;color:#fff;border-color:#1d1d1f}
dl{display:grid;grid-template-columns:9rem 1fr;gap:.25rem .8rem}dt{font-weight:600}dd{margin:0}
details pre{font-size:.8rem;background:#f4f4f4;padding:.6rem;overflow:auto;max-height:20rem}
.files li{margin:.15rem 0}.key{margin:.2rem 0 .6rem;padding-left:1.2rem;color:#444;font-size:.9rem}
.key li{list-style:none}
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var players = Array.prototype.slice.call(document.querySelectorAll("audio.player"));
  var duration = Number(document.body.getAttribute("data-duration")) || 0;
  var svg = document.getElementById("timeline");
  var playhead = document.getElementById("playhead");
  var clock = document.getElementById("clock");
  var playButton = document.getElementById("play");
  var left = Number(svg.getAttribute("data-left")), right = Number(svg.getAttribute("data-right"));
  var stopAt = null;

  function fmt(t) {
    var tenths = Math.round(Math.max(t, 0) * 10), s = Math.floor(tenths / 10);
    var mm = Math.floor(s % 3600 / 60), ss = s % 60;
    return Math.floor(s / 3600) + ":" + (mm < 10 ? "0" : "") + mm + ":" + (ss < 10 ? "0" : "") + ss + "." + tenths % 10;
  }
  function lead() {
    for (var i = 0; i < players.length; i++) { if (!players[i].paused) { return players[i]; } }
    return players[0];
  }
  function show(t) {
    if (clock) { clock.textContent = fmt(t) + " / " + fmt(duration); }
    var x = left + (right - left) * (duration > 0 ? Math.min(t / duration, 1) : 0);
    playhead.setAttribute("x1", x); playhead.setAttribute("x2", x);
  }
  function isPlaying() { return players.some(function (p) { return !p.paused; }); }
  function seekAll(t) {
    t = Math.max(0, Math.min(t, duration));
    players.forEach(function (p) { if (Math.abs(p.currentTime - t) > 0.01) { p.currentTime = t; } });
    show(t);
  }
  function playAll() {
    players.forEach(function (p) { var r = p.play(); if (r && r.catch) { r.catch(function () {}); } });
  }
  function pauseAll() { players.forEach(function (p) { p.pause(); }); }
  function refreshButton() { if (playButton) { playButton.textContent = isPlaying() ? "❚❚ Pause" : "▶ Play all"; } }

  players.forEach(function (p) {
    p.addEventListener("play", function () {
      players.forEach(function (q) {
        if (q !== p && q.paused) {
          q.currentTime = p.currentTime; var r = q.play(); if (r && r.catch) { r.catch(function () {}); }
        }
      });
      refreshButton();
    });
    p.addEventListener("pause", function () {
      players.forEach(function (q) { if (q !== p && !q.paused) { q.pause(); } });
      refreshButton();
    });
    p.addEventListener("seeked", function () {
      players.forEach(function (q) {
        if (q !== p && Math.abs(q.currentTime - p.currentTime) > 0.05) { q.currentTime = p.currentTime; }
      });
      show(p.currentTime);
    });
    p.addEventListener("timeupdate", function () { if (p === lead()) { show(p.currentTime); } });
    p.addEventListener("error", function () {
      var note = p.parentNode.querySelector(".error");
      note.hidden = false;
      note.textContent = "This file could not be played here: " + decodeURI(p.currentSrc || p.getAttribute("src")) +
        " (moved, deleted, or a format this browser does not play).";
    });
  });

  setInterval(function () {
    if (!isPlaying()) { return; }
    var l = lead(), t = l.currentTime;
    if (stopAt !== null && t >= stopAt) { stopAt = null; pauseAll(); return; }
    players.forEach(function (q) { if (q !== l && Math.abs(q.currentTime - t) > 0.06) { q.currentTime = t; } });
  }, 200);

  if (playButton) {
    playButton.addEventListener("click", function () { stopAt = null; if (isPlaying()) { pauseAll(); } else { playAll(); } });
  }
  Array.prototype.forEach.call(document.querySelectorAll("input.listen"), function (box) {
    box.addEventListener("change", function () { document.getElementById(box.getAttribute("data-player")).muted = !box.checked; });
  });
  Array.prototype.forEach.call(document.querySelectorAll("button.only"), function (button) {
    button.addEventListener("click", function () {
      Array.prototype.forEach.call(document.querySelectorAll("input.listen"), function (box) {
        box.checked = box.getAttribute("data-player") === button.getAttribute("data-player");
        document.getElementById(box.getAttribute("data-player")).muted = !box.checked;
      });
    });
  });

  svg.addEventListener("click", function (event) {
    var box = svg.getBoundingClientRect();
    var x = (event.clientX - box.left) / box.width * Number(svg.viewBox.baseVal.width);
    if (x < left || duration <= 0) { return; }
    stopAt = null;
    seekAll((x - left) / (right - left) * duration);
  });

  function playOverlap(row) {
    var start = Number(row.getAttribute("data-start")), end = Number(row.getAttribute("data-end"));
    Array.prototype.forEach.call(document.querySelectorAll("tr.overlap.current"), function (r) { r.classList.remove("current"); });
    row.classList.add("current");
    seekAll(start);
    stopAt = end + 0.5;
    playAll();
  }
  var body = document.getElementById("overlap-rows");
  if (body) {
    body.addEventListener("click", function (event) {
      var row = event.target.closest("tr.overlap"); if (row) { playOverlap(row); }
    });
    body.addEventListener("keydown", function (event) {
      var row = event.target.closest("tr.overlap");
      if (row && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); playOverlap(row); }
    });
    Array.prototype.forEach.call(document.querySelectorAll(".sort button"), function (button) {
      button.addEventListener("click", function () {
        var key = button.getAttribute("data-key");
        var rows = Array.prototype.slice.call(body.querySelectorAll("tr.overlap"));
        rows.sort(function (a, b) {
          return Number(a.getAttribute(key)) - Number(b.getAttribute(key)) ||
                 Number(a.getAttribute("data-start")) - Number(b.getAttribute("data-start"));
        });
        rows.forEach(function (r) { body.appendChild(r); });
        Array.prototype.forEach.call(document.querySelectorAll(".sort button"), function (b) { b.classList.toggle("on", b === button); });
      });
    });
  }
  show(0);
  refreshButton();
})();
"""


def page_html(data: EditorInput, *, files: dict[str, str] | None = None) -> str:
    """The whole page. ``files`` maps a role (``timeline``, ``labels``, ``reaper``) to a file name beside it."""
    files = files or {}
    warnings = list(data.warnings) + fallback_sentences(data.fallbacks)
    if warnings:
        notes = ('<div class="box warn"><b>Read before you import:</b><ul>'
                 + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul></div>")
    else:
        notes = '<div class="box ok">No warnings: every stage ran as configured and no fallback was needed.</div>'
    speakers = ", ".join(_e(s) for s in data.speakers) or "none"
    source = _e(data.original_path) if data.original_path else "audio given in memory (no original file)"
    models = "".join(f"<dt>{_e(stage)}</dt><dd>{_e(text)}</dd>" for stage, text in model_sentences(data.models))
    details = _e(json.dumps(data.models, indent=2, ensure_ascii=False, default=str))
    overlap_table = ""
    if data.overlaps:
        overlap_table = (
            '<p class="sort">Order: <button type="button" class="on" data-key="data-n">in time</button> '
            '<button type="button" data-key="data-doubt">most doubtful first</button> '
            '<span class="muted">Click a row to hear that moment in every track.</span></p>'
            f"{_handling_key(data)}"
            '<table><thead><tr><th>#</th><th>when</th><th>length</th><th>speakers</th><th>handling</th>'
            '<th>confidence</th><th>windows</th></tr></thead>'
            f'<tbody id="overlap-rows">{_overlap_rows(data)}</tbody></table>')
    file_items = []
    for speaker in data.speakers:
        if speaker in data.track_files:
            name = data.track_files[speaker]
            file_items.append(f'<li><a href="{_e(_relative_url(name))}">{_e(name)}</a>: {_e(speaker)}\'s track</li>')
    if data.background_file:
        file_items.append(f'<li><a href="{_e(_relative_url(data.background_file))}">{_e(data.background_file)}</a>: '
                          "the background</li>")
    explain = {"reaper": "REAPER project: open it, the tracks are in place (the original is muted on top)",
               "labels": "Audacity labels: File ▸ Import ▸ Labels…",
               "timeline": "the timeline as a picture"}
    for role, text in explain.items():
        if role in files:
            file_items.append(f'<li><a href="{_e(_relative_url(files[role]))}">{_e(files[role])}</a>: {_e(text)}</li>')
    svg = timeline_svg(data).replace('<svg id="timeline"',
                                     f'<svg id="timeline" data-left="{_SVG_LEFT}" data-right="{_SVG_RIGHT}"', 1)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(data.stem)}: podsep review</title><style>{_CSS}{_row_styles(data)}</style></head>"
        f'<body data-duration="{float(data.duration)!r}">'
        f"<h1>{_e(data.stem)}</h1>"
        f'<p class="sub">{hms(data.duration)} · {data.sample_rate} Hz · {_plural(len(data.speakers), "speaker")}: '
        f"{speakers} · from {source}</p>"
        f"{notes}<p>{_e(overlap_summary(data))}</p>"
        f"<h2>Who speaks when</h2>{svg}{_legend(data)}"
        '<h2>Listen</h2><div class="transport"><button type="button" id="play">▶ Play all</button>'
        '<span id="clock">0:00:00.0</span><span class="muted">Click the timeline to jump; '
        "tick the tracks you want to hear.</span></div>"
        f"{_players(data)}"
        f"<h2>Overlapped speech</h2>{overlap_table or '<p class=muted>None.</p>'}"
        f"<h2>Models used</h2><dl>{models}</dl>"
        f"<details><summary>model details</summary><pre>{details}</pre></details>"
        f'<h2>Files in this folder</h2><ul class="files">{"".join(file_items)}</ul>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_page(path: Path, data: EditorInput, *, files: dict[str, str] | None = None) -> Path:
    """Write ``<stem>.html``."""
    path.write_text(page_html(data, files=files), encoding="utf-8", newline="\n")
    return path
