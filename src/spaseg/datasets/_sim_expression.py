"""Gene programs and negative binomial counts for the tissue simulators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import ndtri

from .._errors import InputError
from ._sim_geometry import Grid, neighbour_graph

# The 13 protein-coding genes of the human mitochondrial genome.
MITO_SYMBOLS = (
    "MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
    "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB",
)  # fmt: skip
_MITO_SHARE = 0.05  # expected fraction of counts from mitochondrial genes
_BASE_LOG_SD = 2.0  # gene means span about five orders of magnitude, as in real data
_MARKER_QUANTILES = (0.4, 0.99)  # markers are drawn from moderately to highly expressed genes
_STATE_LFC_SD = 1.0  # log fold changes of the genes in a cell-state program
_BLOCK_ELEMENTS = 2**21  # spots x genes drawn at once: bounds memory, keeps arrays in cache


@dataclass(frozen=True)
class GenePrograms:
    """Expected expression of each domain.

    Attributes
    ----------
    profiles
        ``(n_domains + 1, n_genes)`` relative expression, each row sums to 1; row ``k`` is the
        program of domain ``k``, the last row that of the cells found in every domain.
    state_loadings
        ``(n_states, n_genes)`` log fold changes of the cell-state programs.
    var
        Gene table: ``gene_ids`` (index), ``gene_symbols``, ``marker_domain``, ``gene_role``,
        ``marker_fold_change``.
    """

    profiles: np.ndarray
    state_loadings: np.ndarray
    var: pd.DataFrame


def gene_roles(
    n_genes: int, n_domains: int, n_markers: int, n_mito: int, n_noise: int
) -> np.ndarray:
    """Role of each gene before shuffling: mito, marker, noise, then background genes."""
    counts = {"mito": n_mito, "marker": n_domains * n_markers, "noise": n_noise}
    n_background = n_genes - sum(counts.values())
    if n_background < 0:
        raise InputError(
            f"{n_genes} genes are too few for {counts['marker']} markers, {n_mito} "
            f"mitochondrial and {n_noise} noise genes",
            field="n_genes",
        )
    counts["background"] = n_background
    return np.repeat(list(counts), list(counts.values()))


def make_gene_programs(
    roles: np.ndarray,
    n_domains: int,
    n_markers: int,
    fold_change: tuple[float, float],
    domain_lfc_sd: float,
    n_states: int,
    rng: np.random.Generator,
) -> GenePrograms:
    """Draw a background profile and per-domain programs.

    Background: log-normal mean expression over genes. Each domain then gets its own
    ``n_markers`` marker genes (fold change drawn uniformly from ``fold_change``) and mild
    log-normal differences (``domain_lfc_sd``) on all background genes. Mitochondrial and noise
    genes are the same in every domain and take part in no cell-state program.
    """
    order = rng.permutation(roles.size)  # markers and mito genes scattered along the gene list
    roles = roles[order]
    # Stratified log-normal: the same spread of rare and abundant genes for every seed, and
    # no single gene swallowing most of the counts by chance.
    log_base = _BASE_LOG_SD * ndtri(_stratified_uniform(rng, 1, roles.size)[0])
    log_fc = np.zeros((n_domains + 1, roles.size))  # the last row, shared cells, stays at base
    background = roles == "background"
    log_fc[:-1, background] = rng.normal(0.0, domain_lfc_sd, (n_domains, background.sum()))

    # Row k holds the markers of domain k. Their expression levels (within the detectable part
    # of the range) and fold changes are stratified so that every domain gets the same spread
    # of weak and strong markers; otherwise a domain whose markers happen to be rare would be
    # far harder to find.
    markers = rng.permutation(np.flatnonzero(roles == "marker")).reshape(n_domains, n_markers)
    lo_q, hi_q = _MARKER_QUANTILES
    quantile = lo_q + (hi_q - lo_q) * _stratified_uniform(rng, n_domains, n_markers)
    log_base[markers] = _BASE_LOG_SD * ndtri(quantile)
    lo, hi = fold_change
    marker_fc = lo + (hi - lo) * _stratified_uniform(rng, n_domains, n_markers)
    log_fc[np.arange(n_domains)[:, None], markers] += np.log(marker_fc)

    profiles = np.exp(log_base + log_fc)
    mito = roles == "mito"
    profiles[:, ~mito] *= (1.0 - _MITO_SHARE * mito.any()) / profiles[:, ~mito].sum(
        1, keepdims=True
    )
    if mito.any():
        profiles[:, mito] *= _MITO_SHARE / profiles[:, mito].sum(1, keepdims=True)

    var = _gene_table(roles, markers, marker_fc)
    return GenePrograms(profiles, _state_loadings(roles, n_states, 2 * n_markers, rng), var)


def _state_loadings(
    roles: np.ndarray, n_states: int, n_member: int, rng: np.random.Generator
) -> np.ndarray:
    """Cell-state programs: each moves ``n_member`` random signal genes up or down.

    They add structured variation that is not spatial (cell cycle, stress, activation ...),
    which pulls clustering of the expression alone away from the domains. Their size follows
    the domain programs, not the gene count, so the balance holds for any ``n_genes``.
    """
    signal = np.flatnonzero(np.isin(roles, ["marker", "background"]))
    n_member = min(n_member, signal.size)
    loadings = np.zeros((n_states, roles.size))
    for state in range(n_states):  # a handful of programs, not a loop over genes
        members = rng.choice(signal, n_member, replace=False)
        loadings[state, members] = rng.normal(0.0, _STATE_LFC_SD, n_member)
    return loadings


def _stratified_uniform(rng: np.random.Generator, n_groups: int, n_per_group: int) -> np.ndarray:
    """Uniform draws in (0, 1), one per stratum ``[i/n, (i+1)/n)`` in every group, shuffled."""
    strata = rng.permuted(np.tile(np.arange(n_per_group), (n_groups, 1)), axis=1)
    return (strata + rng.uniform(size=strata.shape)) / n_per_group


def _gene_table(roles: np.ndarray, markers: np.ndarray, marker_fc: np.ndarray) -> pd.DataFrame:
    """Gene annotation; ``markers[k]`` are the marker genes of domain ``k``."""
    n_genes = roles.size
    mito = roles == "mito"
    width = max(4, len(str(n_genes)))
    symbols = pd.Series(np.arange(1, n_genes + 1).astype(str)).str.zfill(width).radd("Gene")
    symbols[mito] = MITO_SYMBOLS[: mito.sum()]
    names = [f"D{k}" for k in range(markers.shape[0])]
    codes = np.zeros(n_genes, dtype=int)
    codes[markers] = np.arange(1, len(names) + 1)[:, None]
    # categorical, as writing to h5ad would make it anyway
    domain = pd.Categorical.from_codes(codes, categories=["", *names])
    fc = np.ones(n_genes)
    fc[markers] = marker_fc
    ids = pd.Index(np.arange(1, n_genes + 1).astype(str), name="gene_ids").str.zfill(11)
    return pd.DataFrame(
        {
            "gene_symbols": symbols.to_numpy(),
            "marker_domain": domain,
            "gene_role": pd.Categorical(
                roles, categories=["marker", "background", "mito", "noise"]
            ),
            "marker_fold_change": fc,
        },
        index="ENSSIM" + ids,
    )


def mixing_weights(grid: Grid, labels: np.ndarray, n_domains: int, mixing: float) -> np.ndarray:
    """Per-spot domain weights: one-hot, with a share ``mixing`` taken from the neighbours.

    Spots at a boundary capture some transcripts of the neighbouring domain (spots are large
    and tissue is not cut along domain lines); inside a domain the weights stay one-hot.
    """
    onehot = np.eye(n_domains)[labels]
    adjacency = neighbour_graph(grid)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    neighbourhood = np.where(
        degree[:, None] > 0, adjacency @ onehot / np.maximum(degree, 1)[:, None], onehot
    )
    return (1.0 - mixing) * onehot + mixing * neighbourhood


def domain_purity(
    n_spots: int, mean: float, rng: np.random.Generator, concentration: float = 4.0
) -> np.ndarray:
    """Share of each spot's transcripts from domain-specific cells (Beta with the given mean).

    The rest comes from cells found in every domain (glia, vessels, immune cells), so spots
    poor in domain-specific cells are ambiguous on their own but not among their neighbours.
    """
    if mean >= 1.0:
        return np.ones(n_spots)
    return rng.beta(concentration * mean, concentration * (1.0 - mean), n_spots)


def library_sizes(n_spots: int, mean: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Log-normal expected total counts per spot with the given mean (sd on the log scale)."""
    return mean * np.exp(rng.normal(-0.5 * sd**2, sd, n_spots))


