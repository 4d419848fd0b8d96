"""The workflow on Stereo-seq input: sheet checks, the bin rule, and the stereo-seq scenario."""

from __future__ import annotations

import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score
from test_workflow import EXAMPLE, FINAL_FILES, REPO, output, snakemake, write_sheet

from spaseg.datasets._stereoseq import write_stereoseq

SCENARIO = REPO / ".test" / "config_stereoseq"
# The data of .test/config_stereoseq (its config.yaml gives the same command).
SIM = dict(n_bins=3000, n_genes=300, n_domains=4, seed=1)


def dry_run(tmp_path, rows):
    sheet = write_sheet(tmp_path / "samples.tsv", rows)
    results = tmp_path / "results"
    args = ["--config", f"samples={sheet}", f"results={results}"]
    return snakemake("-n", "--cores", "1", *args, workdir=tmp_path), results


@pytest.fixture(scope="module")
def gem_file(tmp_path_factory):
    """A tiny GEM for sheet checks (content does not matter for a dry run)."""
    path = tmp_path_factory.mktemp("gem") / "tiny.gem"
    path.write_text("geneID\tx\ty\tMIDCount\nGeneA\t10\t20\t1\n")
    return path


# --- sheet and DAG (dry runs) -----------------------------------------------------------------


def test_dry_run_bins_stereoseq_samples(tmp_path, gem_file):
    """Stereo-seq rows go bin -> qc, the others load -> qc (bin sizes: see the real run)."""
    rows = [
        {"sample": "chip_a", "path": str(gem_file), "platform": "stereo-seq", "bin_size": 20},
        {"sample": "chip_b", "path": str(gem_file), "platform": "stereo-seq"},
        {"sample": "tab", "path": str(EXAMPLE), "platform": "table"},
    ]
    result, results = dry_run(tmp_path, rows)
    message = output(result)
    assert result.returncode == 0, message
    assert "rule load:" in result.stdout and "rule bin:" in result.stdout, message
    for sample in ("chip_a", "chip_b"):
        assert str(results / sample / "binned.h5ad") in result.stdout
        assert str(results / sample / "raw.h5ad") not in result.stdout
    assert str(results / "tab" / "raw.h5ad") in result.stdout
    assert str(results / "tab" / "binned.h5ad") not in result.stdout
    assert not results.exists()


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        pytest.param({"platform": "table", "bin_size": 50}, "bin_size", ["stereo-seq"], id="table"),
        pytest.param({"platform": "stereo-seq", "bin_size": 0}, "bin_size", ["minimum"], id="zero"),
    ],
)
def test_bad_bin_size_is_rejected(tmp_path, gem_file, row, field, words):
    result, results = dry_run(tmp_path, [{"sample": "s1", "path": str(gem_file), **row}])
    message = output(result)
    assert result.returncode != 0, message
    assert "sample 's1'" in message and f"field {field!r}" in message, message
    for word in words:
        assert word in message, message
    assert not results.exists()


# --- real runs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stereoseq_run(tmp_path_factory):
    """The stereo-seq scenario (.test/config_stereoseq): one section as GEM and as GEF."""
    workdir = tmp_path_factory.mktemp("stereoseq")
    files = write_stereoseq(workdir / ".test" / "stereoseq", **SIM)
    args = ["--cores", "2", "--config", f"samples={SCENARIO / 'samples.tsv'}"]
    run = snakemake(*args, workdir=workdir, configfiles=[SCENARIO / "config.yaml"], timeout=1800)
    truth = pd.read_csv(files["truth"], sep="\t")
    return workdir / ".test/results/stereoseq", run, truth


@pytest.mark.slow
def test_stereoseq_run_outputs(stereoseq_run):
    results, run, truth = stereoseq_run
    assert run.returncode == 0, output(run)
    sheet = pd.read_csv(SCENARIO / "samples.tsv", sep="\t")
    for sample, bin_size in (("sim_gem", 20), ("sim_gef", 50)):  # config default / sheet
        for name in ["binned.h5ad", *FINAL_FILES]:
            assert (results / sample / name).is_file(), f"{sample}/{name} missing"
        assert not (results / sample / "raw.h5ad").exists()
        binned = ad.read_h5ad(results / sample / "binned.h5ad")
        assert binned.uns["stereoseq"]["bin_size"] == bin_size
        assert binned.uns["stereoseq"]["source"] == ("gem" if sample == "sim_gem" else "gef")
        np.testing.assert_array_equal(binned.obs["array_row"], binned.obs["bin_y"])
        np.testing.assert_array_equal(binned.obs["array_col"], binned.obs["bin_x"])

        adata = ad.read_h5ad(results / sample / "domains.h5ad")
        assert adata.uns["qc"]["thresholds"]["detected_quantile"] == 0.05  # stereo_seq's
        assert adata.uns["spaseg"]["params"]["grid"] == "square"  # bins are pixels
        n_domains = int(sheet.set_index("sample").at[sample, "n_domains"])
        assert adata.obs["domain"].nunique() == n_domains
        assert list(adata.uns["spaseg_provenance"]["steps"]) == [
            "bin",
            "qc",
            "normalize_pca",
            "spaseg_train",
        ]
        for rule in ("bin", "qc", "normalize_pca", "spaseg_train", "plot_qc", "plot_domains"):
            assert (results / "logs" / rule / f"{sample}.log").is_file()
            assert (results / "benchmarks" / rule / f"{sample}.tsv").is_file()
    assert not (results / "logs" / "load").exists()

    # The GEM at bin20 against the simulated truth (tissue bins; QC removed the ambient ones).
    adata = ad.read_h5ad(results / "sim_gem" / "domains.h5ad")
    scored = adata.obs.merge(
        truth[truth["bin_size"] == 20], on=["bin_x", "bin_y"], how="left", suffixes=("", "_true")
    )
    assert scored["domain_true"].notna().all()
    assert adjusted_rand_score(scored["domain_true"], scored["domain"]) > 0.6


@pytest.mark.slow
def test_bad_stereoseq_file_fails_the_bin_job_cleanly(tmp_path):
    """A truncated GEM: the bin log names the file and the problem; nothing is written."""
    paths = write_stereoseq(tmp_path / "sim", n_bins=(12, 10), n_genes=40, n_domains=3, seed=2)
    data = gzip.decompress(paths["gem"].read_bytes())
    truncated = tmp_path / "truncated.gem.gz"
    truncated.write_bytes(gzip.compress(data)[: len(data) // 40])
    sheet = write_sheet(
        tmp_path / "samples.tsv",
        [{"sample": "cut", "path": truncated.name, "platform": "stereo-seq", "n_domains": 3}],
    )
    results = tmp_path / "results"
    result = snakemake(
        "--cores", "1", "--config", f"samples={sheet}", f"results={results}", workdir=tmp_path
    )
    assert result.returncode != 0, output(result)
    log = (results / "logs/bin/cut.log").read_text()
    assert "sample 'cut'" in log and "truncated.gem.gz" in log and "truncated" in log, log
    assert not (results / "cut" / "binned.h5ad").exists()
    leftovers = [p.name for p in (results / "cut").glob("*")] if (results / "cut").exists() else []
    assert not leftovers, f"files left behind: {leftovers}"
