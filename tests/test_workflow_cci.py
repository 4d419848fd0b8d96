"""The workflow's cell-cell interaction stage: optional wiring (dry runs) and the cci scenario
(.test/config_cci) end to end."""

from __future__ import annotations

import re
import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import planned_jobs
from test_workflow import REPO, output, snakemake

from spaseg.datasets._sim_cci import write_cci

SCENARIO = REPO / ".test" / "config_cci"
SIM = dict(n_genes=120, n_rows=16, seed=0)  # the data of .test/config_cci (see its config)
CCI_FILES = [
    "cci/spot_scores.h5ad",
    "cci/pairs.tsv",
    "cci/domain_pairs.tsv",
    "cci/ligrec.tsv",
    "cci/top_pairs.png",
    "cci/domains.png",
]


def dry_run(tmp_path, settings: dict):
    """Dry run of one tiny section with extra config `settings`; the jobs planned, by rule."""
    paths = write_cci(
        tmp_path / "data", n_genes=30, n_markers=4, n_rows=8, n_planted=2, n_controls=2
    )
    sheet = tmp_path / "samples.tsv"
    rows = [{"sample": s, "path": str(paths["section"]), "platform": "h5ad"} for s in "ab"]
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    config = {"samples": str(sheet), "results": str(tmp_path / "results"), **settings}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--cores", "1", configfiles=[tmp_path / "config.yaml"])
    return result, planned_jobs(result), paths


def test_cci_stage_is_off_without_a_reference(tmp_path):
    result, jobs, _ = dry_run(tmp_path, {})
    assert result.returncode == 0, output(result)
    assert not {"c2l_reference", "c2l_map", "cci"} & set(jobs), jobs


def test_reference_trains_once_and_maps_every_section(tmp_path):
    paths = write_cci(
        tmp_path / "ref", n_genes=30, n_markers=4, n_rows=8, n_planted=2, n_controls=2
    )
    settings = {"cell2location": {"reference": str(paths["reference"])}}
    result, jobs, _ = dry_run(tmp_path, settings)
    assert result.returncode == 0, output(result)
    assert (jobs["c2l_reference"], jobs["c2l_map"], jobs["cci"]) == (1, 2, 2), jobs
    assert "cell2location/reference/signatures.h5ad" in result.stdout


def test_weight_none_does_not_wait_for_cell2location(tmp_path):
    """With a reference, cci.weight: none still maps cell types, but cci reads no fractions."""
    paths = write_cci(
        tmp_path / "ref", n_genes=30, n_markers=4, n_rows=8, n_planted=2, n_controls=2
    )
    reference = {"cell2location": {"reference": str(paths["reference"])}}
    for weight, waits in (("entropy", True), ("none", False)):
        result, jobs, _ = dry_run(tmp_path / weight, {**reference, "cci": {"weight": weight}})
        assert result.returncode == 0, output(result)
        assert jobs["c2l_map"] == 2 and jobs["cci"] == 2, jobs
        cci_jobs = re.findall(r"rule cci:\n(.*?)\n\n", result.stdout, flags=re.S)
        assert len(cci_jobs) == 2, result.stdout
        assert all(("cell2location.h5ad" in job) == waits for job in cci_jobs), cci_jobs


def test_cci_without_cell2location_when_asked(tmp_path):
    result, jobs, _ = dry_run(tmp_path, {"cci": {"run": True}})
    assert result.returncode == 0, output(result)
    assert jobs.get("cci") == 2 and "c2l_map" not in jobs, jobs


def test_missing_reference_is_named(tmp_path):
    result, _, _ = dry_run(tmp_path, {"cell2location": {"reference": "nowhere.h5ad"}})
    assert result.returncode != 0
    assert "cell2location.reference" in output(result) and "nowhere.h5ad" in output(result)


