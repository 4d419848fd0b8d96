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
``spaseg._resources.MEMORY`` was set from (then rounded up with a margin). ``--gem`` adds
Stereo-seq GEM files (rule bin, sized from the file) and ``--group`` a group of serial
sections (the joint rules, sized with the per-section model of the same step). ``--c2l``
runs cell2location on simulated sections and references (spots x genes x reference cells),
``--cci`` rule cci, ``--multiqc`` MultiQC on batches of that many synthetic sections.

    .venv/bin/python benchmarks/resources.py --sizes --gem 200x150 400x300 --group 3x8000x2000
    .venv/bin/python benchmarks/resources.py --sizes --multiqc 48 1000 5000
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.optimize
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_watched  # noqa: E402

import spaseg  # noqa: E402
from spaseg._resources import (  # noqa: E402
    MEMORY,
    h5ad_size,
    predict_bin_mem_mb,
    predict_bin_runtime_min,
    predict_c2l_map_runtime_min,
    predict_mem_mb,
    predict_multiqc_mem_mb,
    predict_multiqc_runtime_min,
    predict_runtime_min,
)
from spaseg.datasets import write_stereoseq  # noqa: E402
from spaseg.datasets._sim_cci import write_cci  # noqa: E402
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


def simulate(spots: int, genes: int, path: Path, seed: int = 0) -> None:
    """A square-grid section of about ``spots`` spots (full rectangle) and ``genes`` genes."""
    side = int(round(math.sqrt(spots)))
    adata = simulate_tissue(
        7, grid="square", n_rows=side, n_cols=side, shape="full", n_genes=genes, seed=seed
    )
    adata.write_h5ad(path)


def workflow(
    folder: Path, rows: list[dict], targets: list[str], cores: int, name: str, config=None
) -> dict:
    """Run the workflow on a sample sheet of ``rows`` (``config``: settings over the shipped
    config); peak MB per rule (the max over its jobs)."""
    sheet = folder / "samples.tsv"
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    results = folder / "results"
    # raw.h5ad is temporary: keep it to read its size.
    command = [
        sys.executable, "-m", "snakemake", *targets, "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(folder), "--cores", str(cores), "--notemp",
        "--configfile", str(REPO / "config" / "config.yaml"),
        "--config", f"samples={sheet}", f"results={results}",
    ]  # fmt: skip
    if config:
        (folder / "override.yaml").write_text(yaml.safe_dump(config))
        command[command.index("--config") : command.index("--config")] = [
            str(folder / "override.yaml")
        ]
    print(f"  {name}: running the workflow", flush=True)
    code, seconds, peaks = run_watched(command, folder / f"snakemake_{name}.log", cwd=REPO)
    if code != 0:
        raise RuntimeError(f"workflow failed for {name}: see {folder}/snakemake_{name}.log")
    print(f"  {name}: {seconds:.0f} s", flush=True)
    return peaks


def bench_seconds(results: Path, rule: str, name: str) -> float:
    return float(pd.read_csv(results / "benchmarks" / rule / f"{name}.tsv", sep="\t")["s"].iloc[-1])


def run(size: tuple[int, int], folder: Path, cores: int) -> list[dict]:
    spots, genes = size
    sample = f"s{spots}x{genes}"
    data = folder / f"{sample}.h5ad"
    simulate(spots, genes, data)
    results = folder / "results"
    rows = [{"sample": sample, "path": str(data), "platform": "h5ad"}]
    peaks = workflow(folder, rows, [str(results / sample / n) for n in FINAL], cores, sample)
    rows = []
    for rule, name in RULE_INPUT.items():
        n_obs, n_vars, nnz = h5ad_size(data if name is None else results / sample / name)
        rows.append(
            dict(
                rule=rule,
                spots=n_obs,
                genes=n_vars,
                values_m=nnz / 1e6,
                measured_mb=peaks.get(rule, (np.nan,))[0],
                predicted_mb=predict_mem_mb(rule, n_obs, nnz),
                seconds=bench_seconds(results, rule, sample),
                predicted_min=predict_runtime_min(rule, n_obs, nnz),
            )
        )
    return rows


