"""SpaSEG training on a GPU with the shipped defaults: the same labels twice, time, memory.

Two steps, because the GPU machine has PyTorch but not scanpy:

``prepare`` (here, full install) writes what training reads into ``--inputs`` (one ``.npz``
per section: principal components, grid coordinates, truth), from

- DLPFC 151673 and 151674 (``../shared/data/dlpfc``), through QC and PCA with
  ``config/config.yaml``;
- a whole simulated Stereo-seq chip: a ``pca.h5ad`` left by ``stereoseq_scale.py`` and its
  ``truth.tsv.gz`` (``--chip-pca``, ``--chip-truth``).

``run`` (on the GPU) trains each section with ``config/config.yaml``'s ``spaseg`` section on
``--device`` (``n_domains`` per section, as a sample sheet gives it: 7 on DLPFC, the simulated
number on the chip): twice with ``deterministic: true`` (labels and logits must be equal bit for
bit), once with ``deterministic: false`` (what determinism costs), and prints a table of
time, peak GPU memory and ARI; ``--hash-out`` writes the labels' hashes so a second process
can be compared with the first. Only ``spaseg.tl`` and AnnData are imported in ``run``.

    python benchmarks/gpu_check.py prepare --inputs .gpu \\
        --chip-pca /tmp/ssbench/runs/527000/results/sim_gem/pca.h5ad \\
        --chip-truth /tmp/ssbench/data/527000_g2000_d6_s0/truth.tsv.gz
    python benchmarks/gpu_check.py run --inputs .gpu --device cuda
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DLPFC = REPO.parent / "shared" / "data" / "dlpfc"
CHIP_BIN = 20  # stereoseq_scale.py bins the chip at bin20 and writes truth at that size


def shipped_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def prepare(args) -> None:
    import anndata as ad

    import spaseg

    config = shipped_config()
    args.inputs.mkdir(parents=True, exist_ok=True)
    for name in ("151673", "151674"):
        adata = spaseg.io.read_h5ad(DLPFC / f"{name}.h5ad", sample=name)
        spaseg.pp.qc(adata, **spaseg.pp.qc_filters(config["qc"]), sample=name)
        spaseg.pp.normalize_pca(adata, **config["pca"], seed=config["spaseg"]["seed"], sample=name)
        truth = adata.obs["layer_guess"].astype(str).to_numpy()
        np.savez_compressed(
            args.inputs / f"dlpfc_{name}.npz",
            pcs=adata.obsm["X_pca"].astype(np.float32),
            array_row=adata.obs["array_row"].to_numpy(),
            array_col=adata.obs["array_col"].to_numpy(),
            truth=np.where(truth == "NA", "", truth).astype(str),
            n_domains=7,  # the annotation's six layers and white matter
        )
    if args.chip_pca:
        chip = ad.read_h5ad(args.chip_pca, backed="r")
        obs = chip.obs[["bin_x", "bin_y", "array_row", "array_col"]].reset_index(drop=True)
        truth = pd.read_csv(args.chip_truth, sep="\t")
        truth = truth.loc[truth["bin_size"] == CHIP_BIN, ["bin_x", "bin_y", "domain"]]
        if truth.empty:
            raise SystemExit(f"{args.chip_truth} has no truth at bin size {CHIP_BIN}")
        scored = obs.merge(truth, on=["bin_x", "bin_y"], how="left")
        np.savez(
            args.inputs / f"chip_{chip.n_obs}.npz",
            pcs=np.asarray(chip.obsm["X_pca"], dtype=np.float32),
            array_row=obs["array_row"].to_numpy(np.int32),
            array_col=obs["array_col"].to_numpy(np.int32),
            truth=scored["domain"].fillna(-1).to_numpy(np.int16),  # -1: background
            n_domains=truth.loc[truth["domain"] >= 0, "domain"].nunique(),  # as stereoseq_scale
        )
    print(sorted(p.name for p in args.inputs.glob("*.npz")))


def run(args) -> None:
    import torch
    from anndata import AnnData
    from sklearn.metrics import adjusted_rand_score

    from spaseg.tl import spaseg as train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    skip = ("deterministic", "n_domains")  # set per section (the sample sheet's job)
    settings = {k: v for k, v in shipped_config()["spaseg"].items() if k not in skip}
    settings.update(device=args.device, log_every=0)
    rows, hashes = [], {}
    for path in sorted(args.inputs.glob("*.npz")):
        if args.only and not any(o in path.stem for o in args.only):
            continue
        data = np.load(path)
        obs = pd.DataFrame({"array_row": data["array_row"], "array_col": data["array_col"]})
        adata = AnnData(obs=obs.set_axis(obs.index.astype(str)))
        adata.obsm["X_pca"] = data["pcs"]
        truth = data["truth"].astype(str)
        labelled = (truth != "") & (truth != "-1")
        outputs = []
        for deterministic in (True, True, False):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            try:
                out = train(
                    adata,
                    n_domains=int(data["n_domains"]),
                    deterministic=deterministic,
                    copy=True,
                    **settings,
                )
            except RuntimeError as error:  # e.g. a kernel with no deterministic version
                print(f"{path.stem} deterministic={deterministic}: {error}", flush=True)
                break
            seconds = time.perf_counter() - start
            peak = torch.cuda.max_memory_allocated() / 2**20 if args.device != "cpu" else 0
            labels = out.obs["domain"].to_numpy().astype(int)
            outputs.append(out)
            info = out.uns["spaseg"]
            rows.append(
                dict(
                    section=path.stem,
                    spots=adata.n_obs,
                    deterministic=deterministic,
                    seconds=round(seconds, 1),
                    peak_gpu_mb=round(peak),
                    runs=info["n_runs_used"],
                    iterations=int(np.sum(info["iterations"])),
                    ari=round(adjusted_rand_score(truth[labelled], labels[labelled]), 3)
                    if labelled.any()
                    else np.nan,
                )
            )
            print(rows[-1], flush=True)
        if len(outputs) < 3:
            continue
        first, second = outputs[0], outputs[1]
        same_labels = bool((first.obs["domain"] == second.obs["domain"]).all())
        same_logits = bool(
            np.array_equal(first.obsm["spaseg_embedding"], second.obsm["spaseg_embedding"])
        )
        same_runs = bool(np.array_equal(first.obsm["spaseg_runs"], second.obsm["spaseg_runs"]))
        rows[-3].update(same_labels=same_labels, same_logits=same_logits, same_runs=same_runs)
        nondet = outputs[2]
        rows[-1].update(
            same_labels=bool((first.obs["domain"] == nondet.obs["domain"]).all()),
            same_logits=bool(
                np.array_equal(first.obsm["spaseg_embedding"], nondet.obsm["spaseg_embedding"])
            ),
        )
        hashes[path.stem] = hashlib.sha256(
            np.ascontiguousarray(first.obsm["spaseg_embedding"]).tobytes()
        ).hexdigest()
        env = {k: first.uns["spaseg"][k] for k in ("device", "device_name", "deterministic")}
        print(json.dumps({**env, "versions": first.uns["spaseg"]["versions"]}), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))
    if args.hash_out:
        previous = json.loads(args.hash_out.read_text()) if args.hash_out.exists() else {}
        for key, value in hashes.items():
            if key in previous:
                same = previous[key] == value
                print(
                    f"{key}: embedding hash {'equal to' if same else 'DIFFERS from'} last process"
                )
        args.hash_out.write_text(json.dumps({**previous, **hashes}, indent=1))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--inputs", type=Path, required=True)
    p.add_argument("--chip-pca", type=Path)
    p.add_argument("--chip-truth", type=Path)
    r = sub.add_parser("run")
    r.add_argument("--inputs", type=Path, required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--only", nargs="*", help="sections whose file name contains one of these")
    r.add_argument("--hash-out", type=Path)
    args = parser.parse_args(argv)
    prepare(args) if args.step == "prepare" else run(args)


if __name__ == "__main__":
    main()
