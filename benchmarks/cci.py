"""Cell-cell interaction: accuracy on simulated mixtures, real data, and speed at scale.

    python benchmarks/cci.py [--parts accuracy cerebellum dlpfc speed] [--quick]
                             [--speed-sizes 1000000x1000] [--speed-draws 100]
                             [--out benchmarks/out/cci] [--n-background 1000]

accuracy
    :func:`spaseg.datasets._sim_cci.simulate_cci`: a single-cell reference of 6 cell types and a
    hex section of 3 bands whose spots are known mixtures of them, with L-R pairs planted across
    band boundaries (ligand strip on one side, receptor strip on the other) and control pairs
    of the same expression that are not neighbours (``separated``: strips far apart;
    ``scattered``: random spots). cell2location (reference model, then mapping) against the
    true fractions: Pearson correlation over all spot x type entries (gate >= 0.8) and per type.
    Then ``lr_scores`` with the cell2location entropy: AUROC of planted vs control pairs ranked
    by the section-wide z-score (gate >= 0.9), also by mean score and with ``H = 1``; whether
    each planted pair's strongest domain pair (``lr_domain_pairs``) is its sender -> receiver;
    squidpy ``ligrec`` on the same resource.
cerebellum
    ../shared/data/cerebellum: cell2location signatures from the single-nucleus reference
    (19 types), mapped onto the 100-bead Slide-seq puck; beads grouped into 3 cell-type niches
    (k-means of the fractions) as domains; L-R scores with the shipped settings
    (``config/config.yaml``, ``cci``) but liana's mouse consensus table and neighbours within
    a radius (the beads are not on a lattice); top pairs per niche.
dlpfc
    151673 with ``obs["layer_guess"]`` as domains (no single-cell reference: ``H = 1``), the
    shipped ``cci`` settings; top pairs per layer and ligrec between layers.
calibration
    Where the null holds, are the domain-level p-values (``pairs.tsv``) uniform and is the FDR
    kept? Every gene's values are shuffled over the spots on its own (no spatial structure
    left, so no pair is more co-expressed across neighbours than a random pair of its bins):
    the simulated section of ``accuracy`` (20 shuffles, 300 random gene pairs as the resource)
    and DLPFC 151673 with the consensus resource (3 shuffles); per run, the share of p below
    0.05 (target 0.03-0.07), the Kolmogorov-Smirnov p against uniform, and the share of runs
    with any ``padj < 0.05`` (all discoveries are false here, so that is the FDR; target
    <= 0.05). Power: simulated sections with planted pairs of growing strength (``lr_counts``)
    and the share of planted pairs with ``padj < 0.05`` in their sender domain or the section
    against that of the controls.
speed
    Synthetic square lattice (2 000 genes, ~10 % non-zero, 8 band domains) and random pairs
    from the genes: ``lr_scores`` with 100 background draws at 50 k spots x 1 000 pairs (target
    <= 2 min, <= 4 GB on 2 cores), and its growth with spots and with pairs. Each size runs in
    a process of its own that reads the section from an ``.h5ad`` as the workflow's rule does
    (``benchmarks/_lr_speed.py``): time and peak resident memory of that process during the
    call, the data read before it included. The lattices stay in ``--out`` as
    ``lattice_<spots>.h5ad`` (1.7 GB at 1 M spots) and are reused.

cerebellum and dlpfc also list every pair x domain row with ``padj < alpha`` and compare the
section-level scores (``"all"``) with LIANA+'s global bivariate Moran's R
(``liana.mt.bivariate``) on the same spots, pairs and expression: once on our neighbour graph,
once on liana's Gaussian kernel reaching as far; Spearman correlation, overlap of the top 50.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch
import yaml
from scipy import sparse, stats
from sklearn.cluster import KMeans
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lr_speed import lattice_data  # noqa: E402
from _measure import measure  # noqa: E402

from spaseg.datasets._sim_cci import simulate_cci  # noqa: E402
from spaseg.pl._cci import cell_types, domain_heatmap, lr_spatial  # noqa: E402
from spaseg.tl import (  # noqa: E402
    cell2location_map,
    cell2location_signatures,
    ligrec_domains,
    lr_scores,
)
from spaseg.tl._lr import neighbour_graph  # noqa: E402
from spaseg.tl._lr_data import _data_symbols  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
log = logging.getLogger("benchmark")
#: The shipped ``cci`` settings: what the workflow passes to ``lr_scores``.
CCI = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["cci"]
#: Background draws of ``lr_scores`` on the real data (``--n-background``; default: the config).
REAL_BACKGROUND = CCI["n_background"]
#: Slide-seq beads are not on a lattice: rings on the quantised grid reach ~1 neighbour per bead.
PUCK_RADIUS = 300.0
#: Agreement with LIANA+ of every real section run, printed together at the end.
LIANA_ROWS: list[dict] = []


def normalise(adata: ad.AnnData) -> ad.AnnData:
    """Counts to ``layers["counts"]``, log-normalised expression (median total) to ``X``."""
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    return adata


def table(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    return frame.to_markdown(index=False, floatfmt=".3g") if len(frame) else "(none)"


def print_top(pairs: pd.DataFrame, n: int = 5, alpha: float = 0.05) -> None:
    """Each domain's ``n`` pairs of largest z-score (empirical p); ``*`` marks padj < alpha."""
    ranked = pairs[pairs["mean_score"] > 0].sort_values("zscore", ascending=False)
    for domain, rows in ranked.groupby("domain", sort=False).head(n).groupby("domain"):
        listed = ", ".join(
            f"{p} (z {z:.1f}, p {pv:.2g}{'*' if q < alpha else ''})"
            for p, z, pv, q in zip(
                rows["pair"], rows["zscore"], rows["pval"], rows["padj"], strict=True
            )
        )
        print(f"  {domain}: {listed}")
    n_min = int((pairs["pval"] <= pairs["pval"].min() + 1e-12).sum())
    print(
        f"  (* padj < {alpha}; {int((pairs['padj'] < alpha).sum())} pair x domain rows pass; "
        f"smallest p {pairs['pval'].min():.2g} ({n_min} rows), "
        f"{int((pairs['pval'] < 0.01).sum())} of {len(pairs)} rows have p < 0.01)"
    )