@pytest.fixture(scope="module")
def cci_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cci")
    write_cci(workdir / ".test" / "cci", **SIM)
    results = workdir / ".test" / "results" / "cci"
    # The stage's own files only (the scenario's `all` also makes every other stage's).
    names = ["cell2location.h5ad", "cell2location.png", *CCI_FILES]
    targets = [f".test/results/cci/sim_cci/{name}" for name in names]  # as the rules name them
    # The sheet as the config names it, relative to the working directory.
    (workdir / ".test" / "config_cci").mkdir()
    shutil.copy(SCENARIO / "samples.tsv", workdir / ".test" / "config_cci" / "samples.tsv")
    args = ["--cores", "2", *targets]  # after --configfile's list, so not read as config files
    run = snakemake(*args, workdir=workdir, configfiles=[SCENARIO / "config.yaml"], timeout=1800)
    return results, run


@pytest.mark.slow
def test_cci_scenario_end_to_end(cci_run):
    results, run = cci_run
    assert run.returncode == 0, output(run)
    section = results / "sim_cci"
    for name in ["domains.h5ad", "cell2location.h5ad", "cell2location.png", *CCI_FILES]:
        assert (section / name).is_file(), f"{name} missing"
    assert (results / "cell2location" / "reference" / "signatures.h5ad").is_file()
    for rule in ("c2l_map", "cci"):
        assert (results / "logs" / rule / "sim_cci.log").is_file()
        assert (results / "benchmarks" / rule / "sim_cci.tsv").is_file()

    c2l = ad.read_h5ad(section / "cell2location.h5ad")
    fractions = c2l.obsm["cell_type_fractions"]
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=1e-5)
    lrdata = ad.read_h5ad(section / "cci" / "spot_scores.h5ad")
    assert lrdata.n_obs == c2l.n_obs and lrdata.n_vars > 0
    entropy = c2l.obs["cell_type_entropy"].loc[lrdata.obs_names]
    np.testing.assert_allclose(lrdata.obs["cell_type_entropy"], entropy, rtol=1e-5)
    steps = list(lrdata.uns["spaseg_provenance"]["steps"])
    assert steps[-2:] == ["spaseg_train", "cci"], steps

    pairs = pd.read_csv(section / "cci" / "pairs.tsv", sep="\t")
    assert {"pair", "domain", "mean_score", "pval", "padj"} <= set(pairs.columns)
    assert "all" in set(pairs["domain"]) and pairs["pval"].between(0, 1).all()
    ligrec = pd.read_csv(section / "cci" / "ligrec.tsv", sep="\t")
    assert {"pair", "sender", "receiver", "pval", "padj"} <= set(ligrec.columns)


@pytest.mark.slow
def test_cci_scenario_finds_the_planted_pairs(cci_run):
    """The simulation plants each pair's ligand on one side of a domain boundary and its
    receptor on the other; controls have the same expression but are not neighbours. Across
    the boundaries (domain_pairs.tsv), the planted pairs must outrank the controls, and what
    passes the FDR must be planted."""
    results, run = cci_run
    assert run.returncode == 0, output(run)
    truth = pd.read_csv(results.parents[1] / "cci" / "pairs.csv")
    kind = pd.Series(
        truth["kind"].to_numpy(), index=truth["ligand"].str.upper() + "^" + truth["receptor"]
    )
    edges = pd.read_csv(results / "sim_cci" / "cci" / "domain_pairs.tsv", sep="\t")
    tested = edges.dropna(subset=["pval"])
    best = tested.groupby("pair")["zscore"].max()  # each pair's strongest boundary
    planted = best[kind[best.index].to_numpy() == "planted"].to_numpy()
    controls = best[kind[best.index].to_numpy() != "planted"].to_numpy()
    assert len(planted) == (truth["kind"] == "planted").sum() and len(controls)
    auroc = (planted[:, None] > controls[None, :]).mean()
    assert auroc >= 0.9, (auroc, best.sort_values().tail(10))
    found = set(tested.loc[tested["padj"] < 0.05, "pair"])
    assert found and all(kind[pair] == "planted" for pair in found), found
