"""Predicted vs measured peak memory of each per-section rule, at several section sizes.

The workflow asks the scheduler for ``mem_mb`` computed from each job's input
(``spaseg._resources``: spots and stored values of the ``.h5ad`` it reads). This script runs
the real workflow (this Snakefile, ``config/config.yaml`` as shipped) on simulated sections of
several sizes, one Snakemake run per size, reads every job's peak resident memory from its
process (the kernel's high-water mark, sampled every 0.25 s: Snakemake's own benchmark files
sample too rarely to see short peaks) and prints, per rule and size, what was predicted and
what was used. Target: measured <= predicted <= 2 x measured for every rule and size.

    .venv/bin/python benchmarks/resources.py                  # the table for RESULTS.md
    .venv/bin/python benchmarks/resources.py --sizes 1000x500 # a quick check
    .venv/bin/python benchmarks/resources.py --fit            # also fit the coefficients

``--fit`` prints, per rule, the least-squares line of peak MB on (spots, stored values) that
``spaseg._resources.MEMORY`` was set from (then rounded up with a margin).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.optimize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stereoseq_scale import watch_jobs  # noqa: E402

import spaseg  # noqa: E402
from spaseg._resources import (  # noqa: E402
    MEMORY,
    h5ad_size,
    predict_mem_mb,
    predict_runtime_min,
)
from spaseg.datasets._simulate import simulate_tissue  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Per-section rules and the file each one's memory is predicted from.
RULE_INPUT = {
    "load": None,  # the section's own .h5ad
    "qc": "raw.h5ad",
    "plot_qc": "qc.h5ad",
    "normalize_pca": "qc.h5ad",
    "spaseg_train": "pca.h5ad",
    "plot_domains": "domains.h5ad",
    "svg": "domains.h5ad",
}
FINAL = ["qc.png", "domains.png", "svg.tsv", "svg.png"]


def simulate(spots: int, genes: int, path: Path) -> None:
    """A square-grid section of about ``spots`` spots (full rectangle) and ``genes`` genes."""
    side = int(round(math.sqrt(spots)))
    adata = simulate_tissue(
        7, grid="square", n_rows=side, n_cols=side, shape="full", n_genes=genes, seed=0
    )
    adata.write_h5ad(path)


def run(size: tuple[int, int], folder: Path, cores: int) -> list[dict]:
    spots, genes = size
    sample = f"s{spots}x{genes}"
    data = folder / f"{sample}.h5ad"
    simulate(spots, genes, data)
    sheet = folder / "samples.tsv"
    pd.DataFrame([{"sample": sample, "path": str(data), "platform": "h5ad"}]).to_csv(
        sheet, sep="\t", index=False
    )
    results = folder / "results"
    targets = [str(results / sample / name) for name in FINAL]
    # raw.h5ad is temporary: keep it to read its size.
    command = [
        sys.executable, "-m", "snakemake", *targets, "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(folder), "--cores", str(cores), "--notemp",
        "--configfile", str(REPO / "config" / "config.yaml"),
        "--config", f"samples={sheet}", f"results={results}",
    ]  # fmt: skip
    print(f"  {sample}: running the workflow", flush=True)
    peaks: dict[str, tuple[float, float]] = {}
    stop = threading.Event()
    start = time.perf_counter()
    with open(folder / f"snakemake_{sample}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        watcher = threading.Thread(target=watch_jobs, args=(proc.pid, peaks, stop), daemon=True)
        watcher.start()
        code = proc.wait()
    stop.set()
    watcher.join()
    if code != 0:
        raise RuntimeError(f"workflow failed for {sample}: see {folder}/snakemake_{sample}.log")
    print(f"  {sample}: {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for rule, name in RULE_INPUT.items():
        n_obs, n_vars, nnz = h5ad_size(data if name is None else results / sample / name)
        bench = pd.read_csv(results / "benchmarks" / rule / f"{sample}.tsv", sep="\t")
        rows.append(
            dict(
                rule=rule,
                spots=n_obs,
                genes=n_vars,
                values_m=nnz / 1e6,
                measured_mb=peaks.get(rule, (np.nan,))[0],
                predicted_mb=predict_mem_mb(rule, n_obs, nnz),
                seconds=float(bench["s"].iloc[-1]),
                predicted_min=predict_runtime_min(rule, n_obs, nnz),
            )
        )
    return rows


def fit(table: pd.DataFrame) -> None:
    """Least-squares y = base + per_kspot * spots/1e3 + per_mvalue * values/1e6, per rule,
    for peak MB and for seconds (coefficients clipped at 0)."""
    for column in ("measured_mb", "seconds"):
        print(f"\nFitted {column} = base + per_kspot * kspots + per_mvalue * mvalues:")
        for rule, part in table.groupby("rule", sort=False):
            A = np.column_stack([np.ones(len(part)), part["spots"] / 1e3, part["values_m"]])
            coef, *_ = scipy.optimize.nnls(A, part[column].to_numpy())
            print(
                f"  {rule}: base {coef[0]:.1f}, per_kspot {coef[1]:.3f}, per_mvalue {coef[2]:.2f}"
            )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", default=["1000x2000", "4000x2000", "16000x2000", "16000x500", "40000x1000"],
        help="spots x genes of each simulated section",
    )  # fmt: skip
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/resources"))
    parser.add_argument("--fit", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        spots, genes = (int(x) for x in size.split("x"))
        folder = args.out / size
        folder.mkdir(parents=True, exist_ok=True)
        rows += run((spots, genes), folder, args.cores)
    table = pd.DataFrame(rows)
    table["ratio"] = table["predicted_mb"] / table["measured_mb"]
    table["ok"] = (table["ratio"] >= 1) & (table["ratio"] <= 2)
    table["time_ok"] = table["predicted_min"] * 60 >= table["seconds"]
    table.to_csv(args.out / "resources.tsv", sep="\t", index=False)
    print(f"\nspaseg {spaseg.__version__}; models: {MEMORY}")
    print(table.round(2).to_markdown(index=False))
    print(f"\nall within [1, 2] x measured: {bool(table['ok'].all())}")
    if args.fit:
        fit(table)


if __name__ == "__main__":
    main()
