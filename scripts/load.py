"""Rule load: read one section in its platform's format into raw counts + coordinates."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import spaseg
from spaseg._atomic import write_h5ad
from spaseg._provenance import add_provenance

sample = snakemake.wildcards.sample
adata = spaseg.io.read(snakemake.input[0], snakemake.params.platform, sample=sample)
add_provenance(adata, config=snakemake.config, step=snakemake.rule)
write_h5ad(adata, snakemake.output[0])
