"""Sweep one SpaSEG setting on DLPFC 151673/151674: single runs and their consensus.

    python benchmarks/dlpfc_sweep.py --spaseg lr=0.005 [--pca scale=True] [--runs 4]

For each labelled section: ``--runs`` single runs (``n_runs=1``, seeds 1000, 1001, ...), their
ARI against ``layer_guess``, and two consensus labelings of those runs: co-association (what
``spaseg.tl.spaseg`` uses for ``n_runs > 1``) and KMeans on the runs' concatenated,
standardised logits. Prints one markdown row per section.
"""

from __future__ import annotations

import argparse
import ast
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dlpfc import DATA, LABELLED, score  # noqa: E402

import spaseg  # noqa: E402


def kwargs(text: str) -> dict:
    return {k: ast.literal_eval(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)}


def concat_logits_kmeans(logits: list[np.ndarray], n: int) -> np.ndarray:
    z = np.hstack([(x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1) for x in logits])
    return KMeans(n, n_init=10, random_state=0).fit_predict(z)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaseg", default="", help="spaseg.tl.spaseg kwargs, k=v,...")
    parser.add_argument("--pca", default="", help="spaseg.pp.normalize_pca kwargs, k=v,...")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    print("| setting | section | single mean [min-max] | co-association | concat logits | s/run |")
    print("|---|---|---|---|---|---|")
    for name in LABELLED:
        adata = spaseg.pp.qc(spaseg.io.read_h5ad(DATA / f"{name}.h5ad", sample=name), copy=True)
        spaseg.pp.normalize_pca(adata, n_comps=15, **kwargs(args.pca))
        truth = adata.obs["layer_guess"].astype(str)
        runs, logits, aris = [], [], []
        start = time.process_time()
        for seed in range(1000, 1000 + args.runs):
            spaseg.tl.spaseg(
                adata, n_domains=7, seed=seed, n_runs=1, log_every=0, **kwargs(args.spaseg)
            )
            runs.append(adata.obs["domain"].cat.codes.to_numpy())
            logits.append(adata.obsm["spaseg_embedding"])
            aris.append(score(truth, runs[-1]))
        cost = (time.process_time() - start) / args.runs
        coassoc = score(truth, spaseg.tl.consensus_labels(np.stack(runs), 7))
        concat = score(truth, concat_logits_kmeans(logits, 7))
        setting = " ".join(filter(None, [args.spaseg, args.pca])) or "defaults"
        print(
            f"| {setting} | {name} | {np.mean(aris):.3f} [{min(aris):.3f}-{max(aris):.3f}] "
            f"| {coassoc:.3f} | {concat:.3f} | {cost:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
