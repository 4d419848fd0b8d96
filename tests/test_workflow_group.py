"""The group scenario of the workflow: joint PCA and SpaSEG, 3-D alignment, sheet checks."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from test_workflow import output, snakemake, write_sheet

from spaseg.datasets._sim_serial import simulate_serial_sections
from spaseg.tl import morans_i
from spaseg.tl._svg import TABLE_COLUMNS

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".test/config_group/config.yaml"
SHEET = REPO / ".test/config_group/samples.tsv"
GROUP_FILES = [
    "domains.h5ad", "transforms.tsv", "domains.png", "aligned_3d.png", "aligned_3d.html",
    "svg.tsv", "svg.png",
]  # fmt: skip
# svg.tsv's leading columns, as README.md's output table lists them.
SVG_COLUMNS = [
    "gene", "symbol", "domain", "log2fc", "pval", "padj", "in_frac", "out_frac", "morans_i",
    "morans_padj", "passes", "fails",
]  # fmt: skip
GROUP_RULES = ("joint_pca", "joint_spaseg", "align", "plot_group", "svg_group")


def write_sections(folder: Path) -> list[ad.AnnData]:
    sections = simulate_serial_sections(
        3, reflections=[False, True, False], n_rows=20, n_domains=4,
        n_genes=80, n_markers=10, n_noise_genes=5, pattern="mixed", seed=3,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for k, section in enumerate(sections):
        section.write_h5ad(folder / f"section{k}.h5ad")
    return sections


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("group")
    sections = write_sections(workdir / ".test/group/data")
    # Only the group's files (and what they need: each section's qc.h5ad), to keep it short.
    targets = [f".test/results/group/groups/stack/{name}" for name in GROUP_FILES]
    args = ["--cores", "2", "--config", f"samples={SHEET}"]
    run = snakemake("-p", *targets, *args, workdir=workdir, configfiles=[CONFIG], timeout=1800)
    return workdir / ".test/results/group", run, sections


@pytest.mark.slow
def test_group_run_outputs(group_run):
    results, run, sections = group_run
    assert run.returncode == 0, output(run)
    for name in GROUP_FILES:
        assert (results / "groups/stack" / name).is_file(), name
    joint = ad.read_h5ad(results / "groups/stack/domains.h5ad")
    assert list(joint.obs["sample"].cat.categories) == ["section0", "section1", "section2"]
    assert joint.obs["domain"].nunique() <= 4
    # group.harmony (shipped on): SpaSEG trains on Harmony's PCs, the alignment on the joint PCs
    assert joint.uns["spaseg"]["params"]["use_rep"] == "X_pca_harmony"
    assert joint.uns["align"]["params"]["use_rep"] == "X_pca"
    lisi = joint.uns["f1_lisi"]
    assert lisi["n_sections"] == 3 and all(0 <= lisi[k] <= 1 for k in ("f1", "ilisi_scaled"))
    assert joint.obsm["spatial_3d"].shape == (joint.n_obs, 3)
    assert sorted(np.unique(joint.obsm["spatial_3d"][:, 2])) == [0.0, 10.0, 20.0]
    # the aligned sections land where the simulation put them (section0's frame = truth)
    truth = {
        f"{name}-section{k}": xy
        for k, section in enumerate(sections)
        for name, xy in zip(section.obs_names, section.obsm["spatial_truth"], strict=True)
    }
    expected = np.array([truth[name] for name in joint.obs_names])
    error = np.linalg.norm(joint.obsm["spatial_aligned"] - expected, axis=1)
    assert np.median(error) < 100.0  # one spot spacing
    table = pd.read_csv(results / "groups/stack/transforms.tsv", sep="\t")
    assert list(table["reflection"]) == [False, True, False]
    for k in range(3):
        part = ad.read_h5ad(results / f"groups/stack/samples/section{k}.h5ad")
        assert part.n_obs == (joint.obs["sample"] == f"section{k}").sum()
        assert set(part.obs["domain"]) <= set(joint.obs["domain"])
    for rule in GROUP_RULES:
        assert (results / "logs" / rule / "stack.log").is_file()
        assert (results / "benchmarks" / rule / "stack.tsv").is_file()


@pytest.mark.slow
def test_group_svg(group_run):
    """svg_group: the documented table over the joint data, Moran's I within each section."""
    results, run, _ = group_run
    assert run.returncode == 0, output(run)
    joint = ad.read_h5ad(results / "groups/stack/domains.h5ad")
    table = pd.read_csv(results / "groups/stack/svg.tsv", sep="\t", dtype={"domain": str})
    assert list(table.columns) == TABLE_COLUMNS and TABLE_COLUMNS[: len(SVG_COLUMNS)] == SVG_COLUMNS
    domains = sorted(joint.obs["domain"].astype(str).unique())
    assert len(table) == joint.n_vars * len(domains)
    assert sorted(table["domain"].unique()) == domains
    for domain, part in table.groupby("domain"):
        assert sorted(part["gene"]) == sorted(joint.var_names), domain
    assert table["passes"].dtype == bool
    assert (table["passes"] == table["fails"].isna()).all()  # "" (no failed filter) if it passes
    # Each learned domain has clearly enriched genes over the group (the simulated markers are
    # only about two-fold: below the SVG filters' fold change, so none need pass).
    best = table.sort_values("score", ascending=False).groupby("domain").head(1)
    assert len(best) == len(domains)
    assert (best["padj"] < 1e-6).all() and (best["log2fc"] > 0.5).all(), best
    # Moran's I finds the simulated domain markers, and hardly any other gene.
    role = joint.var["gene_role"].astype(str)
    spatial = table.drop_duplicates("gene").set_index("gene")["morans_padj"] < 0.05
    assert spatial[role.index[role == "marker"]].mean() >= 0.8
    assert spatial[role.index[role != "marker"]].mean() <= 0.1
    # Moran's I of the group: graph and centring per section (batch_key="sample"), which
    # differs from one graph over the stacked sections.
    per_gene = table.drop_duplicates("gene").set_index("gene")["morans_i"]
    within = morans_i(joint, batch_key="sample")["morans_i"].loc[per_gene.index]
    np.testing.assert_allclose(per_gene, within, rtol=1e-6, equal_nan=True)
    across = morans_i(joint)["morans_i"].loc[per_gene.index]
    assert not np.allclose(per_gene, across, equal_nan=True)