@dataclass(frozen=True)
class SpotModel:
    """Everything that sets the expected counts of the spots of one section.

    Attributes
    ----------
    programs
        Gene programs (possibly with a section's batch effect applied).
    weights
        ``(n_spots, n_domains + 1)`` share of each program in each spot; rows sum to 1.
    state_activity
        ``(n_spots, n_states)`` activity of the cell-state programs (log scale).
    size
        ``(n_spots,)`` expected total counts.
    """

    programs: GenePrograms
    weights: np.ndarray
    state_activity: np.ndarray
    size: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.weights.shape[0], self.programs.profiles.shape[1]

    def expected_counts(self, rows: slice) -> np.ndarray:
        """Dense float32 means for a block of spots (float32 halves time and memory)."""
        f32 = np.float32
        relative = self.weights[rows].astype(f32) @ self.programs.profiles.astype(f32)
        if self.state_activity.shape[1]:
            states = self.state_activity[rows].astype(f32) @ self.programs.state_loadings.astype(
                f32
            )
            relative *= np.exp(states)
        relative *= (self.size[rows] / relative.sum(axis=1, dtype=np.float64)).astype(f32)[:, None]
        return relative


def negative_binomial_counts(
    model: SpotModel, dispersion: float, rng: np.random.Generator
) -> sparse.csr_matrix:
    """Draw counts ``NB(mean, dispersion)`` around the model's means, as float32 CSR.

    The negative binomial is drawn as a gamma-Poisson mixture (variance
    ``mean + dispersion * mean**2``), block by block of spots, so that no dense spots x genes
    array exists in full.
    """
    n_spots, n_genes = model.shape
    shape = 1.0 / dispersion
    block = max(1, _BLOCK_ELEMENTS // n_genes)
    data, indices, row_nnz = [], [], []
    for start in range(0, n_spots, block):
        mean = model.expected_counts(slice(start, start + block))
        rate = rng.standard_gamma(shape, size=mean.shape, dtype=np.float32)
        rate *= mean / np.float32(shape)
        counts = rng.poisson(rate)
        flat = np.flatnonzero(counts)
        data.append(counts.ravel()[flat].astype(np.float32))
        indices.append((flat % n_genes).astype(np.int32))
        row_nnz.append(np.count_nonzero(counts, axis=1))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(row_nnz))])
    return sparse.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), indptr), shape=(n_spots, n_genes)
    )
