"""Spatially variable genes: accuracy on simulated sections, DLPFC layer markers, speed at scale.

    python benchmarks/svg.py [--parts accuracy dlpfc speed] [--quick] [--out benchmarks/out/svg]

accuracy
    Simulated sections (:func:`spaseg.datasets.simulate_tissue`, true domains) with three
    planted classes: domain markers (up in one domain), smooth gradient genes (a log-linear
    trend across the whole section, 4-9 fold from end to end, in a random direction) and
    non-spatial genes (no domain effect: ``domain_lfc_sd=0``). Calls at the default settings:
    a marker is found when it ``passes`` in its own domain (domain-specific SVG); a gene is
    globally spatial when ``morans_padj < 0.05``. Domain-specific: precision and recall over
    (gene, domain) pairs; global: over genes, markers and gradients being the spatial ones.
    A second set plants markers of fold change 2-12 to show what the filters can detect.
dlpfc
    151673 with ``obs["layer_guess"]`` as domains: rank (by Wilcoxon z) of known layer markers
    within their layer, which filters they fail, and SVGs passing per layer.
speed
    Synthetic Stereo-seq-like data (527 k spots on a square lattice, 2 000 genes, 8 domains,
    ~7% non-zero): ``spaseg.tl.svg`` (Wilcoxon + filters + kNN graph + Moran's I) and scanpy's
    ``rank_genes_groups(method="wilcoxon", tie_correct=True)`` on the same data; time and
    peak resident memory (the whole process, data included); growth with spots and genes.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402

import spaseg  # noqa: E402
from spaseg.pl._svg import svg as plot_svg  # noqa: E402
from spaseg.tl._moran import morans_i  # noqa: E402
from spaseg.tl._svg import svg  # noqa: E402

DLPFC = Path(__file__).resolve().parents[2] / "shared" / "data" / "dlpfc" / "151673.h5ad"

# Layer markers of human DLPFC. Maynard et al. 2021 (spatialLIBD), Fig. 2-3: AQP4 (L1),
# HPCAL1 (L2), FREM3 (L3), TRABD2A and PCP4 (L5), KRT17 (L6), MOBP (WM). Added: RELN and GFAP
# (L1: Cajal-Retzius cells, astrocytes of the glia limitans), CARTPT and CUX2 (upper layers),
# RORB (L4 granular neurons), MBP and PLP1 (myelin, WM).
LAYER_MARKERS = {
    "L1": ["AQP4", "RELN", "GFAP"],
    "L2": ["HPCAL1"],
    "L3": ["FREM3", "CARTPT", "CUX2"],
    "L4": ["RORB"],
    "L5": ["PCP4", "TRABD2A"],
    "L6": ["KRT17"],
    "WM": ["MOBP", "MBP", "PLP1"],
}


# --- accuracy --------------------------------------------------------------------------------


def add_gradient_genes(adata: ad.AnnData, n: int, rng: np.random.Generator) -> ad.AnnData:
    """Append ``n`` genes with a smooth log-linear trend across the section (raw counts).

    Mean of gene g at spot i: ``total_i * share_g * exp(a_g * s_g(i))``, ``s_g`` the position
    along a random direction scaled to [-1, 1], ``a_g`` uniform in [log 2, log 3] (4-9 fold
    end to end); ``share_g`` from the moderately to highly expressed genes; negative binomial
    counts with dispersion 0.2 (as the simulator).
    """
    xy = np.asarray(adata.obsm["spatial"], dtype=float)
    xy = xy - xy.mean(axis=0)
    total = np.asarray(adata.X.sum(axis=1)).ravel()
    share = np.asarray(adata.X.sum(axis=0)).ravel() / total.sum()
    background = share[(adata.var["gene_role"] == "background").to_numpy()]
    shares = rng.choice(background[background >= np.quantile(background, 0.4)], n)
    angle = rng.uniform(0, 2 * np.pi, n)
    position = xy @ np.vstack([np.cos(angle), np.sin(angle)])
    position /= np.abs(position).max(axis=0)
    effect = np.exp(rng.uniform(np.log(2), np.log(3), n) * position)
    mean = total[:, None] * shares * effect / effect.mean(axis=0)
    counts = rng.poisson(rng.gamma(5.0, mean / 5.0)).astype(np.float32)
    var = pd.DataFrame(
        {
            "gene_symbols": [f"Grad{k:03d}" for k in range(n)],
            "marker_domain": "",
            "gene_role": "gradient",
            "marker_fold_change": 1.0,
        },
        index=[f"ENSGRAD{k:06d}" for k in range(n)],
    )
    var_all = adata.var[["gene_symbols", "marker_domain", "marker_fold_change"]].assign(
        gene_role=adata.var["gene_role"].astype(str)
    )
    return ad.AnnData(
        sparse.hstack([adata.X, sparse.csr_matrix(counts)], format="csr"),
        obs=adata.obs,
        var=pd.concat([var_all, var]),
        obsm={"spatial": adata.obsm["spatial"]},
    )


def simulated_run(pattern: str, seed: int, fold_change: tuple[float, float]) -> tuple:
    adata = spaseg.datasets.simulate_tissue(
        6, pattern=pattern, n_rows=50, n_genes=500, n_markers=20, marker_fold_change=fold_change,
        mean_counts=3000.0, domain_lfc_sd=0.0, n_noise_genes=50, seed=seed,
    )  # fmt: skip
    adata = add_gradient_genes(adata, 60, np.random.default_rng(seed))
    spaseg.pp.normalize_pca(adata, n_comps=10)
    adata.obs["domain"] = adata.obs["domain_truth"]
    table = svg(adata, copy=True)
    role = adata.var["gene_role"].astype(str)
    role = role.where(role == "gradient", "non-spatial").mask(role == "marker", "domain marker")
    table["class"] = table["gene"].map(role)
    table["planted"] = table["gene"].map(adata.var["marker_domain"]) == table["domain"].astype(str)
    table["planted_fc"] = table["gene"].map(adata.var["marker_fold_change"])
    return adata, table


def score_run(t: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Calls per gene, and precision / recall of one run's table."""
    genes = t.drop_duplicates("gene").set_index("gene")
    genes["any_pass"] = t.groupby("gene").passes.any().loc[genes.index]
    genes["own_pass"] = t[t.planted].set_index("gene").passes.reindex(genes.index)
    genes["global"] = genes["morans_padj"] < 0.05
    hits = (t.passes & t.planted).sum()
    spatial = genes["class"] != "non-spatial"
    scores = dict(
        domain_precision=hits / max(t.passes.sum(), 1),
        domain_recall=hits / t.planted.sum(),
        global_precision=(genes["global"] & spatial).sum() / max(genes["global"].sum(), 1),
        global_recall=genes.loc[spatial, "global"].mean(),
    )
    return genes, scores