def run_gem(size: tuple[int, int], folder: Path, cores: int) -> list[dict]:
    """Rule bin on a simulated GEM of ``size`` bin20 bins (its memory: from the file size)."""
    name = f"gem{size[0]}x{size[1]}"
    gem = write_stereoseq(folder / name, n_bins=size, n_genes=2000, formats=("gem",))["gem"]
    rows = [{"sample": name, "path": str(gem), "platform": "stereo-seq", "bin_size": 20}]
    results = folder / "results"
    peaks = workflow(folder, rows, [str(results / name / "binned.h5ad")], cores, name)
    size_mb = gem.stat().st_size / 2**20
    n_obs, n_vars, nnz = h5ad_size(results / name / "binned.h5ad")
    return [
        dict(
            rule="bin", spots=n_obs, genes=n_vars, values_m=nnz / 1e6, input_mb=size_mb,
            measured_mb=peaks["bin"][0], predicted_mb=predict_bin_mem_mb(size_mb),
            seconds=bench_seconds(results, "bin", name),
            predicted_min=predict_bin_runtime_min(size_mb),
        )
    ]  # fmt: skip


#: Joint rules (each sized with the model of the same per-section step, spaseg._resources.JOINT)
#: and the file they read (None: every section's qc.h5ad).
GROUP_RULES = {
    "joint_pca": None,
    "joint_spaseg": "pca.h5ad",
    "svg_group": "domains.h5ad",
    "plot_group": "domains.h5ad",
    "align": "labels.h5ad",
}


def run_group(n: int, size: tuple[int, int], folder: Path, cores: int) -> list[dict]:
    """A group of ``n`` serial sections of ``size``: the joint rules' peaks."""
    spots, genes = size
    rows = []
    for k in range(n):
        path = folder / f"g{k}.h5ad"
        simulate(spots, genes, path, seed=k)
        rows.append({"sample": f"g{k}", "path": str(path), "platform": "h5ad", "group": "g"})
    results = folder / "results"
    targets = [str(results / "groups" / "g" / name) for name in ("svg.tsv", "domains.png")]
    peaks = workflow(folder, rows, targets, cores, "group")
    table = []
    for rule, name in GROUP_RULES.items():
        files = (
            [results / r["sample"] / "qc.h5ad" for r in rows]
            if name is None
            else [results / "groups" / "g" / name]
        )
        sizes = [h5ad_size(f) for f in files]
        n_obs, nnz = sum(s[0] for s in sizes), sum(s[2] for s in sizes)
        table.append(
            dict(
                rule=rule, spots=n_obs, genes=sizes[0][1], values_m=nnz / 1e6,
                measured_mb=peaks.get(rule, (np.nan,))[0],
                predicted_mb=predict_mem_mb(rule, n_obs, nnz, max(s[1] for s in sizes)),
                seconds=bench_seconds(results, rule, "g"),
                predicted_min=predict_runtime_min(rule, n_obs, nnz),
            )
        )  # fmt: skip
    return table


def lr_gene_names(n: int) -> list[str]:
    """``n`` gene names, the genes of the shipped L-R resource first (so that rule cci scores
    as many pairs as on a real human section), then made-up ones."""
    from spaseg.tl import load_resource

    table = load_resource("consensus")
    genes = pd.unique(pd.concat([table["ligand"], table["receptor"]]).str.split("_").explode())
    names = list(genes[:n])
    return names + [f"NOTLR{k}" for k in range(n - len(names))]


