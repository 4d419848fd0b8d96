"""Rule svg_group: spatially variable genes of a group's joint data (spaseg.tl.svg, group mode).

Domains are tested against the rest over all sections of the group; Moran's I uses a
neighbour graph built within each section (``batch_key="sample"``).
"""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import anndata as ad

import spaseg
from spaseg._atomic import atomic_path, savefig

group = snakemake.wildcards.group
joint = ad.read_h5ad(snakemake.input[0])
table = spaseg.tl.svg(
    joint, groupby="domain", batch_key="sample", sample=group, copy=True, **snakemake.params.svg
)
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, sep="\t", index=False)
n_sections = joint.obs["sample"].nunique()
figure = spaseg.pl.svg(
    joint,
    table,
    n_top=snakemake.params.n_top,
    batch_key="sample",
    title=f"group {group} ({n_sections} sections)",
)
savefig(figure, snakemake.output.plot, dpi=120)
