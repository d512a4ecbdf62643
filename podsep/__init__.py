"""podsep: split a podcast or interview into one clean, full-length track per speaker.

The public API is small: :class:`Splitter` (keeps its models, splits many
recordings), :func:`split` (one recording), :class:`SplitResult`, the
:class:`Diarization`/:class:`Turn` types, the :class:`Separator` and
:class:`Diarizer` protocols for plugging in other models, and the
:class:`Hook`/:class:`Hooks` progress contract.
"""

__version__ = "0.1.0"

from .diarization import Diarization, Turn  # noqa: E402
from .errors import PodsepError  # noqa: E402
from .hooks import Hook, Hooks  # noqa: E402
from .models.diarizers import Diarizer  # noqa: E402
from .models.separation import Separator  # noqa: E402
from .pipeline import Splitter, split  # noqa: E402
from .result import SplitResult  # noqa: E402

__all__ = ["Diarization", "Diarizer", "Hook", "Hooks", "PodsepError", "Separator", "SplitResult", "Splitter",
           "Turn", "__version__", "split"]