def run_cci(size: tuple[int, int], folder: Path, cores: int) -> list[dict]:
    """Rule cci (no cell2location: ``cci.run: true``) on a section whose genes are L-R genes."""
    spots, genes = size
    name = f"cci{spots}x{genes}"
    data = folder / f"{name}.h5ad"
    side = int(round(math.sqrt(spots)))
    adata = simulate_tissue(
        7, grid="square", n_rows=side, n_cols=side, shape="full", n_genes=genes, seed=0
    )
    adata.var_names = lr_gene_names(adata.n_vars)
    adata.var["gene_symbols"] = adata.var_names  # the simulator's own symbols would win
    adata.write_h5ad(data)
    results = folder / "results"
    rows = [{"sample": name, "path": str(data), "platform": "h5ad"}]
    targets = [str(results / name / "cci" / "pairs.tsv")]
    peaks = workflow(folder, rows, targets, cores, name, config={"cci": {"run": True}})
    n_obs, n_vars, nnz = h5ad_size(results / name / "domains.h5ad")
    n_pairs = len(pd.read_csv(results / name / "cci" / "pairs.tsv", sep="\t")["pair"].unique())
    return [
        dict(
            rule="cci", spots=n_obs, genes=n_vars, values_m=nnz / 1e6, pairs=n_pairs,
            measured_mb=peaks["cci"][0],
            predicted_mb=predict_mem_mb("cci", n_obs, nnz),
            seconds=bench_seconds(results, "cci", name),
            predicted_min=predict_runtime_min("cci", n_obs, nnz),
        )
    ]  # fmt: skip


def run_c2l(size: tuple[int, ...], folder: Path, cores: int, epochs: int) -> list[dict]:
    """cell2location (reference, then mapping) on a simulated section of about ``size``
    (spots x genes, then optionally reference cells: 960 if not given; 12 cell types) and its
    reference, ``epochs`` mapping epochs (memory does not depend on them: every epoch holds the
    same tensors)."""
    spots, genes, cells = (*size, 960)[:3]
    name = f"c2l{spots}x{genes}"
    paths = write_cci(
        folder / name, n_cell_types=12, n_genes=genes, n_markers=genes // 24,
        n_cells_per_type=cells // 12, n_rows=int(round(math.sqrt(spots / 0.866))),
        n_planted=2, n_controls=2, seed=0,
    )  # fmt: skip
    results = folder / "results"
    rows = [{"sample": name, "path": str(paths["section"]), "platform": "h5ad"}]
    targets = [str(results / name / "cell2location.h5ad")]
    settings = {"reference": str(paths["reference"]), "map_max_epochs": epochs}
    peaks = workflow(folder, rows, targets, cores, name, config={"cell2location": settings})
    table = []
    for rule, file in (("c2l_reference", paths["reference"]), ("c2l_map", None)):
        sizes = [h5ad_size(file)] if file else [h5ad_size(results / name / "qc.h5ad")]
        n_obs, n_vars, nnz = sizes[0]
        bench = "reference" if rule == "c2l_reference" else name
        table.append(
            dict(
                rule=rule, spots=n_obs, genes=n_vars, values_m=nnz / 1e6,
                measured_mb=peaks[rule][0],
                predicted_mb=predict_mem_mb(rule, n_obs, nnz, n_vars),
                seconds=bench_seconds(results, rule, bench),
                predicted_min=(
                    predict_c2l_map_runtime_min(n_obs, n_vars, epochs)
                    if rule == "c2l_map"
                    else predict_runtime_min(rule, n_obs, nnz)
                ),
            )
        )  # fmt: skip
    return table


def multiqc_child(n_sections: int) -> None:
    """In a fresh process: MultiQC's custom content for a batch of ``n_sections`` synthetic
    sections and MultiQC on it, as rule multiqc runs them; print seconds and peak RSS."""
    import tempfile
    import time

    import multiqc
    from multiqc.core.update_config import ClConfig

    from spaseg._batch import SPOT_FILTERS, write_multiqc

    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "sample": [f"s{k:05d}" for k in range(n_sections)],
            "spots_after_qc": rng.integers(1000, 5000, n_sections),
            "median_genes": rng.integers(500, 3000, n_sections),
            "domains": 7,
            "status": "done",
            **{f"removed_{f}": rng.integers(0, 100, n_sections) for f in SPOT_FILTERS},
        }
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        content = write_multiqc(table, Path(scratch) / "content")
        config = ClConfig(output_dir=str(Path(scratch) / "out"), force=True, quiet=True)
        assert multiqc.run(*map(str, content), cfg=config).sys_exit_code == 0
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024
    print(f"{time.perf_counter() - start:.2f} {hwm:.1f}")


