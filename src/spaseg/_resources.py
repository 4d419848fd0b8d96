"""Memory and run time a job needs, predicted from the section it reads.

The workflow's rules ask the scheduler for these (``workflow/rules/common.smk``) instead of one
flat number for every section: a 500-spot section should not wait for a 64 GB node, and a
whole Stereo-seq chip should not be killed at 16 GB. Each rule's peak memory grows with the
spots (the SpaSEG image, per-spot tables) and with the stored values of the count matrix
(sparse non-zeros, or every entry of a dense one). ``benchmarks/resources.py`` measures the
real jobs at several sizes and checks that every prediction is at least the measured peak and
at most twice it; the coefficients below come from its ``--fit`` (rounded up, plus a margin).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import h5py


@dataclass(frozen=True)
class Model:
    """Peak MB = base + per_kspot * spots / 1000 + per_mvalue * stored values / 1e6."""

    base: float
    per_kspot: float
    per_mvalue: float

    def mb(self, n_obs: int, n_values: int) -> float:
        return self.base + self.per_kspot * n_obs / 1e3 + self.per_mvalue * n_values / 1e6


#: Fitted peak memory of each per-section rule (benchmarks/resources.py --fit, 2026-12-04).
MEMORY = {
    "qc": Model(base=600, per_kspot=0.0, per_mvalue=60.0),
    "plot_qc": Model(base=600, per_kspot=2.0, per_mvalue=30.0),
    "normalize_pca": Model(base=700, per_kspot=0.0, per_mvalue=80.0),
    "spaseg_train": Model(base=1200, per_kspot=10.0, per_mvalue=30.0),
    "plot_domains": Model(base=600, per_kspot=2.0, per_mvalue=30.0),
    "svg": Model(base=700, per_kspot=2.0, per_mvalue=80.0),
}
#: What the scheduler is asked for: the prediction times this, so that a section unlike the
#: benchmark's (denser counts, other genes) still fits on the first attempt.
MARGIN = 1.3


def h5ad_size(path: str | os.PathLike) -> tuple[int, int, int]:
    """(spots, genes, stored values of ``X``) of an ``.h5ad``, read from its header only."""
    with h5py.File(path, "r") as f:
        n_obs = len(f["obs"][f["obs"].attrs["_index"]])
        n_vars = len(f["var"][f["var"].attrs["_index"]])
        X = f["X"]
        n_values = X["data"].shape[0] if isinstance(X, h5py.Group) else math.prod(X.shape)
    return n_obs, n_vars, n_values


def predict_mem_mb(rule: str, n_obs: int, n_values: int) -> int:
    """MB to ask for a job of ``rule`` on a section of ``n_obs`` spots and ``n_values`` stored
    count values, rounded up to 100 MB."""
    mb = MEMORY[rule].mb(n_obs, n_values) * MARGIN
    return int(math.ceil(mb / 100) * 100)