def print_domain_pairs(
    edges: pd.DataFrame, n: int = 8, alpha: float = 0.05, suffix: str = ""
) -> None:
    """Across-domain summary of one test (``suffix``: ``""`` random pairs, ``"_perm"``):
    rows with padj < alpha per sender -> receiver, and the ``n`` (pair, sender -> receiver)
    rows of largest z-score among them."""
    padj, z = f"padj{suffix}", f"zscore{suffix}"
    tested = edges.dropna(subset=[padj])
    hits = tested[tested[padj] < alpha]
    counts = hits.groupby(["sender", "receiver"]).size()
    print(
        f"  domain x domain, {'spot-permutation' if suffix else 'random-pair'} test: "
        f"{len(hits)} of {len(tested)} tested (pair, sender -> receiver) rows "
        f"with {padj} < {alpha}, in {len(counts)} of "
        f"{tested.groupby(['sender', 'receiver']).ngroups} domain pairs"
    )
    for row in hits.sort_values(z, ascending=False).head(n).to_dict("records"):
        print(
            f"    {row['sender']} -> {row['receiver']}: {row['pair']} (edge score "
            f"{row['score']:.3g}, z {row[z]:.1f}, padj {row[padj]:.2g}, {row['n_edges']} edges)"
        )


def print_ligrec(ligrec: pd.DataFrame, n: int = 8, alpha: float = 0.05) -> None:
    """squidpy ligrec: the ``n`` significant (pair, sender -> receiver) rows of largest mean."""
    hits = ligrec[ligrec["padj"] < alpha].sort_values("mean", ascending=False)
    for row in hits.head(n).itertuples():
        print(f"    {row.sender} -> {row.receiver}: {row.pair} (mean {row.mean:.3g})")


def save_tables(out: Path, name: str, lr: ad.AnnData, ligrec: pd.DataFrame | None) -> None:
    lr.uns["lr_pairs"].to_csv(out / f"{name}_pairs.tsv", sep="\t", index=False)
    lr.uns["lr_domain_pairs"].to_csv(out / f"{name}_domain_pairs.tsv", sep="\t", index=False)
    if ligrec is not None:
        ligrec.to_csv(out / f"{name}_ligrec.tsv", sep="\t", index=False)


# --- accuracy --------------------------------------------------------------------------------


