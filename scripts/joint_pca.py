"""Rule joint_pca: a group's sections on their shared genes, normalised and PCA'd jointly."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import anndata as ad

import spaseg
from spaseg._atomic import write_h5ad
from spaseg._provenance import add_provenance

params = snakemake.params
sections = {
    sample: ad.read_h5ad(path)
    for sample, path in zip(params.samples, snakemake.input.h5ad, strict=True)
}
joint = spaseg.pp.joint_normalize_pca(
    sections,
    **{**params.pca, "scale": params.group["scale"]},
    harmony=params.group["harmony"],
    min_shared_genes=params.group["min_shared_genes"],
    seed=params.seed,
    group=snakemake.wildcards.group,
)
add_provenance(joint, config=snakemake.config, step=snakemake.rule)
write_h5ad(joint, snakemake.output[0])
