"""Joint SpaSEG on DLPFC 151673-151676 as one group: accuracy, time and memory.

    python benchmarks/dlpfc_multislice.py [--seeds 0 1 2 3 4] [--out benchmarks/out/dlpfc_multislice]

The four sections are analysed as one group (shared genes, joint normalisation and PCA,
per-section standardisation, one network, one label set). Scored: ARI against ``layer_guess``
on 151673 and 151674, the labelled sections ("NA" left out). 151675 and 151676 have no labels
here; their joint labels are written to ``joint_labels.tsv`` in the output folder for
independent scoring and were never looked at for tuning. In the same run, on the same data:
single-section SpaSEG on 151673 and 151674, and Harmony + Leiden on the joint PCs (resolution
bisected to 7 clusters). SpaSEG, PCA, ``--scale`` and ``--harmony`` follow
``config/config.yaml`` as shipped; F1-LISI (:func:`spaseg.tl.f1_lisi`) scores each joint
embedding's section mixing and domain separation over the four sections.

``--parts`` picks what runs (default ``leiden joint single``; ``joint`` trains on
Harmony-corrected PCs with ``--harmony``, as ``group.harmony: true`` ships, and on the joint
PCs with ``--no-harmony``; ``harmony`` adds joint SpaSEG on Harmony-corrected PCs);
``--scale``, ``--n-comps`` and ``--spaseg k=v,...`` change the joint settings, ``--pca
k=v,...`` the ``pca`` section of both joint and single runs (e.g. ``exclude_genes='<file>'``).
Runs are deterministic for a given seed and thread count, so the parts and seeds can be split
over several processes (each with its own ``--out``) and their tables printed together with
``--report DIR DIR ...``.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402
from dlpfc import DATA, leiden_n_clusters, shipped_config  # noqa: E402
from dlpfc import score as ari_nmi  # noqa: E402

import spaseg  # noqa: E402

log = logging.getLogger("benchmark")
SECTIONS = ("151673", "151674", "151675", "151676")
LABELLED = ("151673", "151674")
PARTS = ("leiden", "joint", "harmony", "single")
CONFIG = shipped_config()
#: config/config.yaml's spaseg settings (seed and n_domains are set per run)
SHIPPED_SPASEG = {k: v for k, v in CONFIG["spaseg"].items() if k not in ("seed", "n_domains")}


def score(truth, labels) -> float:
    return ari_nmi(truth, labels)[0]


def lisi_columns(adata, use_rep: str, label_key: str) -> dict:
    """F1-LISI of an embedding with its labels (spaseg.tl.f1_lisi), as row columns."""
    result = spaseg.tl.f1_lisi(adata, label_key=label_key, use_rep=use_rep, copy=True)
    return {
        "f1_lisi": result["f1"],
        "ilisi": result["ilisi_scaled"],
        "clisi": result["clisi_scaled"],
    }


def load_sections() -> dict:
    sections = {}
    for name in SECTIONS:
        adata = spaseg.io.read_h5ad(DATA / f"{name}.h5ad", sample=name)
        sections[name] = spaseg.pp.qc(adata, sample=name, copy=True)
    return sections


def truth_of(adata, name: str) -> pd.Series:
    return adata.obs["layer_guess"].astype(str)


def joint_rows(joint, variant: str, seeds, labels: pd.DataFrame, kwargs: dict) -> list[dict]:
    """Joint SpaSEG for each seed; ARI per labelled section."""
    rows = []
    use_rep = joint.uns["joint_pca"]["use_rep"]
    sample = joint.obs["sample"].astype(str)
    for seed in seeds:
        cpu = time.process_time()
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
        cpu = time.process_time() - cpu
        labels[f"{variant}_seed{seed}"] = joint.obs["domain"].astype(str)
        lisi = lisi_columns(joint, "spaseg_embedding", "domain")
        info = joint.uns["spaseg"]
        log.warning(
            "%s seed %d: %.0f s (CPU %.0f s), iterations %s, labels at stop %s",
            variant,
            seed,
            m.seconds,
            cpu,
            info["iterations"].tolist(),
            info["labels_at_stop"].tolist(),
        )
        for name in LABELLED:
            sel = (sample == name).to_numpy()
            truth = joint.obs["layer_guess"][sel].astype(str)
            rows.append(
                dict(
                    section=name,
                    method=variant,
                    seed=seed,
                    ari=score(truth, joint.obs["domain"][sel]),
                    nmi=ari_nmi(truth, joint.obs["domain"][sel])[1],
                    seconds=m.seconds,
                    cpu_s=cpu,
                    peak_mb=m.peak_mb,
                    **lisi,
                )
            )
        log.warning(
            "%s seed %d: ARI %s, F1-LISI %.3f",
            variant, seed, [round(r["ari"], 3) for r in rows[-2:]], lisi["f1_lisi"],
        )  # fmt: skip
    return rows


def single_rows(sections: dict, seeds, labels: dict) -> list[dict]:
    """The single-section path (library defaults) on the labelled sections."""
    rows = []
    for name in LABELLED:
        adata = sections[name].copy()
        spaseg.pp.normalize_pca(adata, **CONFIG["pca"], seed=CONFIG["spaseg"]["seed"], sample=name)
        for seed in seeds:
            cpu = time.process_time()
            with measure() as m:
                spaseg.tl.spaseg(
                    adata, n_domains=7, seed=seed, sample=name, log_every=0, **SHIPPED_SPASEG
                )
            cpu = time.process_time() - cpu
            labels[name][f"single_seed{seed}"] = adata.obs["domain"].astype(str)
            rows.append(
                dict(
                    section=name,
                    method="SpaSEG single section",
                    seed=seed,
                    ari=score(truth_of(adata, name), adata.obs["domain"]),
                    nmi=ari_nmi(truth_of(adata, name), adata.obs["domain"])[1],
                    seconds=m.seconds,
                    cpu_s=cpu,
                    peak_mb=m.peak_mb,
                )
            )
            log.warning(
                "single %s seed %d: %.0f s, ARI %.3f", name, seed, m.seconds, rows[-1]["ari"]
            )
    return rows


def harmony_leiden_rows(joint, seeds, labels: pd.DataFrame) -> list[dict]:
    rows = []
    sample = joint.obs["sample"].astype(str)
    rep = joint.copy()
    rep.obsm["X_pca"] = joint.obsm["X_pca_harmony"]
    for seed in seeds:
        cpu = time.process_time()
        with measure() as m:
            ld = leiden_n_clusters(rep, 7, seed, transformer="sklearn")
        cpu = time.process_time() - cpu
        labels[f"harmony_leiden_seed{seed}"] = ld
        rep.obs["leiden"] = pd.Categorical(np.asarray(ld).astype(str))
        lisi = lisi_columns(rep, "X_pca", "leiden")
        for name in LABELLED:
            sel = (sample == name).to_numpy()
            rows.append(
                dict(
                    section=name,
                    method="Harmony + Leiden",
                    seed=seed,
                    ari=score(joint.obs["layer_guess"][sel].astype(str), np.asarray(ld)[sel]),
                    nmi=ari_nmi(joint.obs["layer_guess"][sel].astype(str), np.asarray(ld)[sel])[1],
                    seconds=m.seconds,
                    cpu_s=cpu,
                    peak_mb=m.peak_mb,
                    **lisi,
                )
            )
    return rows


def options(args) -> str:
    """The joint settings that differ from the defaults, for the method names."""
    extra = [f"{args.n_comps} PCs"] if args.n_comps != 15 else []
    extra += ["scaled PCA"] if args.scale else []
    extra += [args.spaseg] if args.spaseg else []
    extra += [f"pca {args.pca}"] if args.pca else []
    return f" ({', '.join(extra)})" if extra else ""


def print_tables(df: pd.DataFrame) -> None:
    """Accuracy, time and memory tables of the rows of one or more runs."""
    pd.set_option("display.width", 200)
    print("\n## ARI vs layer_guess (7 domains), per seed\n")
    acc = df.pivot_table(index=["method", "section"], columns="seed", values="ari")
    acc["mean"], acc["min"], acc["max"] = acc.mean(axis=1), acc.min(axis=1), acc.max(axis=1)
    print(acc.round(3).to_markdown())
    print("\n## Mean ARI over 151673 and 151674 (all seeds), NMI beside\n")
    summary = df.groupby("method")["ari"].agg(["mean", "min", "max"])
    if "nmi" in df:
        summary["nmi"] = df.groupby("method")["nmi"].mean()
    print(summary.round(3).to_markdown())
    if "f1_lisi" in df:
        print("\n## F1-LISI of the joint embedding over all four sections (mean over seeds)\n")
        print("ilisi: section mixing, clisi: domain separation (scaled, 1 best); per-section")
        print("runs have no shared labels or embedding, so no F1-LISI.\n")
        lisi = df.dropna(subset=["f1_lisi"]).drop_duplicates(["method", "seed"])
        print(lisi.groupby("method")[["f1_lisi", "ilisi", "clisi"]].mean().round(3).to_markdown())
    print("\n## Time per run (wall s, process CPU s) and peak memory (MB), mean over seeds\n")
    per_run = df.drop_duplicates(["method", "seed", "seconds"])
    columns = [c for c in ("seconds", "cpu_s", "peak_mb") if c in df]
    print(per_run.groupby("method")[columns].mean().round(1).to_markdown())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/dlpfc_multislice"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-comps", type=int, default=15, help="joint PCs")
    parser.add_argument(
        "--scale",
        action=argparse.BooleanOptionalAction,
        default=CONFIG["group"]["scale"],
        help="joint PCA on gene-scaled data (default: group.scale of config/config.yaml)",
    )
    parser.add_argument(
        "--harmony",
        action=argparse.BooleanOptionalAction,
        default=CONFIG["group"]["harmony"],
        help="part joint on Harmony-corrected PCs (default: group.harmony of config/config.yaml)",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=["leiden", "joint", "single"],
        help="leiden: Harmony + Leiden; joint: joint SpaSEG; harmony: joint SpaSEG on Harmony "
        "PCs; single: single-section SpaSEG",
    )
    parser.add_argument("--spaseg", default="", help="extra joint spaseg.tl.spaseg kwargs, k=v,...")
    parser.add_argument(
        "--pca", default="", help="override config pca keys (joint and single), k=v,..."
    )
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        help="only print the tables of earlier runs (their --out folders) together",
    )
    args = parser.parse_args(argv)
    if args.report:
        tables = []
        for folder in args.report:  # name the joint runs by the settings they ran with
            table = pd.read_csv(folder / "runs.tsv", sep="\t")
            ran = parser.parse_args((folder / "command.txt").read_text().split()[1:])
            joint = table["method"].str.startswith(("SpaSEG joint", "Harmony + Leiden"))
            if not table.loc[joint, "method"].str.endswith(")").any():  # runs named before
                table.loc[joint, "method"] += options(ran)
            tables.append(table)
        df = pd.concat(tables)
        key = ["method", "section", "seed"]
        if df.groupby(key)["ari"].nunique().max() > 1:
            sys.exit("the folders disagree on a run's ARI (different settings or code?)")
        print_tables(df.drop_duplicates(key, keep="last"))  # a rerun of a run: keep one
        return
    if not DATA.exists():
        sys.exit(f"DLPFC data not found at {DATA}")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    extra = {
        k: ast.literal_eval(v) for k, v in (kv.split("=") for kv in args.spaseg.split(",") if kv)
    }
    extra = {**SHIPPED_SPASEG, **extra}  # config/config.yaml as shipped, then the overrides
    CONFIG["pca"].update(
        {k: ast.literal_eval(v) for k, v in (kv.split("=") for kv in args.pca.split(",") if kv)}
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "command.txt").write_text(" ".join(sys.argv) + "\n")
    load_start = os.getloadavg()

    sections = load_sections()
    rows, cost = [], []
    joints = {}
    parts = set(args.parts)
    need_harmony = bool({"leiden", "harmony"} & parts) or (args.harmony and "joint" in parts)
    need_plain = not need_harmony or ("joint" in parts and not args.harmony)
    for harmony in [h for h, need in ((False, need_plain), (True, need_harmony)) if need]:
        with measure() as m:
            joint = spaseg.pp.joint_normalize_pca(  # as rule joint_pca: the pca section
                {k: v.copy() for k, v in sections.items()},
                **{**CONFIG["pca"], "n_comps": args.n_comps, "scale": args.scale},
                harmony=harmony,
            )
        joints[harmony] = joint
        cost.append(dict(stage=f"joint_normalize_pca harmony={harmony}", seconds=m.seconds))
    first = next(iter(joints.values()))
    n_genes = first.uns["joint_pca"]["n_shared_genes"]

    joint_labels = pd.DataFrame(index=first.obs_names)
    joint_labels["sample"] = first.obs["sample"].astype(str)

    def save():
        pd.DataFrame(rows).to_csv(args.out / "runs.tsv", sep="\t", index=False)
        joint_labels.to_csv(args.out / "joint_labels.tsv", sep="\t")

    if "leiden" in args.parts:
        leiden = harmony_leiden_rows(joints[True], args.seeds, joint_labels)
        rows += [{**row, "method": row["method"] + options(args)} for row in leiden]
        save()
    if "joint" in args.parts:
        variant = ("SpaSEG joint + Harmony" if args.harmony else "SpaSEG joint") + options(args)
        rows += joint_rows(joints[args.harmony], variant, args.seeds, joint_labels, extra)
        save()
    if "harmony" in args.parts:
        variant = "SpaSEG joint + Harmony" + options(args)
        rows += joint_rows(joints[True], variant, args.seeds, joint_labels, extra)
        save()
    if "single" in args.parts:
        single = {name: pd.DataFrame(index=sections[name].obs_names) for name in LABELLED}
        rows += single_rows(sections, args.seeds, single)
        save()
        for name, table in single.items():
            table.to_csv(args.out / f"{name}_single_labels.tsv", sep="\t")

    print(f"\n{len(SECTIONS)} sections, {n_genes} shared genes, {args.n_comps} joint PCs")
    print(f"joint options: scale={args.scale}, harmony={args.harmony}, spaseg={extra}")
    print(f"seeds {args.seeds}")
    print_tables(pd.DataFrame(rows))
    print()
    print(pd.DataFrame(cost).round(2).to_markdown(index=False))
    load_end = os.getloadavg()
    print(f"\nLoad average (1/5/15 min) at start {load_start}, at end {load_end}")
    print(f"Joint labels of all four sections: {args.out}/joint_labels.tsv")


if __name__ == "__main__":
    sc.settings.verbosity = 0
    main()