def accuracy(out: Path, quick: bool) -> bool:
    sim = simulate_cci(n_genes=200, n_rows=24, n_planted=8, n_controls=16, seed=0)
    ref_epochs, map_epochs = (100, 800) if quick else (250, 3000)
    with measure() as fit:
        signatures = cell2location_signatures(
            sim.reference, "cell_type", max_epochs=ref_epochs, num_samples=200, device="cpu"
        )
        spots = sim.spatial.copy()
        cell2location_map(
            spots, signatures, n_cells_per_location=8, max_epochs=map_epochs, num_samples=200,
            device="cpu",
        )  # fmt: skip
    est = spots.obsm["cell_type_fractions"]
    true = sim.spatial.obsm["true_fractions"][est.columns]
    r_all = float(np.corrcoef(est.to_numpy().ravel(), true.to_numpy().ravel())[0, 1])
    r_types = {c: float(np.corrcoef(est[c], true[c])[0, 1]) for c in est.columns}
    true_h = (-(true * np.log2(true.where(true > 0, 1))).sum(axis=1)).to_numpy()
    r_entropy = float(np.corrcoef(spots.obs["cell_type_entropy"], true_h)[0, 1])
    print(f"\n## accuracy: cell2location ({ref_epochs} + {map_epochs} epochs, {fit.seconds:.0f} s)")
    print(f"{sim.spatial.n_obs} spots, {sim.reference.n_obs} reference cells, 6 cell types")
    print(f"Pearson r, estimated vs true fractions (all entries): {r_all:.3f}  (gate >= 0.8)")
    print("per type: " + ", ".join(f"{c} {r:.2f}" for c, r in r_types.items()))
    print(f"entropy vs true entropy: r = {r_entropy:.3f}")
    cell_types(spots).savefig(out / "sim_cell_types.png", dpi=100)

    adata = normalise(sim.spatial.copy())
    adata.obsm["cell_type_fractions"] = est
    kind = sim.pairs.assign(pair=sim.pairs["ligand"] + "^" + sim.pairs["receptor"])
    kind = kind.set_index("pair")
    rows = []
    results = {}
    for label, key in (("cell2location H", "cell_type_fractions"), ("H = 1", None)):
        with measure() as m:
            lr = lr_scores(adata, sim.pairs, fractions_key=key, min_spots=3, n_background=1000)
        results[label] = lr
        planted = (kind.loc[lr.var_names, "kind"] == "planted").to_numpy()
        edges = lr.uns["lr_domain_pairs"].merge(kind.reset_index(), on="pair", suffixes=("", "_t"))
        edges["right"] = (edges["sender"] == edges["sender_t"]) & (
            edges["receiver"] == edges["receiver_t"]
        )
        best = edges.loc[edges.groupby("pair")["score"].idxmax()]
        across = edges[edges["padj"] < 0.05]
        rows.append(
            {
                "weights": label,
                "AUROC (z)": roc_auc_score(planted, lr.var["zscore"]),
                "AUROC (mean score)": roc_auc_score(planted, lr.var["mean_score"]),
                "planted padj<0.05": int((lr.var["padj"][planted] < 0.05).sum()),
                "controls padj<0.05": int((lr.var["padj"][~planted] < 0.05).sum()),
                "planted: best domain pair right": f"{best.loc[best['kind'] == 'planted', 'right'].sum()}/{planted.sum()}",
                "across boundary padj<0.05: planted right": int(
                    (across["right"] & (across["kind"] == "planted")).sum()
                ),
                "across: controls": int((across["kind"] != "planted").sum()),
                "seconds": m.seconds,
            }
        )
    print(f"\n## accuracy: L-R scores ({planted.sum()} planted, {(~planted).sum()} control pairs)")
    print(table(rows))
    lr = results["cell2location H"]
    auroc = rows[0]["AUROC (z)"]
    print("\ntop pairs per domain (cell2location H):")
    print_top(lr.uns["lr_pairs"])
    with measure() as m:
        ligrec = ligrec_domains(adata, sim.pairs, n_perms=1000)
    sig = ligrec[ligrec["padj"] < 0.05].merge(
        kind.reset_index(), on=["pair"], suffixes=("", "_true")
    )
    right = sig[(sig["sender"] == sig["sender_true"]) & (sig["receiver"] == sig["receiver_true"])]
    print(
        f"\nsquidpy ligrec ({m.seconds:.0f} s): {sig['pair'].nunique()} pairs significant for some "
        f"domain pair; planted pairs significant at their sender -> receiver: "
        f"{right.loc[right['kind'] == 'planted', 'pair'].nunique()}/{int(planted.sum())}; "
        f"controls significant anywhere: {sig.loc[sig['kind'] != 'planted', 'pair'].nunique()}"
    )
    lr_spatial(lr, n_top=2).savefig(out / "sim_top_pairs.png", dpi=100)
    domain_heatmap(lr.uns["lr_domain_pairs"], ligrec).savefig(out / "sim_domains.png", dpi=100)
    ok = r_all >= 0.8 and auroc >= 0.9
    print(f"\naccuracy gates: fractions r {r_all:.3f} >= 0.8, AUROC {auroc:.3f} >= 0.9: "
          f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
    return ok


# --- real data -------------------------------------------------------------------------------


def shipped(**override) -> dict:
    """``lr_scores`` keywords as rule cci passes them from the config (``override`` wins)."""
    keys = (
        "organism", "complex_policy", "rings", "radius", "n_bins", "min_spots", "alpha", "seed",
        "n_permutations",
    )  # fmt: skip
    return {k: CCI[k] for k in keys} | {"n_background": REAL_BACKGROUND} | override


def describe(settings: dict) -> str:
    where = f"radius {settings['radius']}" if settings["radius"] else f"{settings['rings']} rings"
    return (
        f"{CCI['resource']} ({settings['organism']}), {where}, complexes by "
        f"{settings['complex_policy']}, min_spots {settings['min_spots']}, "
        f"{settings['n_background']} draws x {settings['n_bins']} bins, seed {settings['seed']}"
    )


def print_significant(
    name: str, pairs: pd.DataFrame, out: Path, alpha: float, suffix: str = "", n_list: int = 12
) -> None:
    """Every pair x domain row with ``padj{suffix} < alpha``, by domain (``all``: the section);
    the first ``n_list`` of each domain by z-score printed, all of them saved."""
    padj, z = f"padj{suffix}", f"zscore{suffix}"
    test = "spot-permutation test" if suffix else "random-pair test"
    hits = pairs[pairs[padj] < alpha].sort_values(["domain", z], ascending=[True, False])
    hits.to_csv(out / f"{name}_significant{suffix}.tsv", sep="\t", index=False)
    counts = hits["domain"].value_counts().reindex(pd.unique(pairs["domain"]), fill_value=0)
    print(
        f"{test}: {len(hits)} of {len(pairs)} pair x domain rows with {padj} < {alpha} ("
        + ", ".join(f"{d} {n}" for d, n in counts.items())
        + ")"
    )
    for domain, rows in hits.groupby("domain", sort=False):
        head = rows.head(n_list)
        listed = ", ".join(
            f"{p} (z {zz:.1f}, padj {q:.2g})"
            for p, zz, q in zip(head["pair"], head[z], head[padj], strict=True)
        )
        more = f" ... and {len(rows) - n_list} more" if len(rows) > n_list else ""
        print(f"  {domain} ({len(rows)}): {listed}{more}")


def liana_section(adata: ad.AnnData, lr: ad.AnnData) -> ad.AnnData:
    """Our expression of the genes of our pairs, named by upper-case symbol, for liana: the
    first gene of a repeated symbol, as ``lr_scores`` matches them."""
    symbols = pd.Series(np.arange(adata.n_vars), index=_data_symbols(adata, None))
    symbols = symbols[~symbols.index.duplicated()]
    entities = pd.concat([lr.var["ligand_genes"], lr.var["receptor_genes"]])
    genes = np.unique(entities.str.split("_").explode().to_numpy().astype(str))
    x = sparse.csr_matrix(adata.X[:, symbols[genes].to_numpy()], dtype=np.float32)
    x.eliminate_zeros()  # liana counts stored entries as expressing spots
    sub = ad.AnnData(x, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=genes))
    sub.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=float)
    return sub