# --- bad group settings: rejected before any job runs ----------------------------------------


def group_sheet(tmp_path: Path, z: list, n_domains=(3, 3)) -> Path:
    example = REPO / ".test/data/example_table.csv"
    rows = [
        {"sample": f"s{k}", "path": str(example), "platform": "table", "group": "g",
         "n_domains": n_domains[k], "z": z[k]}
        for k in range(2)
    ]  # fmt: skip
    return write_sheet(tmp_path / "samples.tsv", rows)


@pytest.mark.parametrize(
    ("z", "n_domains", "sample", "field", "words"),
    [
        pytest.param([5, 5], (3, 3), "s1", "z", ["share z = 5"], id="duplicate-z"),
        pytest.param([5, None], (3, 3), "s1", "z", ["some sections"], id="partial-z"),
        pytest.param([1, 2], (3, 4), "s0", "n_domains", ["mixes n_domains"], id="mixed-n"),
    ],
)
def test_bad_group_sheet(tmp_path, z, n_domains, sample, field, words):
    sheet = group_sheet(tmp_path, z, n_domains)
    results = tmp_path / "results"
    args = ["-n", "--cores", "1", "--config", f"samples={sheet}", f"results={results}"]
    result = snakemake(*args, workdir=tmp_path)
    message = output(result)
    assert result.returncode != 0, message
    assert f"sample {sample!r}" in message and f"field {field!r}" in message, message
    for word in words:
        assert word in message, message
    assert not results.exists()


def test_group_dry_run_and_unknown_group(tmp_path):
    sheet = group_sheet(tmp_path, [0, 1])
    results = tmp_path / "results"
    args = ["-n", "--cores", "1", "--config", f"samples={sheet}", f"results={results}"]
    result = snakemake(*args, workdir=tmp_path)
    assert result.returncode == 0, output(result)
    for rule in GROUP_RULES:
        assert f"rule {rule}:" in result.stdout, rule
    target = f"{results}/groups/nope/domains.h5ad"
    unknown = snakemake("-n", target, *args[1:], workdir=tmp_path)
    assert unknown.returncode != 0
    assert "unknown group 'nope'" in output(unknown) and "'g'" in output(unknown)
