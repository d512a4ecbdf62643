"""podsep's evaluation lab: test material, metrics, baselines, fixture models, ``eval`` and ``bench``.

The lab imports the product; the product never imports the lab (a test checks
it). The CLI registers the lab's ``eval`` and ``bench`` commands explicitly.
"""
