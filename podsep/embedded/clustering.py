"""Group window embeddings into speakers, honouring a known or bounded speaker count.

Short-window embeddings are noisy: a plain agglomerative cut yields the real
speakers plus a tail of tiny clusters (laughs, coughs, crosstalk). So the count
is estimated from the clusters that hold a meaningful share of the speech, and
the final partition comes from spherical k-means seeded with the centroids of
the ``k`` largest agglomerative clusters, which folds the tail back into the
real speakers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClusteringSettings:
    """``threshold``: cosine distance at which the average-linkage tree is cut to
    count speakers. ``min_cluster_share``: a cluster below this fraction of the
    windows does not count as a speaker. ``max_auto_speakers`` caps the count
    when neither ``num_speakers`` nor ``max_speakers`` is given. ``center``:
    subtract the recording's mean embedding first; GE2E vectors share a large
    common component (all are non-negative), and removing it spreads
    same-speaker and cross-speaker similarities apart."""

    threshold: float = 1.1
    center: bool = True
    min_cluster_share: float = 0.06
    min_cluster_windows: int = 3
    max_auto_speakers: int = 8
    kmeans_iterations: int = 20


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
