"""Batch throughput: sections per hour through the local workflow, and a large dry run.

A core facility runs many Visium-size sections from one sample sheet. This script
simulates ``--sections`` sections (``--spots`` spots, ``--genes`` genes each), runs the real
workflow on them with the shipped ``config/config.yaml`` (``snakemake --cores N``), and prints
sections per hour and, per rule, the median seconds per job; the fixed cost of a job (starting
Python, imports, reading and writing the files) is the median seconds of the same rule on a
tiny section (``--tiny-spots``) in the same run. ``--dry-run N`` times a dry run of N sections
with ``profiles/slurm`` (the DAG a cluster run builds before submitting anything).

    .venv/bin/python benchmarks/batch.py --sections 48            # the issue's measurement
    .venv/bin/python benchmarks/batch.py --sections 8             # a shorter one
    .venv/bin/python benchmarks/batch.py --sections 0 --dry-run 1000
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from spaseg.datasets._simulate import simulate_tissue

REPO = Path(__file__).resolve().parents[1]


def write_sections(folder: Path, n: int, spots: int, genes: int, tiny_spots: int) -> Path:
    """``n`` simulated sections (other seeds) plus one tiny one; the sample sheet's path."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n + 1):
        tiny = k == n
        side = int(round(math.sqrt(tiny_spots if tiny else spots)))
        name = "tiny" if tiny else f"s{k:03d}"
        path = folder / f"{name}.h5ad"
        if not path.exists():
            section = simulate_tissue(
                7, grid="square", n_rows=side, n_cols=side, shape="full",
                n_genes=genes, seed=k,
            )  # fmt: skip
            section.write_h5ad(path)
        rows.append({"sample": name, "path": str(path), "platform": "h5ad"})
    sheet = folder / "samples.tsv"
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    return sheet


def snakemake(folder: Path, sheet: Path, *args: str) -> float:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(folder), "--configfile", str(REPO / "config" / "config.yaml"),
        "--config", f"samples={sheet}", f"results={folder / 'results'}", *args,
    ]  # fmt: skip
    start = time.perf_counter()
    with open(folder / "snakemake.log", "w") as log:
        done = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"snakemake failed: see {folder / 'snakemake.log'}")
    return time.perf_counter() - start


def job_seconds(results: Path) -> pd.DataFrame:
    rows = []
    for table in (results / "benchmarks").glob("*/*.tsv"):
        rule, sample = table.parent.name, table.stem
        rows.append(
            {"rule": rule, "sample": sample, "s": pd.read_csv(table, sep="\t")["s"].iloc[-1]}
        )
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", type=int, default=48)
    parser.add_argument("--spots", type=int, default=4000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--tiny-spots", type=int, default=144)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--dry-run", type=int, default=0, help="sections in a profiles/slurm dry run"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/batch"))
    args = parser.parse_args(argv)
    out = args.out.resolve()

    if args.sections:
        folder = out / f"run{args.sections}"
        sheet = write_sections(folder, args.sections, args.spots, args.genes, args.tiny_spots)
        wall = snakemake(folder, sheet, "--cores", str(args.cores))
        per_hour = (args.sections + 1) / wall * 3600
        jobs = job_seconds(folder / "results")
        tiny = jobs[jobs["sample"] == "tiny"].set_index("rule")["s"]
        full = jobs[jobs["sample"] != "tiny"].groupby("rule")["s"].median()
        table = pd.DataFrame({"median s per job": full, "fixed cost (tiny section) s": tiny})
        print(f"{args.sections} sections of {args.spots} spots x {args.genes} genes + 1 tiny, "
              f"--cores {args.cores}: {wall:.0f} s wall, {per_hour:.1f} sections per hour")  # fmt: skip
        print(table.round(2).to_markdown())
        print(f"sum of fixed costs per section: {tiny.sum():.1f} s of {full.sum():.1f} s")

    if args.dry_run:
        folder = out / f"dry{args.dry_run}"
        sheet = write_sections(folder, 1, args.spots, args.genes, args.tiny_spots)
        rows = pd.read_csv(sheet, sep="\t").iloc[:1]
        rows = pd.concat([rows] * args.dry_run, ignore_index=True)
        rows["sample"] = [f"s{k:04d}" for k in range(args.dry_run)]
        big_sheet = folder / "samples_dry.tsv"
        rows.to_csv(big_sheet, sep="\t", index=False)
        # --sdm env-modules: the profile's conda, without conda installed (no rule has modules).
        profile = ["--profile", str(REPO / "profiles" / "slurm"), "--sdm", "env-modules"]
        wall = snakemake(folder, big_sheet, "-n", *profile)
        print(f"dry run of {args.dry_run} sections with profiles/slurm: {wall:.1f} s")


if __name__ == "__main__":
    main()
