"""Test helpers for podsep.

The Hugging Face Hub is not reachable in CI, so tests cannot download the real
diarization and separation models. ``podsep.testing.fixture_models`` writes
randomly initialised stand-ins in the exact on-disk formats of the real models,
so that tests exercise the same public loaders as production (only the path
differs). Nothing in the product itself imports this package.
"""
