"""Everything that loads or runs a model.

``hub`` resolves Hub ids, local folders and the cache (shared by every loader);
``factory`` turns settings into a diarizer and a separator, with fallbacks
returned as values; ``diarizers``, ``chunked`` and ``separation`` wrap the
models; ``embedded/`` holds podsep's own offline models.
"""
