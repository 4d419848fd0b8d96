"""SpaSEG on DLPFC Visium sections: accuracy (ARI vs layer_guess), time and memory per stage.

    python benchmarks/dlpfc.py [--seeds 0 1 2 3 4] [--out benchmarks/out/dlpfc]

Sections 151673 and 151674 are scored against ``obs["layer_guess"]`` on labelled spots
("NA" left out). 151675 and 151676 have no labels here: their domain labels are written to
the output folder for independent scoring (never used for tuning). Baselines on the same
principal components in the same run: scanpy Leiden with the resolution tuned to 7 clusters,
and KMeans(7). Everything runs with the settings `config/config.yaml` ships (its ``qc``,
``pca`` and ``spaseg`` sections, as the workflow passes them) unless ``--spaseg`` or
``--pca`` override a key (``--panel-from 151675 151676``: ``pca.genes`` = the genes those
sections share). Accuracy: ARI and NMI against ``layer_guess``.
"""

from __future__ import annotations

import argparse
import ast
import logging
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch
import yaml
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402

import spaseg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "dlpfc"
LABELLED = ("151673", "151674")
UNLABELLED = ("151675", "151676")


def leiden_n_clusters(adata, n_clusters: int, seed: int, transformer=None) -> np.ndarray:
    """Leiden on the PCA neighbour graph, resolution bisected until ``n_clusters`` clusters.

    ``transformer``: scanpy's kNN backend; ``"sklearn"`` above 4096 spots, where scanpy 1.11's
    default path fails on the sparse arrays of scikit-learn >= 1.8.
    """
    sc.pp.neighbors(adata, use_rep="X_pca", random_state=seed, transformer=transformer)
    lo, hi = 0.01, 3.0
    labels = None
    for _ in range(30):
        res = (lo + hi) / 2
        sc.tl.leiden(
            adata,
            resolution=res,
            random_state=seed,
            key_added="_leiden",
            flavor="igraph",
            n_iterations=2,
            directed=False,
        )
        labels = adata.obs["_leiden"].to_numpy()
        k = len(np.unique(labels))
        if k == n_clusters:
            break
        lo, hi = (res, hi) if k < n_clusters else (lo, res)
    return labels


def shipped_config() -> dict:
    """``config/config.yaml`` as the workflow reads it."""
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def score(truth: pd.Series | None, labels) -> tuple[float, float]:
    """ARI and NMI on the labelled spots ("NA" left out); NaN without labels."""
    if truth is None:
        return np.nan, np.nan
    ok = (truth != "NA").to_numpy()
    mine = np.asarray(labels)[ok]
    return adjusted_rand_score(truth[ok], mine), normalized_mutual_info_score(truth[ok], mine)


def run_section(
    name: str, seeds: list[int], out: Path, config: dict, baselines: bool
) -> list[dict]:
    rows = []
    with measure() as m:
        adata = spaseg.io.read_h5ad(DATA / f"{name}.h5ad", sample=name)
    rows.append(dict(section=name, stage="load", seconds=m.seconds, peak_mb=m.peak_mb))
    with measure() as m:
        spaseg.pp.qc(adata, **spaseg.pp.qc_filters(config["qc"]), sample=name)
    rows.append(dict(section=name, stage="qc", seconds=m.seconds, peak_mb=m.peak_mb))
    with measure() as m:
        spaseg.pp.normalize_pca(adata, **config["pca"], seed=config["spaseg"]["seed"], sample=name)
    rows.append(dict(section=name, stage="normalize_pca", seconds=m.seconds, peak_mb=m.peak_mb))

    truth = adata.obs["layer_guess"].astype(str) if "layer_guess" in adata.obs else None

    spaseg_kwargs = {k: v for k, v in config["spaseg"].items() if k not in ("seed", "n_domains")}

    def run_spaseg(seed):
        spaseg.tl.spaseg(adata, n_domains=7, seed=seed, sample=name, log_every=0, **spaseg_kwargs)
        return adata.obs["domain"].astype(str).to_numpy()

    methods = {  # name -> (stage, labels for a seed), all on the same principal components
        "SpaSEG": ("spaseg", run_spaseg),
        "KMeans": (
            "baseline",
            lambda seed: KMeans(7, n_init=10, random_state=seed).fit_predict(adata.obsm["X_pca"]),
        ),
        "Leiden": ("baseline", lambda seed: leiden_n_clusters(adata, 7, seed)),
    }
    if not baselines:
        methods = {"SpaSEG": methods["SpaSEG"]}
    labels = pd.DataFrame(index=adata.obs_names)
    for seed in seeds:
        for method, (stage, fit) in methods.items():
            with measure() as m:
                result = fit(seed)
            labels[f"{method.lower()}_seed{seed}"] = result
            ari, nmi = score(truth, result)
            rows.append(
                dict(
                    section=name,
                    stage=stage,
                    method=method,
                    seed=seed,
                    seconds=m.seconds,
                    peak_mb=m.peak_mb,
                    ari=ari,
                    nmi=nmi,
                )
            )
    out.mkdir(parents=True, exist_ok=True)
    labels.to_csv(out / f"{name}_labels.tsv", sep="\t")
    return rows