def kernel_graph(
    sub: ad.AnnData, settings: dict, cutoff: float = 0.1
) -> tuple[sparse.spmatrix, str]:
    """liana's Gaussian kernel, its bandwidth set so that it falls to ``cutoff`` at the edge of
    our neighbourhood: the radius, or 10 % beyond ``rings`` spot spacings (a hex lattice's next
    ring is 30 % further), so that both graphs join the same spots."""
    import liana as li
    from scipy.spatial import cKDTree

    xy = sub.obsm["spatial"]
    spacing = float(np.median(cKDTree(xy).query(xy, 2)[0][:, 1]))
    reach = settings["radius"] or 1.1 * settings["rings"] * spacing
    bandwidth = reach / np.sqrt(2 * np.log(1 / cutoff))
    graph = li.ut.spatial_neighbors(
        sub, bandwidth=bandwidth, cutoff=cutoff, inplace=False,
        max_neighbours=min(100, sub.n_obs - 1),  # liana's default needs > 100 spots
    )  # fmt: skip
    return graph, f"liana gaussian (bandwidth {bandwidth:.0f})"


def liana_morans(sub: ad.AnnData, lr: ad.AnnData, graph, min_spots: int) -> tuple[pd.Series, float]:
    """Global bivariate Moran's R of our pairs, indexed by our pair names; and its seconds."""
    import liana as li

    sub = sub.copy()
    sub.obsp["spatial_connectivities"] = sparse.csr_matrix(graph, dtype=np.float32)
    names = lr.var["ligand_genes"] + "^" + lr.var["receptor_genes"]
    resource = lr.var[["ligand_genes", "receptor_genes"]].drop_duplicates()
    resource.columns = ["ligand", "receptor"]
    with measure() as m:
        result = li.mt.bivariate(
            sub, local_name="morans", global_name="morans", resource=resource,
            nz_prop=(min_spots - 0.5) / sub.n_obs,  # liana's filter = our min_spots
            n_perms=None, complex_sep="_", use_raw=False,
        )  # fmt: skip
    ours = pd.Series(lr.var_names, index=names.to_numpy())
    morans = result.var["morans"]
    morans.index = ours.reindex(morans.index).to_numpy()
    return morans, m.seconds