def accuracy(seeds: list[int], out: Path) -> None:
    per_class, runs, strength = [], [], []
    for pattern in ("layers", "blobs", "mixed"):
        for seed in seeds:
            adata, t = simulated_run(pattern, seed, (6.0, 12.0))
            genes, scores = score_run(t)
            per_class.append(genes)
            runs.append(dict(pattern=pattern, seed=seed, spots=adata.n_obs, **scores))
            _, weak = simulated_run(pattern, seed + 100, (2.0, 12.0))
            strength.append(weak[weak.planted])
    genes = pd.concat(per_class)
    table = genes.groupby("class").agg(
        genes=("any_pass", "size"),
        passes_own_domain=("own_pass", "mean"),
        passes_any_domain=("any_pass", "mean"),
        morans_fdr_below_005=("global", "mean"),
    )
    runs = pd.DataFrame(runs)
    print(f"\n## Simulated sections: {len(runs)} runs (3 patterns x {len(seeds)} seeds), "
          "6 domains, ~1 200 spots, 560 genes\n")  # fmt: skip
    print("Per planted class (fraction of the class' genes, all runs pooled; expected: markers "
          "pass in their domain and have Moran FDR < 0.05, gradients only the latter, "
          "non-spatial genes neither):\n")  # fmt: skip
    print(table.to_markdown(floatfmt=".3f").replace(" nan ", "   - "))
    print("\nPer run:\n")
    print(runs.round(3).to_markdown(index=False))
    print("\nMinimum over runs: " + ", ".join(
        f"{c} {runs[c].min():.3f}" for c in runs.columns if c.endswith(("precision", "recall"))
    ))  # fmt: skip
    weak = pd.concat(strength)
    bins = pd.cut(weak["planted_fc"], [2, 3, 4, 5, 6, 8, 12], include_lowest=True)
    print("\nDetection limit: markers planted with fold change 2-12 (recall per bin):\n")
    print(weak.groupby(bins, observed=True).agg(
        markers=("passes", "size"), recall=("passes", "mean"),
        median_log2fc=("log2fc", "median"), median_in_frac=("in_frac", "median"),
    ).round(3).to_markdown())  # fmt: skip
    runs.to_csv(out / "accuracy_runs.tsv", sep="\t", index=False)
    table.to_csv(out / "accuracy_classes.tsv", sep="\t")


