"""Simulated cell-cell interaction data: a single-cell reference, spots that are known mixtures
of its cell types, and ligand-receptor pairs planted across domain boundaries.

The tissue is a grid cut into vertical bands (the domains). Each band favours a few cell types;
each spot holds a Poisson number of cells with Dirichlet fractions, and its counts are the sum
of its cells' expected expression (the reference's cell-type signatures) with gamma-Poisson
noise. Ligand and receptor genes are not in the reference; they are added on top:

- ``planted``: the ligand in the spots of one band that lie within ``boundary_width`` spots of
  the next band, the receptor in the mirror strip on the other side. Neighbouring spots across
  the boundary co-express the pair.
- ``separated`` (control): same levels and strip sizes, but the ligand strip is in the far half
  of one band and the receptor strip in the far half of the next, so no two neighbouring spots
  carry ligand and receptor.
- ``scattered`` (control): ligand and receptor each in as many random spots as a strip holds.

One planted pair has a two-subunit receptor complex (``..._...``): both subunits in the strip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._sim_geometry import default_n_cols, make_grid


@dataclass
class CCISimulation:
    """A simulated single-cell reference and spatial section, with the truth.

    Attributes
    ----------
    reference
        Single cells x genes, raw counts in ``X``, ``obs["cell_type"]`` (categorical).
    spatial
        Spots x genes, raw counts in ``X``; ``obs["domain"]`` (true bands, categorical),
        ``obs["array_row"]``, ``obs["array_col"]``, ``obs["n_cells"]``, ``obsm["spatial"]`` (µm),
        ``obsm["true_fractions"]`` (data frame, spots x cell types).
    pairs
        ``ligand``, ``receptor``, ``kind`` (``planted``, ``separated``, ``scattered``),
        ``sender`` and ``receiver`` (domains of the ligand and receptor strips; empty for
        ``scattered``). Usable directly as an L-R resource.
    """

    reference: AnnData
    spatial: AnnData
    pairs: pd.DataFrame


def simulate_cci(
    *,
    n_cell_types: int = 6,
    n_genes: int = 200,
    n_markers: int = 12,
    n_cells_per_type: int = 80,
    n_domains: int = 3,
    grid: str = "hex",
    n_rows: int = 24,
    n_cols: int | None = None,
    cells_per_spot: float = 8.0,
    n_planted: int = 8,
    n_controls: int = 16,
    boundary_width: int = 2,
    lr_counts: tuple[float, float] = (1.0, 4.0),
    seed: int = 0,
) -> CCISimulation:
    """Simulate a reference, a spatial section of its cell types, and planted L-R pairs.

    Parameters
    ----------
    n_cell_types
        Cell types of the reference (at least 2).
    n_genes
        Genes of the reference signatures (the L-R genes come on top).
    n_markers
        Genes up 3-8 fold in each cell type.
    n_cells_per_type
        Reference cells per type.
    n_domains
        Vertical bands of the section (at least 2); band ``d`` favours cell types ``d`` and
        ``d + 1`` (modulo ``n_cell_types``).
    grid, n_rows, n_cols
        The spot lattice (see :func:`spaseg.datasets.simulate_tissue`).
    cells_per_spot
        Mean cells per spot (Poisson, at least one).
    n_planted, n_controls
        Planted pairs and control pairs (split evenly between ``separated`` and ``scattered``).
    boundary_width
        Width in spots of the ligand and receptor strips.
    lr_counts
        Range of the mean counts of an L-R gene in the spots that express it.
    seed
        Random seed.
    """
    if n_cell_types < 2 or n_domains < 2:
        raise ValueError("need at least 2 cell types and 2 domains")
    if n_cell_types * n_markers > n_genes:
        raise ValueError(f"{n_cell_types} x {n_markers} markers need at least as many genes")
    rng = np.random.default_rng(seed)
    types = [f"type_{k}" for k in range(n_cell_types)]
    genes = [f"G{g:04d}" for g in range(n_genes)]
    signatures = _signatures(n_cell_types, n_genes, n_markers, rng)  # types x genes, per cell

    # Reference cells: signature x library size, gamma-Poisson noise.
    labels = np.repeat(np.arange(n_cell_types), n_cells_per_type)
    library = rng.lognormal(0.0, 0.3, len(labels))
    counts = _gamma_poisson(signatures[labels] * library[:, None], rng)
    reference = AnnData(
        X=sparse.csr_matrix(counts, dtype=np.float32),
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical(np.array(types)[labels], categories=types)},
            index=[f"cell_{i}" for i in range(len(labels))],
        ),
        var=pd.DataFrame(index=genes),
    )

    # Spots: bands of favoured cell types, Dirichlet fractions, Poisson cell numbers.
    n_cols = n_cols or default_n_cols(grid, n_rows)
    lattice = make_grid(grid, n_rows, n_cols, 100.0 if grid == "hex" else 50.0)
    u = lattice.unit_coords()[:, 0]
    band = np.minimum(((u + 1) / 2 * n_domains).astype(int), n_domains - 1)
    alpha = np.full((n_domains, n_cell_types), 0.3)
    for d in range(n_domains):
        alpha[d, [d % n_cell_types, (d + 1) % n_cell_types]] = 3.0
    fractions = np.vstack([rng.dirichlet(alpha[d]) for d in band])
    n_cells = rng.poisson(cells_per_spot - 1, len(band)) + 1
    expected = (fractions * n_cells[:, None]) @ signatures
    spot_counts = _gamma_poisson(expected, rng)

    pairs, lr_expected = _plant_pairs(
        lattice, band, n_domains, n_planted, n_controls, boundary_width, lr_counts, rng
    )
    lr_genes = list(lr_expected.columns)
    x = np.hstack([spot_counts, rng.poisson(lr_expected.to_numpy())])
    names = [f"spot_{i}" for i in range(len(band))]
    spatial = AnnData(
        X=sparse.csr_matrix(x, dtype=np.float32),
        obs=pd.DataFrame(
            {
                "domain": pd.Categorical([f"D{d}" for d in band]),
                "array_row": lattice.array_row,
                "array_col": lattice.array_col,
                "n_cells": n_cells,
            },
            index=names,
        ),
        var=pd.DataFrame(index=genes + lr_genes),
    )
    spatial.obsm["spatial"] = lattice.xy
    spatial.obsm["true_fractions"] = pd.DataFrame(fractions, index=names, columns=types)
    spatial.uns["sim_cci"] = {"seed": seed, "n_cell_types": n_cell_types, "grid": grid}
    return CCISimulation(reference, spatial, pairs)


def _signatures(n_types: int, n_genes: int, n_markers: int, rng) -> np.ndarray:
    """Mean counts per cell: log-normal gene levels, ``n_markers`` genes up in each type."""
    base = rng.lognormal(np.log(0.1), 1.5, n_genes)
    lfc = rng.normal(0.0, 0.2, (n_types, n_genes))
    markers = rng.permutation(n_genes)[: n_types * n_markers].reshape(n_types, n_markers)
    for k in range(n_types):
        lfc[k, markers[k]] += np.log(rng.uniform(3.0, 8.0, n_markers))
    return base * np.exp(lfc)


def _gamma_poisson(mean: np.ndarray, rng, dispersion: float = 0.1) -> np.ndarray:
    shape = 1.0 / dispersion
    return rng.poisson(rng.gamma(shape, mean / shape)).astype(np.float32)


def _plant_pairs(lattice, band, n_domains, n_planted, n_controls, width, lr_counts, rng):
    """Expected counts of the L-R genes per spot, and the pair table."""
    x = lattice.xy[:, 0]
    step = np.median(np.diff(np.unique(x)))  # one lattice column in µm
    spacing = lattice.spacing
    edges = [x[band == d].max() for d in range(n_domains - 1)]  # right edge of each band
    columns: dict[str, np.ndarray] = {}
    rows = []

    def express(name, spots, level):
        mean = np.full(len(band), 0.02)  # a trace of ambient expression everywhere
        mean[spots] = level
        columns[name] = mean

    n_separated = n_controls // 2
    kinds = ["planted"] * n_planted + ["separated"] * n_separated
    kinds += ["scattered"] * (n_controls - n_separated)
    for m, kind in enumerate(kinds):
        d = m % (n_domains - 1)  # boundary between band d and band d + 1
        level = rng.uniform(*lr_counts)
        near = width * spacing + step / 2
        if kind == "planted":
            left = (band == d) & (x > edges[d] - near)
            right = (band == d + 1) & (x <= edges[d] + near)
        else:
            left_x, right_x = x[band == d], x[band == d + 1]
            far_left = np.quantile(left_x, 0.5)
            far_right = np.quantile(right_x, 0.5)
            left = (band == d) & (x <= far_left) & (x > far_left - near)
            right = (band == d + 1) & (x > far_right) & (x <= far_right + near)
        if kind == "scattered":
            n_left, n_right = int(left.sum()), int(right.sum())
            left = np.isin(np.arange(len(band)), rng.choice(len(band), n_left, replace=False))
            right = np.isin(np.arange(len(band)), rng.choice(len(band), n_right, replace=False))
        ligand = f"LIG{m + 1}"
        if m == 0:  # one receptor complex of two subunits
            receptor = f"REC{m + 1}A_REC{m + 1}B"
            express(f"REC{m + 1}A", right, level)
            express(f"REC{m + 1}B", right, level)
        else:
            receptor = f"REC{m + 1}"
            express(receptor, right, level)
        express(ligand, left, level)
        sender, receiver = ("", "") if kind == "scattered" else (f"D{d}", f"D{d + 1}")
        rows.append((ligand, receptor, kind, sender, receiver))
    pairs = pd.DataFrame(rows, columns=["ligand", "receptor", "kind", "sender", "receiver"])
    return pairs, pd.DataFrame(columns)


def write_cci(folder, **kwargs) -> dict[str, Path]:
    """Write a :func:`simulate_cci` data set: ``reference.h5ad`` (single cells),
    ``section.h5ad`` (spots, counts, ``obsm["spatial"]``) and ``pairs.csv`` (the L-R resource,
    with ``kind``); return their paths by those names (``reference``, ``section``, ``pairs``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sim = simulate_cci(**kwargs)
    paths = {
        "reference": folder / "reference.h5ad",
        "section": folder / "section.h5ad",
        "pairs": folder / "pairs.csv",
    }
    sim.reference.write_h5ad(paths["reference"])
    sim.spatial.write_h5ad(paths["section"])
    sim.pairs.to_csv(paths["pairs"], index=False)
    return paths
