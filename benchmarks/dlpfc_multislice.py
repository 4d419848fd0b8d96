"""Joint SpaSEG on DLPFC 151673-151676 as one group: accuracy, time and memory.

    python benchmarks/dlpfc_multislice.py [--seeds 0 1 2 3 4] [--out benchmarks/out/dlpfc_multislice]

The four sections are analysed as one group (shared genes, joint normalisation and PCA,
per-section standardisation, one network, one label set); ``--harmony-spaseg`` adds the same
on Harmony-corrected PCs. Scored: ARI against ``layer_guess`` on 151673 and 151674, the labelled sections ("NA"
left out). 151675 and 151676 have no labels here; their joint labels are written to the output
folder for independent scoring and were never looked at for tuning. In the same run, on the
same data: single-section SpaSEG on 151673 and 151674 (the library defaults), and Harmony +
Leiden on the joint PCs (resolution bisected to 7 clusters).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402
from dlpfc import DATA, leiden_n_clusters, score  # noqa: E402

import spaseg  # noqa: E402

log = logging.getLogger("benchmark")
SECTIONS = ("151673", "151674", "151675", "151676")
LABELLED = ("151673", "151674")


def load_sections() -> dict:
    sections = {}
    for name in SECTIONS:
        adata = spaseg.io.read_h5ad(DATA / f"{name}.h5ad", sample=name)
        sections[name] = spaseg.pp.qc(adata, sample=name)
    return sections


def truth_of(adata, name: str) -> pd.Series:
    return adata.obs["layer_guess"].astype(str)


def joint_rows(joint, variant: str, seeds, labels: pd.DataFrame, kwargs: dict) -> list[dict]:
    """Joint SpaSEG for each seed; ARI per labelled section."""
    rows = []
    use_rep = joint.uns["joint_pca"]["use_rep"]
    sample = joint.obs["sample"].astype(str)
    for seed in seeds:
        with measure() as m:
            spaseg.tl.spaseg(
                joint,
                n_domains=7,
                seed=seed,
                sample_key="sample",
                use_rep=use_rep,
                log_every=0,
                **kwargs,
            )
        labels[f"{variant}_seed{seed}"] = joint.obs["domain"].astype(str)
        log.warning("%s seed %d: %.0f s", variant, seed, m.seconds)
        for name in LABELLED:
            sel = (sample == name).to_numpy()
            truth = joint.obs["layer_guess"][sel].astype(str)
            rows.append(
                dict(
                    section=name,
                    method=variant,
                    seed=seed,
                    ari=score(truth, joint.obs["domain"][sel]),
                    seconds=m.seconds,
                    peak_mb=m.peak_mb,
                )
            )
    return rows


def single_rows(sections: dict, seeds, labels: dict) -> list[dict]:
    """The single-section path (library defaults) on the labelled sections."""
    rows = []
    for name in LABELLED:
        adata = sections[name].copy()
        spaseg.pp.normalize_pca(adata, n_comps=15, sample=name)
        for seed in seeds:
            with measure() as m:
                spaseg.tl.spaseg(adata, n_domains=7, seed=seed, sample=name, log_every=0)
            labels[name][f"single_seed{seed}"] = adata.obs["domain"].astype(str)
            log.warning("single %s seed %d: %.0f s", name, seed, m.seconds)
            rows.append(
                dict(
                    section=name,
                    method="SpaSEG single section",
                    seed=seed,
                    ari=score(truth_of(adata, name), adata.obs["domain"]),
                    seconds=m.seconds,
                    peak_mb=m.peak_mb,
                )
            )
    return rows


def harmony_leiden_rows(joint, seeds, labels: pd.DataFrame) -> list[dict]:
    rows = []
    sample = joint.obs["sample"].astype(str)
    rep = joint.copy()
    rep.obsm["X_pca"] = joint.obsm["X_pca_harmony"]
    for seed in seeds:
        with measure() as m:
            ld = leiden_n_clusters(rep, 7, seed, transformer="sklearn")
        labels[f"harmony_leiden_seed{seed}"] = ld
        for name in LABELLED:
            sel = (sample == name).to_numpy()
            rows.append(
                dict(
                    section=name,
                    method="Harmony + Leiden",
                    seed=seed,
                    ari=score(joint.obs["layer_guess"][sel].astype(str), np.asarray(ld)[sel]),
                    seconds=m.seconds,
                    peak_mb=m.peak_mb,
                )
            )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/dlpfc_multislice"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-comps", type=int, default=15)
    parser.add_argument("--skip-single", action="store_true", help="joint runs only")
    parser.add_argument(
        "--harmony-spaseg", action="store_true", help="also joint SpaSEG on Harmony PCs"
    )
    parser.add_argument("--spaseg", default="", help="extra spaseg.tl.spaseg kwargs, k=v,...")
    args = parser.parse_args(argv)
    if not DATA.exists():
        sys.exit(f"DLPFC data not found at {DATA}")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    extra = {k: eval(v) for k, v in (kv.split("=") for kv in args.spaseg.split(",") if kv)}
    args.out.mkdir(parents=True, exist_ok=True)

    sections = load_sections()
    rows, cost = [], []
    joints = {}
    for harmony in (False, True):
        with measure() as m:
            joint = spaseg.pp.joint_normalize_pca(
                {k: v.copy() for k, v in sections.items()}, n_comps=args.n_comps, harmony=harmony
            )
        joints[harmony] = joint
        cost.append(dict(stage=f"joint_normalize_pca harmony={harmony}", seconds=m.seconds))
    n_genes = joints[False].uns["joint_pca"]["n_shared_genes"]

    joint_labels = pd.DataFrame(index=joints[False].obs_names)
    joint_labels["sample"] = joints[False].obs["sample"].astype(str)
    rows += harmony_leiden_rows(joints[True], args.seeds, joint_labels)
    rows += joint_rows(joints[False], "SpaSEG joint", args.seeds, joint_labels, extra)
    pd.DataFrame(rows).to_csv(args.out / "runs.tsv", sep="\t", index=False)  # so far
    joint_labels.to_csv(args.out / "joint_labels.tsv", sep="\t")
    if args.harmony_spaseg:
        variant = "SpaSEG joint + Harmony"
        rows += joint_rows(joints[True], variant, args.seeds, joint_labels, extra)
        joint_labels.to_csv(args.out / "joint_labels.tsv", sep="\t")

    if not args.skip_single:
        single = {name: pd.DataFrame(index=sections[name].obs_names) for name in LABELLED}
        rows += single_rows(sections, args.seeds, single)
        for name, table in single.items():
            table.to_csv(args.out / f"{name}_single_labels.tsv", sep="\t")

    df = pd.DataFrame(rows)
    df.to_csv(args.out / "runs.tsv", sep="\t", index=False)
    pd.set_option("display.width", 200)
    print(f"\n{len(SECTIONS)} sections, {n_genes} shared genes, {args.n_comps} PCs")
    print("\n## ARI vs layer_guess (7 domains), per seed\n")
    acc = df.pivot_table(index=["method", "section"], columns="seed", values="ari")
    acc["mean"], acc["min"], acc["max"] = acc.mean(axis=1), acc.min(axis=1), acc.max(axis=1)
    print(acc.round(3).to_markdown())
    print("\n## Mean ARI over 151673 and 151674 (all seeds)\n")
    print(df.groupby("method")["ari"].agg(["mean", "min", "max"]).round(3).to_markdown())
    print("\n## Time (s) and peak memory (MB) per run, mean over seeds\n")
    per_run = df.drop_duplicates(["method", "seed", "seconds"])
    print(per_run.groupby("method")[["seconds", "peak_mb"]].mean().round(1).to_markdown())
    print(pd.DataFrame(cost).round(2).to_markdown(index=False))
    print(f"\nJoint labels of all four sections: {args.out}/joint_labels.tsv")


if __name__ == "__main__":
    sc.settings.verbosity = 0
    main()