# --- DLPFC -----------------------------------------------------------------------------------


def dlpfc(out: Path) -> None:
    if not DLPFC.exists():
        print(f"\n(DLPFC data not found at {DLPFC}: skipped)")
        return
    adata = spaseg.io.read_h5ad(DLPFC, sample="151673")
    spaseg.pp.qc(adata, sample="151673")
    spaseg.pp.normalize_pca(adata, n_comps=15)
    adata.obs["domain"] = adata.obs["layer_guess"].astype(str).replace("NA", np.nan)
    with measure() as m:
        table = svg(adata, copy=True)
    table["rank"] = table.groupby("domain", observed=True).cumcount() + 1
    rows = []
    for layer, symbols in LAYER_MARKERS.items():
        for symbol in symbols:
            hit = table[(table["domain"] == layer) & (table["symbol"] == symbol)]
            if hit.empty:
                rows.append(dict(layer=layer, gene=symbol, rank="not in panel"))
                continue
            r = hit.iloc[0]
            rows.append(dict(
                layer=layer, gene=symbol, rank=int(r["rank"]), z=r["score"], log2fc=r["log2fc"],
                padj=r["padj"], in_frac=r["in_frac"], out_frac=r["out_frac"], passes=r["passes"],
                fails=r["fails"] or "-", morans_i=r["morans_i"],
            ))  # fmt: skip
    n_genes = adata.n_vars
    print(f"\n## DLPFC 151673: layer markers (domains = layer_guess, {adata.n_obs} spots, "
          f"{n_genes} genes; rank by Wilcoxon z within the layer, 1 = top)\n")  # fmt: skip
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g"))
    summary = table.groupby("domain", observed=True).agg(
        spots=("domain", "size"), passing_svgs=("passes", "sum"),
        top5=("symbol", lambda s: ", ".join(map(str, s.head(5)))),
    ).drop(columns="spots")  # fmt: skip
    print("\nSVGs passing the default filters, and the top 5 genes by z, per layer:\n")
    print(summary.to_markdown())
    moran = table.drop_duplicates("gene")
    print(f"\nMoran's I FDR < 0.05: {(moran['morans_padj'] < 0.05).sum()} of {n_genes} genes; "
          f"svg() took {m.seconds:.1f} s, peak RSS {m.peak_mb:.0f} MB")  # fmt: skip
    table.to_csv(out / "dlpfc_151673_svg.tsv", sep="\t", index=False)
    fig = plot_svg(adata, table, n_top=3, title="DLPFC 151673, layer_guess")
    fig.savefig(out / "dlpfc_151673_svg.png", dpi=90)


# --- speed -----------------------------------------------------------------------------------


def synthetic(n_spots: int, n_genes: int, n_domains: int = 8, seed: int = 0) -> ad.AnnData:
    """Sparse log-normalised data on a square lattice with Voronoi domains and 20 markers each.

    Each gene is detected in a share of spots drawn log-uniformly in [0.5%, 30%] (~7% of the
    matrix non-zero, like 2 000 variable genes of Stereo-seq bin20); a marker is detected in
    90% of its domain's spots. Counts are 1 + Poisson, then normalised and log1p-transformed.
    """
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_spots)))
    xy = np.column_stack(np.divmod(np.arange(n_spots), side)[::-1]).astype(float)
    _, nearest = cKDTree(rng.uniform(0, side, (2 * n_domains, 2))).query(xy)
    domain = nearest % n_domains
    members = [np.flatnonzero(domain == d) for d in range(n_domains)]
    detected = np.exp(rng.uniform(np.log(0.005), np.log(0.3), n_genes))
    marker = np.full(n_genes, -1)
    marker[: 20 * n_domains] = np.repeat(np.arange(n_domains), 20)
    columns = []
    for g in range(n_genes):  # one column at a time keeps memory at the size of the result
        rows = []
        for d, spots in enumerate(members):
            p = 0.9 if marker[g] == d else detected[g]
            # Draws with replacement: -log(1 - p) draws per spot leave a share p of them hit.
            draws = rng.poisson(-np.log1p(-p) * spots.size)
            rows.append(spots[np.unique(rng.integers(0, spots.size, draws))])
        columns.append(np.sort(np.concatenate(rows)))
    nnz = np.array([c.size for c in columns])
    counts = 1 + rng.poisson(np.repeat(rng.uniform(0, 2, n_genes), nnz)).astype(np.float32)
    x = sparse.csc_matrix(
        (counts, np.concatenate(columns).astype(np.int32), np.r_[0, np.cumsum(nnz)]),
        shape=(n_spots, n_genes),
    ).tocsr()
    obs = pd.DataFrame(
        {"domain": pd.Categorical(domain.astype(str))}, index=np.arange(n_spots).astype(str)
    )
    var = pd.DataFrame(
        {"marker_domain": np.where(marker >= 0, marker.astype(str), "")},
        index=[f"g{k}" for k in range(n_genes)],
    )
    adata = ad.AnnData(x, obs=obs, var=var, obsm={"spatial": xy})
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    return adata


