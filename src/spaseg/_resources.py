"""Memory and run time a job needs, predicted from the section it reads.

The workflow's rules ask the scheduler for these (``workflow/rules/resources.smk``) instead of one
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
    """Peak MB (or seconds) = base + per_kspot * spots / 1000 + per_mvalue * values / 1e6
    + per_sqrt_mvalue * sqrt(values / 1e6) (for steps that grow more slowly than the data)
    + per_kgene * genes / 1000 (for steps whose parameters grow with the genes)."""

    base: float
    per_kspot: float
    per_mvalue: float
    per_sqrt_mvalue: float = 0.0
    per_kgene: float = 0.0

    def __call__(self, n_obs: int, n_values: int, n_vars: int = 0) -> float:
        mvalues = n_values / 1e6
        return (
            self.base
            + self.per_kspot * n_obs / 1e3
            + self.per_mvalue * mvalues
            + self.per_sqrt_mvalue * math.sqrt(mvalues)
            + self.per_kgene * n_vars / 1e3
        )


#: Fitted peak memory (MB) of each per-section rule: `benchmarks/resources.py --fit`
#: (2026-12-04; eight sections of 1 k-100 k spots, 0.5-32 M stored values; svg refitted on five
#: of 1 k-40 k spots, 0.3-12 M values, with a square-root term), rounded up.
MEMORY = {
    "load": Model(base=330, per_kspot=0.0, per_mvalue=16.2),
    "qc": Model(base=365, per_kspot=0.43, per_mvalue=39.1),
    "plot_qc": Model(base=285, per_kspot=0.27, per_mvalue=7.9),
    "normalize_pca": Model(base=371, per_kspot=0.29, per_mvalue=26.6),
    "spaseg_train": Model(base=573, per_kspot=3.43, per_mvalue=15.0),
    "plot_domains": Model(base=282, per_kspot=0.44, per_mvalue=15.5),
    # Grows more slowly than linearly with the values (a line over-asked 2.2 x on 1 k spots).
    "svg": Model(base=250, per_kspot=0.0, per_mvalue=32.5, per_sqrt_mvalue=175),
    # Spots x pairs of score tables: sized for every pair of the shipped resource expressed
    # (measured with 3 800-4 200 consensus pairs); fewer expressed pairs need less.
    "cci": Model(base=550, per_kspot=150.0, per_mvalue=0.0),
    # The reference (cells, not spots; signatures read from the guide, posterior: quantiles):
    # fitted on 960-12 000 cells x 1 000-3 000 genes; posterior samples would cost far more.
    "c2l_reference": Model(base=790, per_kspot=44.0, per_mvalue=0.0, per_kgene=119.0),
    # Plus dense spots x genes copies (DENSE_COPIES): cell2location holds the whole section.
    "c2l_map": Model(base=770, per_kspot=0.0, per_mvalue=0.0),
}
#: What the scheduler is asked for: the prediction times this, so that a section unlike the
#: benchmark's (denser counts, other genes) still fits on the first attempt.
MARGIN = 1.3
#: Fitted run time in seconds on one CPU core of the benchmark machine (same fit), same form.
SECONDS = {
    "load": Model(base=3.1, per_kspot=0.006, per_mvalue=0.0),
    "qc": Model(base=3.4, per_kspot=0.026, per_mvalue=0.0),
    "plot_qc": Model(base=3.0, per_kspot=0.0, per_mvalue=0.03),
    "normalize_pca": Model(base=4.0, per_kspot=0.0, per_mvalue=0.3),
    "spaseg_train": Model(base=26, per_kspot=1.0, per_mvalue=0.0),
    "plot_domains": Model(base=2.5, per_kspot=0.009, per_mvalue=0.0),
    "svg": Model(base=4.6, per_kspot=0.034, per_mvalue=0.36),
    "cci": Model(base=20, per_kspot=4.0, per_mvalue=0.0),
    # 250 epochs of minibatches of 2 500 cells (then the guide's medians: seconds).
    "c2l_reference": Model(base=60, per_kspot=50.0, per_mvalue=0.0),
}
#: Slack of the run-time limit over the prediction: slower nodes, busy file systems.
RUNTIME_SLACK = 4
#: The per-section step whose model each joint rule (all its sections at once) uses.
JOINT = {
    "joint_pca": "normalize_pca",
    "joint_spaseg": "spaseg_train",
    "svg_group": "svg",
    "plot_group": "plot_domains",
    # Every section's features and their fit hold about what normalisation does (measured
    # 576 MB for 2 x 10 k spots: the normalize_pca model asks 800, the svg one 1 200).
    "align": "normalize_pca",
}
#: Joint rules whose memory is not their per-section step's: joint_pca holds every section, their
#: concatenation and its scaled copy (sparse, ``spaseg.pp.scaled_genes``), a line through three
#: groups of 18 k-50 k spots, 8-26 M values (``benchmarks/resources.py --group``, 2026-12-05),
#: plus Harmony's working memory (``group.harmony``): 1.3 MB per 1 000 spots, 15 k-1 M spots
#: (``benchmarks/harmony_cost.py``, 2026-12-06).
JOINT_MEMORY = {"joint_pca": Model(base=430, per_kspot=1.3, per_mvalue=68.0)}
#: Rules that also hold dense spots x genes float64 copies, and how many: c2l_map's tensors and
#: their gradients, 0.91 GB at 1 k x 1 k and 1.35 GB at 4 k x 1 k (``benchmarks/resources.py
#: --c2l``).
DENSE_COPIES = {"c2l_map": 19}


def h5ad_size(path: str | os.PathLike) -> tuple[int, int, int]:
    """(spots, genes, stored values of ``X``) of an ``.h5ad``, read from its header only."""
    with h5py.File(path, "r") as f:
        n_obs = len(f["obs"][f["obs"].attrs["_index"]])
        n_vars = len(f["var"][f["var"].attrs["_index"]])
        X = f["X"]
        n_values = X["data"].shape[0] if isinstance(X, h5py.Group) else math.prod(X.shape)
    return n_obs, n_vars, n_values


def predict_mem_mb(rule: str, n_obs: int, n_values: int, n_vars: int = 0) -> int:
    """MB to ask for a job of ``rule`` on ``n_obs`` spots with ``n_values`` stored count values
    (and ``n_vars`` genes, for the rules that densify), rounded up to 100 MB. The joint rules
    use the model of the same per-section step, unless ``JOINT_MEMORY`` has their own."""
    model = JOINT_MEMORY.get(rule) or MEMORY[JOINT.get(rule, rule)]
    dense = DENSE_COPIES.get(rule, 0) * n_obs * n_vars * 8 / 2**20
    mb = (model(n_obs, n_values, n_vars) + dense) * MARGIN
    return int(math.ceil(mb / 100) * 100)


def predict_runtime_min(rule: str, n_obs: int, n_values: int) -> int:
    """Minutes to ask for (a limit: generous), at least 10."""
    seconds = SECONDS[JOINT.get(rule, rule)](n_obs, n_values) * RUNTIME_SLACK
    return max(10, int(math.ceil(seconds / 60)))


def predict_bin_mem_mb(size_mb: float) -> int:
    """Rule bin (Stereo-seq): the bins x genes matrix plus one block of GEM/GEF records at a
    time, a few times the input file (MB on disk, gzipped or not). Line through two measured
    GEMs (51 MB: 0.85 GB, 300 MB: 1.70 GB; ``benchmarks/resources.py --gem``) with the margin."""
    return int(math.ceil((700 + 3.5 * size_mb) * MARGIN / 100) * 100)


def predict_bin_runtime_min(size_mb: float) -> int:
    """Minutes for rule bin: about 2 min per 100 MB of gzipped GEM on one core, doubled."""
    return 10 + int(size_mb) // 25


def predict_multiqc_mem_mb(n_sections: int) -> int:
    """Rule multiqc (one job per batch): MultiQC's own imports, then a little per section
    (``benchmarks/resources.py --multiqc``: 353 MB at 48 sections, 426 MB at 5 000), with the
    margin, rounded up to 100 MB."""
    return int(math.ceil((400 + 0.02 * n_sections) * MARGIN / 100) * 100)


def predict_multiqc_runtime_min(n_sections: int) -> int:
    """Minutes for rule multiqc: seconds for MultiQC (3 s at 5 000 sections), plus reading
    each section's metrics; a generous limit."""
    return 10 + n_sections // 200


#: cell2location's spatial model on a CPU core: seconds per full-batch epoch = a fixed part
#: plus a part per million spots x genes entries (``benchmarks/c2l_cpu.py``: 0.06 s for
#: 1 000 x 500, 0.9 s for 4 000 x 3 000 on one thread).
C2L_EPOCH_SECONDS = Model(base=0.02, per_kspot=0.0, per_mvalue=0.08)


def predict_c2l_map_runtime_min(n_obs: int, n_vars: int, max_epochs: int) -> int:
    """Minutes for rule c2l_map: ``max_epochs`` epochs on one CPU core, plus half (a limit:
    the plateau stop usually ends sooner, and a GPU runs an epoch many times faster)."""
    seconds = C2L_EPOCH_SECONDS(n_obs, n_obs * n_vars) * max_epochs * 1.5
    return max(10, int(math.ceil(seconds / 60)))
