"""Files an editor opens directly, and a page to look and listen before importing.

:func:`write_editor_files` adds four files to a result folder, all made from
one :class:`EditorInput` (the turns, the overlaps and the manifest's facts):

* ``<stem>.timeline.png``: who speaks when, overlaps coloured by handling and confidence;
* ``<stem>.labels.txt``: Audacity labels, one per turn, plus one per overlap;
* ``<stem>.rpp``: a REAPER project with the original (muted, by absolute path) and every track at 0;
* ``<stem>.html``: a self-contained review page with players, timeline and the overlap list.

:func:`text_timeline` gives the same timeline as rich text for the terminal summary.
No audio is written or copied: the folder keeps only the tracks the pipeline wrote.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import OutputError
from .labels import write_labels
from .model import EditorInput
from .reaper import write_project
from .review_page import write_page
from .style import speaker_colours
from .text_timeline import text_timeline

__all__ = ["EditorInput", "editor_file_names", "speaker_colours", "text_timeline", "write_editor_files"]


def editor_file_names(stem: str) -> dict[str, str]:
    """The file name of each editor output, by role (the keys :func:`write_editor_files` returns)."""
    return {
        "timeline": f"{stem}.timeline.png",
        "labels": f"{stem}.labels.txt",
        "reaper": f"{stem}.rpp",
        "review": f"{stem}.html",
    }


def write_editor_files(folder: Path, data: EditorInput) -> dict[str, Path]:
    """Write the picture, labels, REAPER project and review page into ``folder``; return their paths.

    ``folder`` must exist (normally the pipeline's staging folder, so the files
    appear together with the tracks or not at all). Failures become one-line
    :class:`~podsep.errors.OutputError`s, never a traceback for the user.
    """
    folder = Path(folder)
    names = editor_file_names(data.stem)
    paths = {role: folder / name for role, name in names.items()}
    try:
        from .timeline import write_timeline

        write_timeline(paths["timeline"], data)
        write_labels(paths["labels"], data)
        write_project(paths["reaper"], data)
        write_page(paths["review"], data, files={k: v for k, v in names.items() if k != "review"})
    except ImportError as error:
        raise OutputError(f"cannot draw {names['timeline']}: {error.name or 'matplotlib'} is not installed "
                          "(pip install matplotlib)") from error
    except OSError as error:
        raise OutputError(f"cannot write editor files to {folder}: {error.strerror or error}") from error
    return paths
