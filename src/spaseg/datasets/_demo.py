"""A ready-to-run demo: simulated sections in three input formats, a sample sheet and a config.

``python -m spaseg.datasets._demo demo`` writes ``demo/data/``, ``demo/samples.tsv`` and
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
from ._simulate import simulate_tissue
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

#: Overrides of config/config.yaml's ``spaseg`` section: a short training, so that the demo
#: takes a minute or two on 2 cores instead of many.
DEMO_SPASEG = {"n_runs": 1, "max_iter": 300, "warmup_iter": 100}


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
        Folder to fill (created if needed): ``data/`` with one section per input format
        (``.h5ad``, Visium ``outs/``, CSV table; see :data:`DEMO_SECTIONS`), ``samples.tsv``
        (``n_domains`` = the simulated number of domains) and ``config.yaml``, whose
        ``results`` is ``outdir/results``.
    seed
        Seed of the first section; section ``i`` uses ``seed + i``.

    Returns
    -------
    Path of ``config.yaml``, for ``snakemake --configfile``. Paths in it and in
    ``samples.tsv`` are absolute, so the workflow can run from any working directory.
    """
    outdir = Path(outdir).resolve()
    rows = []
    for i, (sample, platform, params) in enumerate(DEMO_SECTIONS):
        adata = simulate_tissue(**params, seed=seed + i)
        path = _write_section(adata, outdir / "data" / sample, platform)
        rows.append(
            {
                "sample": sample,
                "path": str(path),
                "platform": platform,
                "group": "",
                "n_domains": params["n_domains"],
            }
        )
    sheet = outdir / "samples.tsv"
    with atomic_path(sheet) as tmp:
        pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False)

    # JSON values are valid YAML, so no YAML writer is needed.
    lines = [
        "# Written by spaseg.datasets._demo.make_demo; overrides config/config.yaml.",
        f"samples: {json.dumps(str(sheet))}",
        f"results: {json.dumps(str(outdir / 'results'))}",
        "spaseg:",
        *(f"  {key}: {json.dumps(value)}" for key, value in DEMO_SPASEG.items()),
    ]
    config = outdir / "config.yaml"
    with atomic_path(config) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=make_demo.__doc__.splitlines()[0])
    parser.add_argument("outdir", help="folder to write the demo into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first section")
    args = parser.parse_args(argv)
    print(make_demo(args.outdir, seed=args.seed))


if __name__ == "__main__":
    main()
