"""podsep: split a podcast or interview into one clean, full-length track per speaker.

The public API is small: :func:`split` and its :class:`SplitResult`, the
:class:`Diarization` type, and the :class:`Separator` protocol for plugging in
other separation models.
"""

__version__ = "0.1.0"

from .diarization import Diarization, Turn  # noqa: E402
from .errors import PodsepError  # noqa: E402
from .pipeline import SplitResult, split  # noqa: E402
from .separation import Separator  # noqa: E402

__all__ = ["Diarization", "PodsepError", "Separator", "SplitResult", "Turn", "__version__", "split"]