def run_multiqc(n_sections: int) -> list[dict]:
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--multiqc-child", str(n_sections)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    seconds, peak = float(out[-2]), float(out[-1])
    return [
        dict(
            rule="multiqc", spots=n_sections, genes=0, values_m=0.0, measured_mb=peak,
            predicted_mb=predict_multiqc_mem_mb(n_sections), seconds=seconds,
            predicted_min=predict_multiqc_runtime_min(n_sections),
        )
    ]  # fmt: skip


def fit(table: pd.DataFrame) -> None:
    """Least-squares y = base + per_kspot * spots/1e3 + per_mvalue * values/1e6, per rule,
    for peak MB and for seconds (coefficients clipped at 0); then the same with a
    per_sqrt_mvalue * sqrt(values/1e6) term (for rules that grow more slowly than linearly),
    and with a per_kgene * genes/1e3 term instead (c2l_reference: parameters per gene)."""
    extras = {
        "": [],
        " + per_sqrt_mvalue * sqrt(mvalues)": [
            ("per_sqrt_mvalue", lambda t: np.sqrt(t["values_m"]))
        ],
        " + per_kgene * kgenes": [("per_kgene", lambda t: t["genes"] / 1e3)],
    }
    for column in ("measured_mb", "seconds"):
        for extra, terms_extra in extras.items():
            print(f"\nFitted {column} = base + per_kspot * kspots + per_mvalue * mvalues{extra}:")
            for rule, part in table.groupby("rule", sort=False):
                terms = [np.ones(len(part)), part["spots"] / 1e3, part["values_m"]]
                terms += [make(part) for _, make in terms_extra]
                coef, *_ = scipy.optimize.nnls(np.column_stack(terms), part[column].to_numpy())
                names = ["base", "per_kspot", "per_mvalue", *(n for n, _ in terms_extra)]
                print(
                    f"  {rule}: "
                    + ", ".join(f"{n} {c:.3f}" for n, c in zip(names, coef, strict=True))
                )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="*", default=["1000x2000", "4000x2000", "16000x2000", "16000x500", "40000x1000"],
        help="spots x genes of each simulated section",
    )  # fmt: skip
    parser.add_argument("--gem", nargs="*", default=[], help="bin20 bins (cols x rows) of GEMs")
    parser.add_argument("--group", default=None, help="sections x spots x genes of one group")
    parser.add_argument("--cci", nargs="*", default=[], help="spots x genes for rule cci")
    parser.add_argument(
        "--c2l", nargs="*", default=[], help="spots x genes[x reference cells] for cell2location"
    )
    parser.add_argument("--c2l-epochs", type=int, default=300, help="mapping epochs (--c2l)")
    parser.add_argument(
        "--multiqc", nargs="*", type=int, default=[], help="sections in the batch (rule multiqc)"
    )
    parser.add_argument("--multiqc-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/resources"))
    parser.add_argument("--fit", action="store_true")
    args = parser.parse_args(argv)
    if args.multiqc_child is not None:
        return multiqc_child(args.multiqc_child)
    rows = []
    for size in args.sizes:
        spots, genes = (int(x) for x in size.split("x"))
        folder = args.out / size
        folder.mkdir(parents=True, exist_ok=True)
        rows += run((spots, genes), folder, args.cores)
    for size in args.gem:
        folder = args.out / f"gem{size}"
        folder.mkdir(parents=True, exist_ok=True)
        rows += run_gem(tuple(int(x) for x in size.split("x")), folder, args.cores)
    if args.group:
        n, spots, genes = (int(x) for x in args.group.split("x"))
        folder = args.out / f"group{args.group}"
        folder.mkdir(parents=True, exist_ok=True)
        rows += run_group(n, (spots, genes), folder, args.cores)
    for size in args.cci:
        folder = args.out / f"cci{size}"
        folder.mkdir(parents=True, exist_ok=True)
        rows += run_cci(tuple(int(x) for x in size.split("x")), folder, args.cores)
    for size in args.c2l:
        folder = args.out / f"c2l{size}"
        folder.mkdir(parents=True, exist_ok=True)
        size = tuple(int(x) for x in size.split("x"))
        rows += run_c2l(size, folder, args.cores, args.c2l_epochs)
    for n_sections in args.multiqc:
        rows += run_multiqc(n_sections)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
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
