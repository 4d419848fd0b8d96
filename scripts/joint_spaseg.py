"""Rule joint_spaseg: one SpaSEG model and one label set for all sections of a group."""

import sys
from pathlib import Path

# This checkout's library, also inside a rule's conda env (README, "Conda environments").
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import setup

setup(snakemake)

import logging

import anndata as ad
import torch

import spaseg
from spaseg._atomic import write_h5ad
from spaseg._provenance import add_provenance

torch.set_num_threads(snakemake.threads)
joint = ad.read_h5ad(snakemake.input[0])
spaseg.tl.spaseg(
    joint,
    **snakemake.params.spaseg,
    sample_key="sample",
    use_rep=joint.uns["joint_pca"]["use_rep"],  # Harmony-corrected PCs when group.harmony
    sample=f"group {snakemake.wildcards.group}",
)
# How well the joint embedding mixes the sections and separates the domains (uns["f1_lisi"]).
spaseg.tl.f1_lisi(joint, batch_key="sample")
logging.getLogger("spaseg").info("F1-LISI of the joint embedding: %s", joint.uns["f1_lisi"])
add_provenance(joint, config=snakemake.config, step=snakemake.rule)
write_h5ad(joint, snakemake.output[0])
