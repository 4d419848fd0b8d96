"""Rule plot_group: a group's shared domains side by side, and its aligned 3-D stack."""

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
n = joint.obs["domain"].nunique()
figures = {
    snakemake.output.domains: spaseg.pl.group_domains(
        joint, title=f"group {group}: {n} shared domains"
    ),
    snakemake.output.stack: spaseg.pl.aligned_3d(joint, title=f"group {group}: aligned sections"),
}
for path, figure in figures.items():
    savefig(figure, path, dpi=150)
with atomic_path(snakemake.output.html) as tmp:
    spaseg.pl.aligned_3d_html(joint, tmp, title=f"group {group}: aligned sections")