def agreement(name: str, lr: ad.AnnData, morans: pd.Series, graph: str, seconds: float) -> dict:
    """Spearman of our section-level scores with Moran's R and the overlap of the top 50."""
    section = lr.uns["lr_pairs"].query("domain == 'all'").set_index("pair")
    both = section[["mean_score", "zscore", "zscore_perm"]].join(morans.rename("R"), how="inner")
    n = min(50, len(both))
    top = {c: set(both[c].nlargest(n).index) for c in ("mean_score", "zscore", "zscore_perm", "R")}
    perm = both.dropna(subset=["zscore_perm"])
    return {
        "section": name,
        "liana graph": graph,
        "pairs compared": f"{len(both)} of {lr.n_vars}",
        "Spearman (mean score vs R)": stats.spearmanr(both["mean_score"], both["R"])[0],
        "Spearman (z vs R)": stats.spearmanr(both["zscore"], both["R"])[0],
        "top-50 overlap (mean score)": f"{len(top['mean_score'] & top['R'])}/{n}",
        "top-50 overlap (z)": f"{len(top['zscore'] & top['R'])}/{n}",
        "Spearman (permutation z vs R)": stats.spearmanr(perm["zscore_perm"], perm["R"])[0],
        "top-50 overlap (permutation z)": f"{len(top['zscore_perm'] & top['R'])}/{n}",
        "liana s": seconds,
    }


def compare_liana(out: Path, name: str, adata: ad.AnnData, lr: ad.AnnData, settings: dict) -> None:
    """LIANA+ Moran's R on the same spots and pairs: on our graph, then on liana's kernel;
    R of each pair saved next to our section scores (``<name>_liana_morans.tsv``)."""
    import liana as li

    sub = liana_section(adata, lr)
    ours = neighbour_graph(adata, rings=settings["rings"], radius=settings["radius"])
    where = f"radius {settings['radius']}" if settings["radius"] else f"{settings['rings']} rings"
    graphs = [(ours, f"ours ({where}, 0/1)"), kernel_graph(sub, settings)]
    rows, saved = [], lr.var[["mean_score", "zscore", "pval", "padj"]].copy()
    for graph, label in graphs:
        graph = sparse.csr_matrix(graph)
        graph.eliminate_zeros()  # liana keeps the weights below its cutoff as stored zeros
        neighbours = graph.getnnz() / graph.shape[0]
        morans, seconds = liana_morans(sub, lr, graph, settings["min_spots"])
        rows.append(agreement(name, lr, morans, f"{label}, {neighbours:.1f} nbrs", seconds))
        saved[f"R, {label}"] = morans
    n = len(morans)
    print(
        f"LIANA+ {li.__version__} global bivariate Moran's R (complexes: minimum subunit): {n} of "
        f"{lr.n_vars} of our pairs scored{'' if n >= 50 else ' (fewer than 50: top-N is all)'}; "
        "agreement with our section ('all') scores:"
    )
    print(table(rows))
    LIANA_ROWS.extend(rows)
    saved.rename_axis("pair").to_csv(out / f"{name.split()[0]}_liana_morans.tsv", sep="\t")


def report_real(out: Path, label: str, adata: ad.AnnData, lr: ad.AnnData, settings: dict) -> None:
    """Top pairs, boundary hits and every significant row of a real section; then LIANA+."""
    alpha = settings["alpha"]
    print_top(lr.uns["lr_pairs"], alpha=alpha)
    for suffix in ("", "_perm"):
        print_domain_pairs(lr.uns["lr_domain_pairs"], alpha=alpha, suffix=suffix)
    print_significant(label.split()[0], lr.uns["lr_pairs"], out, alpha)
    print_significant(label.split()[0], lr.uns["lr_pairs"], out, alpha, suffix="_perm")
    compare_liana(out, label, adata, lr, settings)


