"""``pca.min_program_genes``: which narrow programmes the PCA step removes, and what it costs.

    python benchmarks/narrow_programs.py [--seeds 0 1 2 3] [--spots 50000 250000] [--min-genes 15]
        [--chip WORK [--chip-seeds 0 1]]

(``--seeds`` or ``--spots`` without values skips that part.)

The option is off in the shipped config; ``--min-genes`` (15) is the setting measured, with
the shipped QC and PCA settings otherwise.

1. The four DLPFC sections of ``../shared/data`` (skipped without it), one PCA seed per row:
   the programmes removed (participation ratio, share of the PCs' variance, leading genes),
   so one sees how stable the ICA's answer is over seeds.
2. Cost: ``spaseg.pp.normalize_pca`` on simulated square-grid sections of the given sizes
   (2 000 genes), ``--min-genes`` against ``min_program_genes: 0`` (the plain PCA): wall
   seconds and peak RSS, one fresh copy each.

3. ``--chip WORK``: accuracy on a simulated chip whose domains are marked by a few strong
   genes. ``WORK`` is the ``--work`` folder of ``benchmarks/stereoseq_scale.py`` (its QC output
   and truth are read; e.g. ``stereoseq_scale.py --spots 527k --leiden-tries -1 --probe 0
   --work /tmp/ss527``); the lower-left quarter of its largest chip gets the shipped PCA with
   ``--min-genes`` and with ``0``, then SpaSEG with the shipped settings for each of
   ``--chip-seeds``: ARI against the simulated domains, and how many PCs are left all zero.

Accuracy on DLPFC: ``benchmarks/dlpfc.py --pca min_program_genes=15``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
from _measure import measure  # noqa: E402

import spaseg  # noqa: E402

DLPFC = REPO.parent / "shared" / "data" / "dlpfc"


def shipped() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def dlpfc_programmes(config: dict, seeds: list[int], min_genes: float) -> pd.DataFrame:
    rows = []
    for name in ("151673", "151674", "151675", "151676"):
        raw = spaseg.io.read_h5ad(DLPFC / f"{name}.h5ad", sample=name)
        spaseg.pp.qc(raw, **spaseg.pp.qc_filters(config["qc"]), sample=name)
        for seed in seeds:
            adata = raw.copy()
            with measure() as m:
                spaseg.pp.normalize_pca(
                    adata,
                    **{**config["pca"], "min_program_genes": min_genes},
                    seed=seed,
                    sample=name,
                )
            found = adata.uns["pca"]["narrow_programs"]
            programmes = "; ".join(
                f"~{r:.0f} genes, {100 * s:.1f} %: {g}"
                for r, s, g in zip(
                    found["participation_ratio"],
                    found["variance_share"],
                    found["leading_genes"],
                    strict=True,
                )
            )
            rows.append(
                dict(
                    section=name,
                    seed=seed,
                    removed=len(found["leading_genes"]),
                    programmes=programmes,
                    s=round(m.seconds, 1),
                )
            )
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def cost(config: dict, sizes: list[int], min_genes: float) -> pd.DataFrame:
    rows = []
    for size in sizes:
        n_rows = int(np.sqrt(size / 0.75))  # the ellipse outline keeps about 3/4 of a square
        base = spaseg.datasets.simulate_tissue(
            6, pattern="layers", grid="square", n_rows=n_rows, n_genes=2000, seed=0
        )
        for setting in (min_genes, 0):
            adata = base.copy()
            with measure() as m:
                spaseg.pp.normalize_pca(adata, **{**config["pca"], "min_program_genes": setting})
            rows.append(
                dict(
                    spots=adata.n_obs,
                    min_program_genes=setting,
                    seconds=round(m.seconds, 1),
                    peak_mb=round(m.peak_mb),
                )
            )
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def chip_quarter(work: Path) -> tuple:
    """The lower-left quarter of the largest chip under ``work`` (after QC), its truth (-1:
    background) and the chip's number of domains (what its workflow run was told)."""
    import json

    import anndata as ad

    runs = sorted((work / "runs").glob("*/results/*/qc.h5ad"), key=lambda p: int(p.parts[-4]))
    if not runs:
        raise SystemExit(f"no {work}/runs/*/results/*/qc.h5ad: run stereoseq_scale.py first")
    qc = ad.read_h5ad(runs[-1])
    x, y = qc.obs["bin_x"].to_numpy(), qc.obs["bin_y"].to_numpy()
    qc = qc[(x < np.median(x)) & (y < np.median(y))].copy()
    data = next((work / "data").glob(f"{runs[-1].parts[-4]}_*"))
    truth = pd.read_csv(data / "truth.tsv.gz", sep="\t")
    bin_size = int(qc.uns["stereoseq"]["bin_size"])
    truth = truth[truth["bin_size"] == bin_size][["bin_x", "bin_y", "domain"]]
    where = qc.obs[["bin_x", "bin_y"]].reset_index(drop=True)
    domain = where.merge(truth, on=["bin_x", "bin_y"], how="left")["domain"]
    n_domains = json.loads((data / "meta.json").read_text())["n_domains"]
    return qc, domain.fillna(-1).astype(int).to_numpy(), n_domains


def chip_accuracy(config: dict, work: Path, seeds: list[int], min_genes: float) -> pd.DataFrame:
    import torch
    from sklearn.metrics import adjusted_rand_score

    torch.set_num_threads(1)
    qc, truth, n_domains = chip_quarter(work)
    found = np.unique(truth[truth >= 0]).size
    print(f"chip quarter: {qc.n_obs} bins, {found} of the chip's {n_domains} domains", flush=True)
    settings = {k: v for k, v in config["spaseg"].items() if k not in ("seed", "n_domains")}
    rows = []
    for setting in (min_genes, 0):
        pcs = qc.copy()
        spaseg.pp.normalize_pca(pcs, **{**config["pca"], "min_program_genes": setting}, seed=0)
        zero = int((pcs.obsm["X_pca"] == 0).all(axis=0).sum())
        for seed in seeds:
            adata = pcs.copy()
            with measure() as m:
                spaseg.tl.spaseg(adata, n_domains=n_domains, seed=seed, log_every=0, **settings)
            rows.append(
                dict(
                    bins=qc.n_obs,
                    min_program_genes=setting,
                    zero_pcs=zero,
                    seed=seed,
                    ari=round(adjusted_rand_score(truth, adata.obs["domain"]), 3),
                    spaseg_s=round(m.seconds),
                )
            )
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3])
    parser.add_argument("--spots", type=int, nargs="*", default=[50_000, 250_000])
    parser.add_argument("--min-genes", type=float, default=15.0)
    parser.add_argument("--chip", type=Path, help="a stereoseq_scale.py --work folder")
    parser.add_argument("--chip-seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = shipped()
    if args.seeds and DLPFC.exists():
        table = dlpfc_programmes(config, args.seeds, args.min_genes)
        print(f"\n## Programmes removed on DLPFC, min_program_genes {args.min_genes:g}\n")
        print(table.to_markdown(index=False))
    elif args.seeds:
        print(f"{DLPFC} not found: DLPFC part skipped")
    if args.spots:
        print("\n## Cost of normalize_pca, simulated sections, 2 000 genes\n")
        print(cost(config, args.spots, args.min_genes).to_markdown(index=False))
    if args.chip:
        table = chip_accuracy(config, args.chip, args.chip_seeds, args.min_genes)
        print("\n## A quarter of a simulated chip: SpaSEG ARI with and without the option\n")
        print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
