"""Moran's I must not depend on how a section's coordinates are given or ordered.

    python benchmarks/moran_geometry.py

Two checks, each printed as a table (max |difference| of Moran's I over genes, Spearman
correlation of the genes' I, edges of the spatial graph):

- DLPFC 151673 (``../shared/data/dlpfc``, skipped without it) read with its pixel coordinates
  and read from a copy without ``obsm["spatial"]`` (grid indices only);
- a simulated square-bin section against itself shuffled, rotated by 90 and by 30 degrees,
  with grid indices and with coordinates only (where the k-nearest-neighbour graph meets
  ties).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import spaseg  # noqa: E402
from spaseg.tl import morans_i, spatial_knn_graph  # noqa: E402

DLPFC = Path(__file__).resolve().parents[2] / "shared" / "data" / "dlpfc"


def compare(name: str, reference: ad.AnnData, other: ad.AnnData) -> dict:
    a, b = morans_i(reference)["morans_i"], morans_i(other)["morans_i"].loc[reference.var_names]
    ok = np.isfinite(a) & np.isfinite(b)
    return {
        "case": name,
        "genes": int(ok.sum()),
        "max_abs_diff": float(np.abs(a[ok] - b[ok]).max()),
        "spearman": float(spearmanr(a[ok], b[ok])[0]),
        "edges": f"{spatial_knn_graph(reference).nnz} / {spatial_knn_graph(other).nnz}",
    }


def normalise(adata: ad.AnnData) -> ad.AnnData:
    sc.pp.filter_genes(adata, min_cells=10)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    return adata


def dlpfc_rows() -> list[dict]:
    path = DLPFC / "151673.h5ad"
    if not path.exists():
        print(f"{path} not found: DLPFC check skipped")
        return []
    bare = ad.read_h5ad(path)
    del bare.obsm["spatial"]
    with tempfile.TemporaryDirectory() as folder:
        bare.write_h5ad(Path(folder) / "bare.h5ad")
        grid_only = spaseg.io.read_h5ad(Path(folder) / "bare.h5ad", sample="151673")
    pixels = spaseg.io.read_h5ad(path, sample="151673")
    return [compare("DLPFC 151673: pixels vs grid indices only", normalise(pixels),
                    normalise(grid_only))]  # fmt: skip


def square_rows() -> list[dict]:
    section = spaseg.datasets.simulate_tissue(4, grid="square", n_rows=60, n_genes=300, seed=0)
    section = normalise(section)
    rows = []
    for on_grid in (True, False):
        reference = section.copy()
        if not on_grid:
            reference.obs = reference.obs.drop(columns=["array_row", "array_col"])
        label = "square bins, " + ("grid indices" if on_grid else "coordinates only")
        for change in ("shuffled", "rotated 90", "rotated 30"):
            other = reference[np.random.default_rng(0).permutation(reference.n_obs)].copy()
            if change != "shuffled":
                angle = np.deg2rad(90 if change == "rotated 90" else 30)
                rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
                other.obsm["spatial"] = np.asarray(other.obsm["spatial"], float) @ rot.T
            rows.append(compare(f"{label}: {change}", reference, other))
    return rows


if __name__ == "__main__":
    table = pd.DataFrame(dlpfc_rows() + square_rows())
    print(table.to_markdown(index=False, floatfmt=".3g"))