def cerebellum(out: Path, quick: bool) -> None:
    folder = SHARED / "cerebellum"
    if not folder.is_dir():
        print("\n## cerebellum: ../shared/data/cerebellum not found, skipped")
        return
    reference = ad.read_h5ad(folder / "reference_scrna.h5ad")
    puck = ad.read_h5ad(folder / "slideseq_puck.h5ad")
    ref_epochs, map_epochs = (100, 1000) if quick else (250, 3000)
    with measure() as fit:
        signatures = cell2location_signatures(
            reference, "cell_type", max_epochs=ref_epochs, num_samples=200, device="cpu"
        )
        cell2location_map(
            puck, signatures, n_cells_per_location=2, max_epochs=map_epochs, num_samples=200,
            device="cpu",
        )  # fmt: skip
    fractions = puck.obsm["cell_type_fractions"]
    niches = KMeans(3, n_init=10, random_state=0).fit_predict(fractions.to_numpy())
    puck.obs["domain"] = pd.Categorical([f"niche{k}" for k in niches])
    print(f"\n## cerebellum (Slide-seq, {puck.n_obs} beads; cell2location {fit.seconds:.0f} s)")
    dominant = fractions.idxmax(axis=1)
    for niche, types in dominant.groupby(puck.obs["domain"].to_numpy()):
        counts = types.value_counts().head(3)
        print(
            f"  {niche}: {len(types)} beads, mostly "
            + ", ".join(f"{t} ({n})" for t, n in counts.items())
        )
    adata = normalise(puck)
    settings = shipped(organism="mouse", radius=PUCK_RADIUS)
    weight = "cell_type_fractions" if CCI["weight"] == "entropy" else None
    with measure() as m:
        lr = lr_scores(adata, CCI["resource"], fractions_key=weight, **settings)
    print(
        f"L-R ({describe(settings)}; H from {weight or 'none: H = 1'}): {lr.n_vars} pairs "
        f"expressed, {lr.uns['lr']['mean_neighbours']:.1f} neighbours per bead, "
        f"{m.seconds:.1f} s. Top pairs per niche:"
    )
    report_real(out, "cerebellum", adata, lr, settings)
    save_tables(out, "cerebellum", lr, None)
    cell_types(puck).savefig(out / "cerebellum_cell_types.png", dpi=90)


def dlpfc(out: Path, quick: bool) -> None:
    path = SHARED / "dlpfc" / "151673.h5ad"
    if not path.is_file():
        print("\n## dlpfc: ../shared/data/dlpfc/151673.h5ad not found, skipped")
        return
    adata = ad.read_h5ad(path)
    adata = adata[adata.obs["layer_guess"].astype(str) != "NA"].copy()
    adata.obs["domain"] = adata.obs["layer_guess"].astype(str)
    normalise(adata)
    settings = shipped()
    with measure() as m:
        lr = lr_scores(adata, CCI["resource"], **settings)
    print(
        f"\n## dlpfc 151673 ({adata.n_obs} spots, layer_guess as domains, H = 1; "
        f"{describe(settings)}): {lr.n_vars} pairs expressed, "
        f"{lr.uns['lr']['n_background_strata']} background strata (bin pairs), "
        f"{m.seconds:.1f} s, peak {m.peak_mb:.0f} MB. Top pairs per layer:"
    )
    report_real(out, "dlpfc 151673", adata, lr, settings)
    with measure() as m:
        ligrec = ligrec_domains(
            adata, CCI["resource"], organism=settings["organism"], seed=settings["seed"],
            n_perms=200 if quick else CCI["ligrec_n_perms"], threshold=CCI["ligrec_threshold"],
        )  # fmt: skip
    hits = ligrec[ligrec["padj"] < settings["alpha"]]
    print(
        f"squidpy ligrec ({m.seconds:.0f} s, {ligrec['pair'].nunique()} pairs tested): "
        f"{hits['pair'].nunique()} pairs significant (padj < {settings['alpha']}) for at least "
        f"one of {hits.groupby(['sender', 'receiver']).ngroups} layer pairs; {len(hits)} of "
        f"{len(ligrec)} (pair, sender -> receiver) rows. Largest means among them:"
    )
    print_ligrec(ligrec)
    save_tables(out, "dlpfc", lr, ligrec)
    lr_spatial(lr, n_top=2).savefig(out / "dlpfc_top_pairs.png", dpi=90)
    domain_heatmap(lr.uns["lr_domain_pairs"], ligrec).savefig(out / "dlpfc_domains.png", dpi=90)


# --- calibration -----------------------------------------------------------------------------


def shuffled(adata: ad.AnnData, rng: np.random.Generator) -> ad.AnnData:
    """Each gene's values moved to random spots, independently of every other gene."""
    X = sparse.csc_matrix(adata.X)
    n = X.shape[0]
    data, rows = X.data.copy(), X.indices.copy()
    for j in range(X.shape[1]):
        part = slice(X.indptr[j], X.indptr[j + 1])
        rows[part] = rng.choice(n, X.indptr[j + 1] - X.indptr[j], replace=False)
    out = adata.copy()
    out.X = sparse.csr_matrix(sparse.csc_matrix((data, rows, X.indptr), X.shape))
    return out


def null_row(name: str, lr: ad.AnnData) -> dict:
    """The domain-level tests (``lr_pairs``) and the boundary tests (``lr_domain_pairs``, the
    rows tested) of one run on null data: the random-pair test, then the spot-permutation test
    (``_perm``)."""
    pairs = lr.uns["lr_pairs"]
    row = {"data": name, "tests": len(pairs)}
    for test, suffix in (("", ""), ("perm ", "_perm")):
        p = pairs[f"pval{suffix}"].dropna().to_numpy()
        edges = lr.uns["lr_domain_pairs"].dropna(subset=[f"pval{suffix}"])
        row |= {
            f"{test}share p < 0.05": float(np.mean(p < 0.05)),
            f"{test}KS p": float(stats.kstest(p, "uniform").pvalue),
            f"{test}min p": float(p.min()),
            f"{test}any padj < 0.05": bool((pairs[f"padj{suffix}"] < 0.05).any()),
            f"{test}boundary share p < 0.05": float(np.mean(edges[f"pval{suffix}"] < 0.05)),
            f"{test}boundary any padj < 0.05": bool((edges[f"padj{suffix}"] < 0.05).any()),
        }
    return row