def timed(label: str, func, rows: list, **info) -> object:
    """Run ``func``, recording wall and CPU time (all threads: robust to a busy machine)."""
    gc.collect()
    cpu = time.process_time()
    with measure() as m:
        result = func()
    cpu = time.process_time() - cpu
    rows.append(
        dict(method=label, **info, wall_s=m.seconds, cpu_s=cpu, peak_rss_gb=m.peak_mb / 1024)
    )
    print(f"  {label} {info}: {m.seconds:.1f} s wall, {cpu:.1f} s CPU, "
          f"peak RSS {m.peak_mb / 1024:.2f} GB", flush=True)  # fmt: skip
    return result


def speed(n_spots: int, n_genes: int, out: Path) -> None:
    with measure() as m:
        full = synthetic(n_spots, n_genes)
    print(f"\n## Speed: synthetic {n_spots} spots x {n_genes} genes x 8 domains, "
          f"{full.X.nnz / n_spots / n_genes:.1%} non-zero (generated in {m.seconds:.0f} s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n",
          flush=True)  # fmt: skip
    rows = []
    spot_sizes = [n_spots // 8, n_spots // 4, n_spots // 2, n_spots]
    gene_sizes = [n_genes // 4, n_genes // 2]
    table = None
    for n in spot_sizes:
        sub = full[:n].copy() if n < n_spots else full  # top rows: every domain still present
        table = timed("spaseg.tl.svg", lambda s=sub: svg(s, copy=True), rows,
                      spots=n, genes=n_genes)  # fmt: skip
    planted = table["gene"].map(full.var["marker_domain"]) == table["domain"].astype(str)
    recall = (table["passes"] & planted).sum() / planted.sum()
    precision = (table["passes"] & planted).sum() / max(table["passes"].sum(), 1)
    timed("spaseg.tl.morans_i only (graph + I)", lambda: morans_i(full), rows,
          spots=n_spots, genes=n_genes)  # fmt: skip
    for g in gene_sizes:
        sub = full[:, :g].copy()
        timed("spaseg.tl.svg", lambda s=sub: svg(s, copy=True), rows, spots=n_spots, genes=g)
        del sub
    # Warm-up: scanpy compiles its numba kernels on the first call; time the work, not that.
    sc.tl.rank_genes_groups(full[:2000, :50].copy(), "domain", method="wilcoxon")
    for n in (spot_sizes[0], n_spots):
        sub = full[:n].copy() if n < n_spots else full
        timed("scanpy rank_genes_groups (wilcoxon)", lambda s=sub: sc.tl.rank_genes_groups(
            s, "domain", method="wilcoxon", tie_correct=True, copy=True), rows,
            spots=n, genes=n_genes)  # fmt: skip
    small = full[: spot_sizes[0]].copy()
    ours = svg(small, copy=True).set_index(["domain", "gene"])["score"]
    ref = sc.tl.rank_genes_groups(small, "domain", method="wilcoxon", tie_correct=True, copy=True)
    ref = sc.get.rank_genes_groups_df(ref, group=None).set_index(["group", "names"])["scores"]
    diff = np.abs(ours.to_numpy() - ref.loc[list(ours.index)].to_numpy()).max()
    frame = pd.DataFrame(rows)
    print("\n", frame.round(2).to_markdown(index=False), sep="")
    print(f"\nPlanted markers at full size: precision {precision:.3f}, recall {recall:.3f}; "
          f"max |z(spaseg) - z(scanpy)| at {spot_sizes[0]} spots: {diff:.1e}")  # fmt: skip
    frame.to_csv(out / "speed.tsv", sep="\t", index=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["accuracy", "dlpfc", "speed"],
                        choices=["accuracy", "dlpfc", "speed"])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="one seed, 66 k spots")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/svg"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.ERROR)
    pd.set_option("display.width", 200)
    if "accuracy" in args.parts:
        accuracy([0] if args.quick else [0, 1, 2], args.out)
    if "dlpfc" in args.parts:
        dlpfc(args.out)
    if "speed" in args.parts:
        speed(66_000 if args.quick else 527_000, 2_000, args.out)


if __name__ == "__main__":
    main()
