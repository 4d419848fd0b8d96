"""One size of the CCI speed benchmark, in a process of its own (``benchmarks/cci.py --parts
speed`` runs it once per size).

    python benchmarks/_lr_speed.py SECTION.h5ad N_PAIRS N_BACKGROUND

Reads the section as the workflow's ``cci`` rule does, scores ``N_PAIRS`` random gene pairs
with :func:`spaseg.tl.lr_scores` and prints one JSON row: wall and CPU seconds of the call and
the process's peak resident memory during it (the data read before it included). A process per
size: memory that generating the data (or an earlier size) left to the allocator would
otherwise count as the call's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402

from spaseg.tl import lr_scores  # noqa: E402


def lattice_data(n_spots: int, n_genes: int = 2000, seed: int = 0) -> ad.AnnData:
    """A square lattice of ``n_spots``, ``n_genes`` with ~10 % non-zero log-counts and 8
    horizontal band domains."""
    side = int(np.ceil(np.sqrt(n_spots)))
    row, col = np.divmod(np.arange(n_spots), side)
    rng = np.random.default_rng(seed)
    x = sparse.random(n_spots, n_genes, density=0.1, format="csr", rng=rng, dtype=np.float32)
    x.data = np.log1p(rng.poisson(2.0, x.nnz) + 1.0).astype(np.float32)
    obs = pd.DataFrame(
        {"array_row": row, "array_col": col, "domain": (row * 8 // side).astype(str)},
        index=[f"s{i}" for i in range(n_spots)],
    )
    adata = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"G{g}" for g in range(n_genes)]))
    adata.obsm["spatial"] = np.column_stack([col, row]).astype(float)
    return adata


def random_pairs(genes: np.ndarray, n_pairs: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"ligand": rng.choice(genes, n_pairs), "receptor": rng.choice(genes, n_pairs)}
    ).drop_duplicates()


def run_one(path: Path, n_pairs: int, n_background: int) -> dict:
    adata = ad.read_h5ad(path)
    resource = random_pairs(adata.var_names.to_numpy(), n_pairs)
    cpu = time.process_time()
    with measure() as m:
        lr = lr_scores(adata, resource, n_background=n_background)
    return {
        "spots": adata.n_obs,
        "pairs": lr.n_vars,
        "background strata": lr.uns["lr"]["n_background_strata"],
        "neighbours": f"{lr.uns['lr']['mean_neighbours']:.1f}",
        "non-zero scores": lr.X.nnz,
        "wall s": f"{m.seconds:.1f}",
        "CPU s": f"{time.process_time() - cpu:.1f}",
        "peak MB": round(m.peak_mb),
    }


if __name__ == "__main__":
    print(json.dumps(run_one(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