def permuted_coordinates(adata: ad.AnnData, rng: np.random.Generator) -> ad.AnnData:
    """The spots' positions dealt out at random: each spot keeps its whole profile (and its
    domain), so genes stay co-expressed within spots but not across neighbours."""
    out = adata.copy()
    order = rng.permutation(adata.n_obs)
    for key in ("array_row", "array_col"):
        out.obs[key] = adata.obs[key].to_numpy()[order]
    out.obsm["spatial"] = np.asarray(adata.obsm["spatial"])[order]
    return out


def calibration(out: Path, quick: bool) -> bool:
    rng = np.random.default_rng(0)
    rows = []
    n_sim = 5 if quick else 20
    sim = simulate_cci(n_genes=200, n_rows=24, n_planted=8, n_controls=16, seed=0).spatial
    sim = normalise(sim)
    genes = np.asarray(sim.var_names)
    with measure() as m:
        for k in range(n_sim):
            pick = rng.choice(len(genes), (300, 2))
            pick = pick[pick[:, 0] != pick[:, 1]]
            resource = pd.DataFrame({"ligand": genes[pick[:, 0]], "receptor": genes[pick[:, 1]]})
            lr = lr_scores(
                shuffled(sim, rng), resource.drop_duplicates(), n_background=1000, seed=k
            )
            rows.append(null_row(f"simulated, shuffle {k}", lr))
    print(f"\n## calibration: {n_sim} shuffled simulated sections ({m.seconds:.0f} s)")
    path = SHARED / "dlpfc" / "151673.h5ad"
    if path.is_file():
        adata = ad.read_h5ad(path)
        adata = adata[adata.obs["layer_guess"].astype(str) != "NA"].copy()
        adata.obs["domain"] = adata.obs["layer_guess"].astype(str)
        normalise(adata)
        for k in range(1 if quick else 3):
            lr = lr_scores(shuffled(adata, rng), "consensus", n_background=REAL_BACKGROUND, seed=k)
            rows.append(null_row(f"DLPFC 151673, shuffle {k}", lr))
        for k in range(1 if quick else 3):
            lr = lr_scores(
                permuted_coordinates(adata, rng), "consensus", n_background=REAL_BACKGROUND, seed=k
            )
            rows.append(null_row(f"DLPFC 151673, coordinates permuted {k}", lr))
    result = pd.DataFrame(rows)
    print(table(result.round(4).to_dict("records")))
    sim_rows = result[result["data"].str.startswith("simulated")]
    share = sim_rows["share p < 0.05"].mean()
    fdr = float(result["any padj < 0.05"].mean())
    for test in ("", "perm "):
        print(
            f"{test or 'random-pair '}test, simulated: mean share p < 0.05 = "
            f"{sim_rows[test + 'share p < 0.05'].mean():.3f} (target 0.03-0.07); runs with a "
            f"false discovery (domain or boundary), all data: "
            f"{(result[test + 'any padj < 0.05'] | result[test + 'boundary any padj < 0.05']).mean():.3f}"
            f" of {len(result)} (FDR under the complete null; target <= 0.05)"
        )

    print("\n## power: planted pairs by strength (lr_counts), padj < 0.05")
    power = []
    for low, high in [(0.25, 1.0), (0.5, 2.0), (1.0, 4.0)]:
        sim = simulate_cci(n_genes=200, n_rows=24, n_planted=8, n_controls=16, seed=1,
                           lr_counts=(low, high))  # fmt: skip
        spots = normalise(sim.spatial)
        lr = lr_scores(spots, sim.pairs, n_background=1000)
        section = lr.uns["lr_pairs"].query("domain == 'all'").set_index("pair")
        kind = sim.pairs.assign(pair=sim.pairs["ligand"] + "^" + sim.pairs["receptor"])
        kind = kind.set_index(kind["pair"].str.upper())["kind"]
        planted = (kind.reindex(section.index) == "planted").to_numpy()
        truth = sim.pairs.assign(
            pair=(sim.pairs["ligand"] + "^" + sim.pairs["receptor"]).str.upper()
        )
        edges = lr.uns["lr_domain_pairs"].merge(truth, on="pair", suffixes=("", "_t"))
        right = (edges["sender"] == edges["sender_t"]) & (edges["receiver"] == edges["receiver_t"])
        row = {"lr_counts": f"{low}-{high}"}
        for test, suffix in (("", ""), ("perm ", "_perm")):
            hit = (section[f"padj{suffix}"] < 0.05).to_numpy()
            across = edges[f"padj{suffix}"] < 0.05
            row |= {
                f"{test}section: planted found": float(hit[planted].mean()),
                f"{test}section: controls found": float(hit[~planted].mean()),
                f"{test}boundary: planted right": int(
                    (across & right & (edges["kind"] == "planted")).sum()
                ),
                f"{test}boundary: controls": int((across & (edges["kind"] != "planted")).sum()),
            }
        power.append(row)  # fmt: skip
    print(table(power))
    return 0.03 <= share <= 0.07 and fdr <= 0.05


