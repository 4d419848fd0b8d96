"""Scaled PCA (``pca.scale`` / ``group.scale``) without densifying: cost and agreement.

    python benchmarks/scaled_pca.py [--spots 40000 100000] [--genes 5000] [--mean-counts 500]

For each size, a simulated square-grid section (``spaseg.datasets.simulate_tissue``, 6 layers,
the whole square; ``--mean-counts`` per spot, which sets how sparse it is) is log-normalised, then its 15 PCs are computed on unit-variance genes two ways, each in a
fresh process so that each peak is its own:

- ``dense``: ``sc.pp.scale(max_value=10)`` then ``sc.pp.pca`` (what ``normalize_pca`` did
  before: the centred spots x genes matrix is dense);
- ``sparse``: ``spaseg.pp.scaled_genes`` then ``sc.pp.pca`` (the PCA centres implicitly).

Prints wall seconds, peak RSS above what the process held before the step (MB) and the largest
difference of the PCs (scores and gene loadings, relative to the largest score / loading).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

N_COMPS = 15


def child(spots: int, genes: int, counts: float, method: str, out: Path) -> None:
    import scanpy as sc
    from _measure import measure

    import spaseg

    n_rows = int(round(np.sqrt(spots)))
    adata = spaseg.datasets.simulate_tissue(
        6, pattern="layers", grid="square", shape="full", n_rows=n_rows, n_genes=genes,
        mean_counts=counts, seed=0,
    )  # fmt: skip
    density = adata.X.nnz / (adata.n_obs * adata.n_vars)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    with measure() as m:
        start_mb = m.peak_mb
        if method == "dense":
            data = sc.pp.scale(adata, max_value=10, copy=True)
        else:
            data = spaseg.pp.scaled_genes(adata)
        sc.pp.pca(data, n_comps=N_COMPS, random_state=0)
    np.save(out / f"{method}_scores.npy", data.obsm["X_pca"])
    np.save(out / f"{method}_loadings.npy", data.varm["PCs"])
    info = dict(spots=adata.n_obs, genes=adata.n_vars, density=round(density, 3), method=method)
    info["seconds"] = m.seconds
    info["peak_mb"] = m.peak_mb - start_mb
    (out / f"{method}.json").write_text(json.dumps(info))


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference, column signs aligned (a PC's sign is arbitrary), over the largest
    absolute value."""
    signs = np.sign((a * b).sum(axis=0))
    return float(np.abs(a - b * signs).max() / np.abs(a).max())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spots", type=int, nargs="+", default=[40_000, 100_000])
    parser.add_argument("--genes", type=int, default=5000)
    parser.add_argument("--mean-counts", type=float, default=500.0)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spots, genes, counts, method, out = args.child
        child(int(spots), int(genes), float(counts), method, Path(out))
        return
    rows = []
    for spots in args.spots:
        with tempfile.TemporaryDirectory() as tmp:
            for method in ("dense", "sparse"):
                command = [sys.executable, __file__, "--child", str(spots), str(args.genes)]
                command.append(str(args.mean_counts))
                subprocess.run([*command, method, tmp], check=True)
                rows.append(json.loads((Path(tmp) / f"{method}.json").read_text()))
                print(rows[-1], flush=True)
            load = {m: [np.load(Path(tmp) / f"{m}_{k}.npy") for k in ("scores", "loadings")]
                    for m in ("dense", "sparse")}  # fmt: skip
            rows[-1]["scores_diff"] = relative_difference(load["dense"][0], load["sparse"][0])
            rows[-1]["loadings_diff"] = relative_difference(load["dense"][1], load["sparse"][1])
    table = pd.DataFrame(rows)
    table = table.round({"seconds": 1, "peak_mb": 0, "scores_diff": 6, "loadings_diff": 6})
    print(f"\n## Scaled PCA, {N_COMPS} PCs: dense (sc.pp.scale) against sparse (scaled_genes)\n")
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