def write_panel(sections: list[str], path: Path) -> str:
    """The genes all ``sections`` hold, one per line: a panel of genes variable in each."""
    genes = None
    for name in sections:
        names = ad.read_h5ad(DATA / f"{name}.h5ad", backed="r").var_names
        genes = names if genes is None else genes.intersection(names)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{g}\n" for g in genes))
    print(f"panel: {len(genes)} genes shared by {', '.join(sections)} -> {path}")
    return str(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sections", nargs="+", default=list(LABELLED + UNLABELLED))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/dlpfc"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spaseg", default="", help="override config spaseg keys, k=v,...")
    parser.add_argument("--pca", default="", help="override config pca keys, k=v,...")
    parser.add_argument("--no-baselines", action="store_true", help="SpaSEG only")
    parser.add_argument(
        "--panel-from",
        nargs="+",
        metavar="SECTION",
        help="pca.genes: the genes these sections share (each holds its 5 000 most variable), "
        "written to <out>/panel.txt",
    )
    args = parser.parse_args(argv)
    if not DATA.exists():
        sys.exit(f"DLPFC data not found at {DATA}")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    config = shipped_config()
    for section in ("spaseg", "pca"):
        overrides = getattr(args, section)
        config[section].update(
            {
                k: ast.literal_eval(v)
                for k, v in (kv.split("=") for kv in overrides.split(",") if kv)
            }
        )
    if args.panel_from:
        config["pca"]["genes"] = write_panel(args.panel_from, args.out / "panel.txt")
    print(f"spaseg: {config['spaseg']}\npca: {config['pca']}\nqc: {config['qc']}")

    rows = []
    for name in args.sections:
        rows += run_section(name, args.seeds, args.out, config, not args.no_baselines)
    df = pd.DataFrame(rows)
    df["seed"] = df["seed"].astype("Int64")  # NaN for the per-section stages
    df.to_csv(args.out / "runs.tsv", sep="\t", index=False)

    pd.set_option("display.width", 200)
    for metric in ("ari", "nmi"):
        print(f"\n## Accuracy: {metric.upper()} vs layer_guess (7 domains), per seed\n")
        acc = df.dropna(subset=[metric]).pivot_table(
            index=["section", "method"], columns="seed", values=metric
        )
        per_seed = acc.copy()
        acc["mean"], acc["sd"] = per_seed.mean(axis=1), per_seed.std(axis=1, ddof=1)
        acc["min"], acc["max"] = per_seed.min(axis=1), per_seed.max(axis=1)
        print(acc.round(3).to_markdown())
    print("\n## Time (s) and peak memory (MB) per stage, mean over seeds\n")
    df["method"] = df["method"].fillna(df["stage"])  # load/qc/pca rows have no method
    cost = df.groupby(["section", "stage", "method"], sort=False)[["seconds", "peak_mb"]].mean()
    print(cost.round(2).to_markdown())
    print(f"\nLabels of every run: {args.out}/<section>_labels.tsv")


if __name__ == "__main__":
    main()
