"""Probe: SpaSEG consensus over input variants on DLPFC (a domains-issue candidate).

    python benchmarks/dlpfc_input_variants.py [--seeds 0 1 2 3 4] [--threads 1]

Per section and seed: 2 SpaSEG runs on the section's PCs and 2 on neighbour-augmented PCs
(PCA(15) of ``[sqrt(1 - lam) PC, sqrt(lam) mean PC of the 6 nearest spots]``, lam 0.2), then one
co-association consensus of the 4 runs. Compare with the shipped 4-run consensus on PCs alone
(``benchmarks/dlpfc.py``). Settings otherwise those of ``config/config.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.spatial import cKDTree
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dlpfc import DATA, LABELLED, shipped_config  # noqa: E402

import spaseg  # noqa: E402
from spaseg.tl import consensus_labels  # noqa: E402


def neighbour_augmented(adata, lam: float = 0.2, k: int = 6) -> np.ndarray:
    pcs = adata.obsm["X_pca"]
    xy = np.asarray(adata.obsm["spatial"], dtype=float)
    _, nearest = cKDTree(xy).query(xy, k=k + 1)
    mean = pcs[nearest[:, 1:]].mean(axis=1)
    joined = np.hstack([np.sqrt(1 - lam) * pcs, np.sqrt(lam) * mean])
    return PCA(pcs.shape[1], random_state=0).fit_transform(joined)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = shipped_config()
    settings = {k: v for k, v in config["spaseg"].items() if k not in ("seed", "n_domains")}
    settings.update(n_runs=2, log_every=0)
    rows = []
    for name in LABELLED:
        adata = spaseg.io.read_h5ad(DATA / f"{name}.h5ad", sample=name)
        spaseg.pp.qc(adata, **spaseg.pp.qc_filters(config["qc"]), sample=name)
        spaseg.pp.normalize_pca(adata, **config["pca"], seed=0, sample=name)
        adata.obsm["X_nbr"] = neighbour_augmented(adata)
        truth = adata.obs["layer_guess"].astype(str).to_numpy()
        ok = truth != "NA"
        for seed in args.seeds:
            runs = []
            for rep, offset in (("X_pca", 0), ("X_nbr", 1000)):
                out = spaseg.tl.spaseg(
                    adata, n_domains=7, seed=seed + offset, use_rep=rep, copy=True, **settings
                )
                runs.append(out.obsm["spaseg_runs"])
            labels = consensus_labels(np.hstack(runs).T, 7, seed=seed)
            rows.append(
                dict(section=name, seed=seed, ari=adjusted_rand_score(truth[ok], labels[ok]))
            )
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(df.groupby("section")["ari"].agg(["mean", "std", "min", "max"]).round(3).to_markdown())


if __name__ == "__main__":
    main()
