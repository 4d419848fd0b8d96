"""A ready-to-run demo: simulated sections in four input formats, a sample sheet and a config.

Seven small sections with known domains: three single sections (``.h5ad``, Visium ``outs/``,
CSV table), a Stereo-seq chip (gzipped GEM, binned to bin20) and a group of three serial
sections (``.h5ad``) that are analysed jointly and aligned in 3-D.

``python -m spaseg.datasets demo`` writes ``demo/data/``, ``demo/samples.tsv`` and
``demo/config.yaml``; ``snakemake --cores 2 --configfile demo/config.yaml`` then runs the
workflow on them (``make demo`` does both).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .._atomic import atomic_path, write_h5ad
from ._sim_serial import simulate_serial_sections
from ._simulate import simulate_tissue
from ._stereoseq import write_stereoseq
from ._visium_outs import write_visium_outs

#: (sample, platform, arguments of :func:`simulate_tissue`): about 1,300 spots each.
DEMO_SECTIONS = (
    (
        "sim_h5ad",
        "h5ad",
        {"n_domains": 5, "pattern": "layers", "grid": "hex", "n_rows": 56, "n_genes": 400},
    ),
    (
        "sim_visium",
        "visium",
        {"n_domains": 4, "pattern": "blobs", "grid": "hex", "n_rows": 56, "n_genes": 400},
    ),
    (
        "sim_table",
        "table",
        {"n_domains": 5, "pattern": "mixed", "grid": "square", "n_rows": 50, "n_genes": 300},
    ),
)

#: (sample, bin size, arguments of :func:`~spaseg.datasets._stereoseq.write_stereoseq`): a
#: simulated Stereo-seq chip, written as a gzipped GEM and binned to bin20 (about 3,000 tissue
#: bins, plus ambient bins around the tissue that QC removes; see :data:`DEMO_QC`).
DEMO_STEREOSEQ = (
    "sim_stereoseq",
    20,
    {"n_bins": 3000, "n_genes": 300, "n_domains": 4, "formats": ("gem",)},
)

#: (group, sample names, arguments of :func:`simulate_serial_sections`): three serial sections
#: of one block (about 400 spots each), rotated onto their capture areas and the second one
#: mirrored; joint PCA and SpaSEG, then the 3-D alignment (``z`` 0, 10, 20).
DEMO_GROUP = (
    "serial",
    ("sim_serial0", "sim_serial1", "sim_serial2"),
    {
        "n_domains": 4,
        "pattern": "mixed",
        "n_rows": 30,
        "n_genes": 200,
        "reflections": [False, True, False],
    },
)

#: Overrides of config/config.yaml's ``spaseg`` section: a short training, so that the demo
#: takes a few minutes on 2 cores instead of many.
DEMO_SPASEG = {"n_runs": 1, "max_iter": 300, "warmup_iter": 100}

#: Overrides of ``qc``: the simulated Stereo-seq chip has ambient reads around the tissue (fewer
#: than 20 detected genes per bin; a real tissue GEM/GEF is cut to the tissue already). The
#: other demo sections detect over 50 genes in every spot, so this filter keeps all of theirs.
DEMO_QC = {"min_genes_per_spot": 20}

#: Overrides of ``align``: the group's second section is mirrored.
DEMO_ALIGN = {"reflection": True}


def write_table(adata: AnnData, path: str | os.PathLike) -> Path:
    """Write ``adata`` as a CSV table: ``x``, ``y``, ``domain_truth`` (if any), one column per gene.

    Gene columns are named by ``var["gene_symbols"]`` when present; this is the layout
    :func:`spaseg.io.read_table` reads (``platform: table``).
    """
    genes = adata.var["gene_symbols"] if "gene_symbols" in adata.var else adata.var_names
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    table = pd.DataFrame(X.astype(np.int64), columns=list(genes))
    xy = pd.DataFrame(np.asarray(adata.obsm["spatial"]), columns=["x", "y"])
    if "domain_truth" in adata.obs:
        xy["domain_truth"] = adata.obs["domain_truth"].astype(str).to_numpy()
    path = Path(path)
    with atomic_path(path) as tmp:
        pd.concat([xy, table], axis=1).to_csv(tmp, index=False)
    return path


def _write_section(adata: AnnData, stem: Path, platform: str) -> Path:
    if platform == "h5ad":
        path = stem.with_suffix(".h5ad")
        write_h5ad(adata, path)
        return path
    if platform == "visium":
        return write_visium_outs(adata, stem / "outs")
    if platform == "table":
        return write_table(adata, stem.with_suffix(".csv"))
    raise ValueError(f"no demo writer for platform {platform!r}")


def make_demo(outdir: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write a demo project: simulated sections, their sample sheet and a workflow config.

    Parameters
    ----------
    outdir
        Folder to fill (created if needed): ``data/`` with the sections (one ``.h5ad``, one
        Visium ``outs/`` and one CSV table, see :data:`DEMO_SECTIONS`; a Stereo-seq GEM in
        ``sim_stereoseq/``, see :data:`DEMO_STEREOSEQ`; three serial ``.h5ad`` sections of
        group ``serial``, see :data:`DEMO_GROUP`), ``samples.tsv`` (``n_domains`` = the
        simulated number of domains; ``bin_size`` for the Stereo-seq chip; ``group`` and ``z``
        for the serial sections) and ``config.yaml``, whose ``results`` is ``outdir/results``.
    seed
        Seed of the first section; section ``i`` uses ``seed + i`` (the Stereo-seq chip counts
        as section 3, the serial group as section 4).

    Returns
    -------
    Path of ``config.yaml``, for ``snakemake --configfile``. Paths in it and in
    ``samples.tsv`` are absolute, so the workflow can run from any working directory.
    """
    outdir = Path(outdir).resolve()
    data = outdir / "data"
    rows = []
    for i, (sample, platform, params) in enumerate(DEMO_SECTIONS):
        adata = simulate_tissue(**params, seed=seed + i)
        path = _write_section(adata, data / sample, platform)
        rows.append(_row(sample, path, platform, params["n_domains"]))

    sample, bin_size, params = DEMO_STEREOSEQ
    files = write_stereoseq(data / sample, **params, seed=seed + len(DEMO_SECTIONS))
    rows.append(_row(sample, files["gem"], "stereo-seq", params["n_domains"], bin_size=bin_size))

    group, names, params = DEMO_GROUP
    sections = simulate_serial_sections(len(names), **params, seed=seed + len(DEMO_SECTIONS) + 1)
    for sample, adata in zip(names, sections, strict=True):
        adata.obs["sample"] = sample
        path = _write_section(adata, data / sample, "h5ad")
        z = adata.uns["serial"]["z"]
        rows.append(_row(sample, path, "h5ad", params["n_domains"], group=group, z=z))

    sheet = outdir / "samples.tsv"
    table = pd.DataFrame(rows)
    for column in ("bin_size", "z"):  # integers, empty where a row has none
        table[column] = table[column].round().astype("Int64")
    with atomic_path(sheet) as tmp:
        table.to_csv(tmp, sep="\t", index=False)

    # JSON values are valid YAML, so no YAML writer is needed.
    lines = [
        "# Written by spaseg.datasets._demo.make_demo; overrides config/config.yaml.",
        f"samples: {json.dumps(str(sheet))}",
        f"results: {json.dumps(str(outdir / 'results'))}",
        "",
        "# The simulated Stereo-seq chip (sim_stereoseq) has ambient reads around the tissue,",
        "# fewer than 20 detected genes per bin; a real tissue GEM/GEF is cut to the tissue",
        "# already. This filter removes them; every spot of the other sections detects more",
        "# than 50 genes, so it removes none of theirs.",
        *_section("qc", DEMO_QC),
        "",
        "# The group's second section (sim_serial1) is mounted mirrored.",
        *_section("align", DEMO_ALIGN),
        "",
        "# Short training: a few minutes for the whole demo on 2 cores.",
        *_section("spaseg", DEMO_SPASEG),
    ]
    config = outdir / "config.yaml"
    with atomic_path(config) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return config


def _row(sample, path, platform, n_domains, *, group="", bin_size=None, z=None) -> dict:
    return {
        "sample": sample,
        "path": str(path),
        "platform": platform,
        "group": group,
        "n_domains": n_domains,
        "bin_size": bin_size,
        "z": z,
    }


def _section(name: str, values: dict) -> list[str]:
    return [f"{name}:", *(f"  {key}: {json.dumps(value)}" for key, value in values.items())]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=make_demo.__doc__.splitlines()[0])
    parser.add_argument("outdir", help="folder to write the demo into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first section")
    args = parser.parse_args(argv)
    print(make_demo(args.outdir, seed=args.seed))


if __name__ == "__main__":
    main()
