"""Rule svg: per-domain and global spatially variable genes (spaseg.tl.svg, spaseg.pl.svg)."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import anndata as ad

import spaseg
from spaseg._atomic import atomic_path, savefig

sample = snakemake.wildcards.sample
adata = ad.read_h5ad(snakemake.input[0])
table = spaseg.tl.svg(adata, groupby="domain", sample=sample, copy=True, **snakemake.params.svg)
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, sep="\t", index=False)
figure = spaseg.pl.svg(adata, table, n_top=snakemake.params.n_top, title=sample)
savefig(figure, snakemake.output.plot, dpi=120)
