"""Group window embeddings into speakers, honouring a known or bounded speaker count.

Short-window embeddings are noisy: a plain agglomerative cut yields the real
speakers plus a tail of tiny clusters (laughs, coughs, crosstalk). So the count
is estimated from the clusters that hold a meaningful share of the speech, and
the final partition comes from spherical k-means seeded with the centroids of
the ``k`` largest agglomerative clusters, which folds the tail back into the
real speakers.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

#: Mean GE2E window embedding over 251 LibriSpeech speakers (scripts/fit_population_mean.py).
POPULATION_MEAN_PATH = Path(str(importlib.resources.files("podsep") / "data" / "ge2e_population_mean.npy"))


@dataclass(frozen=True)
class ClusteringSettings:
    """``threshold``: cosine distance at which the average-linkage tree is cut to
    count speakers. ``min_cluster_share``: a cluster below this fraction of the
    windows does not count as a speaker. ``max_auto_speakers`` caps the count
    when neither ``num_speakers`` nor ``max_speakers`` is given. ``center``:
    subtract the recording's mean embedding first; GE2E vectors share a large
    common component (all are non-negative), and removing it spreads
    same-speaker and cross-speaker similarities apart.

    Centring on the recording also spreads a *lone* speaker apart, so whether a
    recording holds one voice is decided first, against the population mean
    (:func:`looks_like_one_speaker`): ``single_threshold`` is the tree cut
    there, ``single_concentration`` the least mean resultant length of the
    windows. Both were chosen on the LibriSpeech test-other, AMI and generated
    recordings of ``scripts/score_speaker_count.py`` (which also checks them on
    unseen voices), putting "never merge a real conversation" before "catch
    every monologue"."""

    threshold: float = 1.1
    center: bool = True
    min_cluster_share: float = 0.06
    min_cluster_windows: int = 3
    max_auto_speakers: int = 8
    kmeans_iterations: int = 20
    single_threshold: float = 0.5
    single_concentration: float = 0.75


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def prepare(embeddings: np.ndarray, settings: ClusteringSettings) -> np.ndarray:
    """Unit vectors, centred on the recording mean when ``settings.center`` (and
    there are enough windows for a meaningful mean). Clustering and the later
    per-frame scoring both work in this space."""
    x = _normalise(np.asarray(embeddings, dtype=np.float64))
    if settings.center and len(x) > 2:
        x = _normalise(x - x.mean(axis=0, keepdims=True))
    return x


@functools.cache
def population_mean() -> np.ndarray:
    """The shipped mean speaker embedding (256 values)."""
    return np.load(POPULATION_MEAN_PATH, allow_pickle=False).astype(np.float64)


def looks_like_one_speaker(raw_embeddings: np.ndarray, settings: ClusteringSettings) -> bool:
    """Whether raw (uncentred) window embeddings are consistent with a single voice.

    Centred on the population mean, one speaker's windows share a direction:
    they form a single cluster at ``settings.single_threshold`` *and* their
    mean resultant length (the norm of the mean of unit vectors) reaches
    ``settings.single_concentration``. Several speakers fail at least one of
    the two; a host who says only a few words in a long monologue may not.
    """
    x = _normalise(np.asarray(raw_embeddings, dtype=np.float64))
    if len(x) == 0:
        return False
    x = _normalise(x - population_mean()[None, :])
    if float(np.linalg.norm(x.mean(axis=0))) < settings.single_concentration:
        return False
    return estimate_count(x, replace(settings, threshold=settings.single_threshold)) == 1


def estimate_count(embeddings: np.ndarray, settings: ClusteringSettings) -> int:
    """Number of speakers suggested by the agglomerative tree cut at ``settings.threshold``."""
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(embeddings)
    if n < 2:
        return n
    tree = linkage(embeddings, method="average", metric="cosine")
    labels = fcluster(tree, t=settings.threshold, criterion="distance")
    sizes = np.bincount(labels)
    minimum = max(settings.min_cluster_windows, settings.min_cluster_share * n)
    return max(1, int(np.sum(sizes >= minimum)))


def cluster(
    embeddings: np.ndarray,
    *,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    settings: ClusteringSettings | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Label each embedding with a speaker index.

    Returns ``(labels, centroids)``; labels are ``0..k-1`` numbered by first
    occurrence and centroids are unit vectors. ``num_speakers`` wins over the
    bounds; the bounds clip the estimate. ``k`` never exceeds the number of
    embeddings.
    """
    settings = settings or ClusteringSettings()
    x = _normalise(np.asarray(embeddings, dtype=np.float64))
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=int), np.zeros((0, x.shape[1] if x.ndim == 2 else 0))
    if num_speakers is not None:
        k = num_speakers
    else:
        k = estimate_count(x, settings)
        low = min_speakers if min_speakers is not None else 1
        high = max_speakers if max_speakers is not None else max(settings.max_auto_speakers, low)
        k = min(max(k, low), high)
    k = max(1, min(k, n))
    if k == 1:
        centroid = _normalise(x.mean(axis=0, keepdims=True))
        return np.zeros(n, dtype=int), centroid
    centroids = _seed_centroids(x, k)
    labels = np.zeros(n, dtype=int)
    for _ in range(settings.kmeans_iterations):
        new = np.argmax(x @ centroids.T, axis=1)
        # Keep every cluster alive: an emptied one takes the worst-fitting point
        # of a cluster that can spare it.
        for j in range(k):
            if not np.any(new == j):
                fit = np.max(x @ centroids.T, axis=1)
                fit[np.bincount(new, minlength=k)[new] <= 1] = np.inf
                new[int(np.argmin(fit))] = j
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        centroids = _normalise(np.stack([x[labels == j].mean(axis=0) for j in range(k)]))
    return _renumber(labels, centroids)


def _seed_centroids(x: np.ndarray, k: int) -> np.ndarray:
    """Centroids of the ``k`` largest clusters of a deep average-linkage cut.

    Cutting the tree into progressively more clusters until ``k`` of them are
    non-trivial avoids seeding k-means with an outlier.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(x, method="average", metric="cosine")
    n = len(x)
    best = None
    for count in range(k, min(n, 4 * k + 8) + 1):
        labels = fcluster(tree, t=count, criterion="maxclust")
        sizes = np.bincount(labels)
        order = np.argsort(sizes)[::-1][:k]
        best = order
        if np.all(sizes[order] >= 2) or count == n:
            break
    return _normalise(np.stack([x[labels == j].mean(axis=0) for j in best]))


def _renumber(labels: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order: list[int] = []
    for label in labels:
        if label not in order:
            order.append(int(label))
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping[int(label)] for label in labels]), centroids[order]
