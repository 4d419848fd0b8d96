"""Rule bin: read a Stereo-seq GEM or GEF (told apart by content) into square bins."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import pyarrow

import spaseg
from spaseg._atomic import write_h5ad
from spaseg._provenance import add_provenance

pyarrow.set_cpu_count(snakemake.threads)  # the GEM parser's thread pool
adata = spaseg.io.read_stereoseq(
    snakemake.input[0],
    bin_size=snakemake.params.bin_size,
    sample=snakemake.wildcards.sample,
)
add_provenance(adata, config=snakemake.config, step=snakemake.rule)
write_h5ad(adata, snakemake.output[0])