# --- speed -----------------------------------------------------------------------------------


#: (spots, pairs) of the speed part and its background draws; --speed-sizes / --speed-draws.
SPEED_SIZES: list[tuple[int, int]] = []
SPEED_DRAWS = 100
#: The issue's targets: (spots, wall s, peak MB) - 50 k in 2 min and 4 GB, 1 M in 10 min, 12 GB.
SPEED_TARGETS = [(50_000, 120, 4096), (1_000_000, 600, 12288)]


def speed(out: Path, quick: bool) -> None:
    full = 12_500 if quick else 50_000
    configs = SPEED_SIZES or [
        (full // 4, 1000), (full // 2, 1000), (full, 250), (full, 500), (full, 1000),
    ]  # fmt: skip
    rows = []
    for n_spots, n_pairs in configs:
        path = out / f"lattice_{n_spots}.h5ad"
        if not path.exists():
            lattice_data(n_spots).write_h5ad(path)
        load = os.getloadavg()[0]
        one = [sys.executable, str(Path(__file__).with_name("_lr_speed.py"))]
        done = subprocess.run(
            [*one, str(path), str(n_pairs), str(SPEED_DRAWS)],
            check=True, stdout=subprocess.PIPE, text=True,  # its log and errors: to ours
        )  # fmt: skip
        rows.append(
            {**json.loads(done.stdout.splitlines()[-1]), "load avg (1 min) before": f"{load:.1f}"}
        )
    print(
        f"\n## speed: lr_scores, {SPEED_DRAWS} background draws, 2 rings; {os.cpu_count()} "
        f"CPUs, nice {os.nice(0)}; CPU s = process CPU time (all threads) during the call"
    )
    print(table(rows))
    last = rows[-1]
    wall, cpu = float(last["wall s"]), float(last["CPU s"])
    reached = [t for t in SPEED_TARGETS if t[0] <= last["spots"]]
    if not reached:
        print(f"no target at {last['spots']} spots (targets from {SPEED_TARGETS[0][0]} spots)")
        return
    n, limit_s, limit_mb = reached[-1]
    ok = wall <= limit_s and last["peak MB"] <= limit_mb
    print(f"target at {n} spots x 1000 pairs: <= {limit_s} s wall and <= {limit_mb} MB; "
          f"at {last['spots']} x {last['pairs']}: {'met' if ok else 'NOT met'} ({wall:.0f} s "
          f"wall, {cpu:.0f} s CPU, {last['peak MB']} MB; load avg now {os.getloadavg()[0]:.1f})")  # fmt: skip


PARTS = {
    "accuracy": accuracy,
    "cerebellum": cerebellum,
    "dlpfc": dlpfc,
    "calibration": calibration,
    "speed": speed,
}


def main() -> None:
    global REAL_BACKGROUND, SPEED_DRAWS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--quick", action="store_true", help="fewer epochs, smaller scale")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/cci"))
    parser.add_argument(
        "--n-background",
        type=int,
        default=REAL_BACKGROUND,
        help="background draws for the cerebellum and dlpfc parts (default: config's cci)",
    )
    parser.add_argument(
        "--speed-sizes", nargs="+", default=[], metavar="SPOTSxPAIRS",
        help="the speed part at these sizes only (e.g. 1000000x1000)",
    )  # fmt: skip
    parser.add_argument("--speed-draws", type=int, default=100, help="background draws (speed)")
    args = parser.parse_args()
    REAL_BACKGROUND = args.n_background
    SPEED_SIZES[:] = [tuple(int(x) for x in size.split("x")) for size in args.speed_sizes]
    SPEED_DRAWS = args.speed_draws
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # cell2location: pyro's small ops run fastest on one thread
    started = time.perf_counter()
    passed = True
    for part in args.parts:
        result = PARTS[part](args.out, args.quick)
        passed &= result is not False
    if LIANA_ROWS:
        print("\n## agreement with LIANA+ global bivariate Moran's R, all real sections")
        print(table(LIANA_ROWS))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; figures in {args.out}")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
