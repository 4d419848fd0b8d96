"""Neighbour-majority refinement of domain labels: a spot surrounded by another domain joins it."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def majority_refine(
    xy: np.ndarray,
    labels: np.ndarray,
    *,
    sections: list[np.ndarray] | None = None,
    n_neighbors: int = 18,
    rounds: int = 1,
) -> np.ndarray:
    """Relabel each spot whose ``n_neighbors`` nearest spots hold a strict majority (more than
    half) of one other label; repeat ``rounds`` times (each round sees the last one's labels).

    A spot's label changes only when most of its neighbourhood disagrees with it, so domain
    boundaries stay where the model put them and only isolated specks and ragged edges move.
    ``sections``: index arrays of spots that may neighbour each other (serial sections).
    """
    labels = np.asarray(labels).copy()
    n = len(labels)
    sections = sections or [np.arange(n)]
    neighbours = np.full((n, n_neighbors), -1, dtype=np.int64)
    for idx in sections:
        k = min(n_neighbors, len(idx) - 1)
        if k < 1:
            continue
        _, near = cKDTree(xy[idx]).query(xy[idx], k=k + 1)
        neighbours[idx, :k] = idx[near[:, 1:]]
    valid = neighbours >= 0
    n_valid = valid.sum(axis=1)
    codes, labels = np.unique(labels, return_inverse=True)
    rows = np.repeat(np.arange(n), n_neighbors)[valid.ravel()]
    for _ in range(rounds):
        counts = np.zeros((n, len(codes)), dtype=np.int32)
        np.add.at(counts, (rows, labels[neighbours[valid]]), 1)
        top = counts.argmax(axis=1)
        change = (top != labels) & (2 * counts.max(axis=1) > n_valid)
        if not change.any():
            break
        labels = np.where(change, top, labels)
    return codes[labels]
