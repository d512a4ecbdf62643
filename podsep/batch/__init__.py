"""``podsep batch``: a whole archive, on one machine or on a Ray cluster.

A back catalogue is hundreds or thousands of episodes, split once and split
again when the models improve. This package turns inputs (files, folders, lists)
into :class:`~podsep.batch.inputs.Episode` jobs, decides from durable
per-episode status records (:mod:`~podsep.batch.state`) which of them need
work, hands that work to an engine whose workers each keep one
:class:`~podsep.pipeline.Splitter` loaded (:mod:`~podsep.batch.local` processes
or :mod:`~podsep.batch.ray_engine` actors), and reports the outcome
(:mod:`~podsep.batch.report`). Both engines run the same per-episode code
(:mod:`~podsep.batch.worker`) and write the same records, so a batch started
on one can be finished on the other.
"""

from .inputs import Episode, discover
from .runner import BatchOptions, BatchSummary, run_batch

__all__ = ["BatchOptions", "BatchSummary", "Episode", "discover", "run_batch"]
