"""Rule qc: filter spots and genes, keep QC metrics in obs (spaseg.pp.qc), and measure the
section against the QC gates (spaseg.pp.qc_gates; rule qc_gate acts on them)."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import anndata as ad
import pandas as pd

import spaseg
from spaseg._atomic import atomic_path, write_h5ad
from spaseg._provenance import add_provenance

sample = snakemake.wildcards.sample
# A section that QC empties is written empty: its gates then say why it stops.
adata = ad.read_h5ad(snakemake.input[0])
spaseg.pp.qc(adata, **snakemake.params.qc, allow_empty=True, sample=sample)
gates = spaseg.pp.qc_gates(adata, **snakemake.params.gates)
# The sheet's extra columns (donor, condition, ...): one value per section, on every spot.
metadata = dict(snakemake.params.metadata)
for column, value in metadata.items():
    adata.obs[column] = pd.Categorical([value] * adata.n_obs)
adata.uns["sample_metadata"] = {"sample": sample, **metadata}
add_provenance(adata, config=snakemake.config, step=snakemake.rule)
write_h5ad(adata, snakemake.output.h5ad)
with atomic_path(snakemake.output.gates) as tmp:
    gates.to_csv(tmp, sep="\t", index=False)
