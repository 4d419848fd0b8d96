"""The Snakemake workflow, run as users run it: dry runs, bad sample sheets, real runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import planned_jobs
from sklearn.metrics import adjusted_rand_score

from spaseg._provenance import add_provenance
from spaseg.datasets._demo import (
    DEMO_GROUP,
    DEMO_QC,
    DEMO_SECTIONS,
    DEMO_STEREOSEQ,
    make_demo,
    write_table,
)
from spaseg.datasets._simulate import simulate_tissue

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / ".test" / "data" / "example_table.csv"
FINAL_FILES = [
    "qc.h5ad",
    "qc.png",
    "pca.h5ad",
    "domains.h5ad",
    "domains.png",
    "svg.tsv",
    "svg.png",
]


def snakemake(*args: str, workdir: Path | None = None, configfiles=(), timeout: int = 600):
    """Run Snakemake on this repository's Snakefile; return the CompletedProcess.

    ``configfiles`` are layered over config/config.yaml (one --configfile: a second replaces
    the first). With ``workdir``, config/config.yaml is named too: configfile: in the Snakefile
    is relative to the working directory.
    """
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    if workdir is not None:
        command += ["--directory", str(workdir)]
        configfiles = [REPO / "config/config.yaml", *configfiles]
    if configfiles:
        command += ["--configfile", *map(str, configfiles)]
    return subprocess.run(
        [*command, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def output(result) -> str:
    return result.stdout + result.stderr


def write_sheet(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


# --- default config ---------------------------------------------------------------------------


def test_dry_run_default_config():
    result = snakemake("-n", "--cores", "1")
    assert result.returncode == 0, output(result)
    for rule in ("load", "qc", "normalize_pca", "spaseg_train", "plot_qc", "plot_domains"):
        assert rule in result.stdout


def test_catalog_snakefile_plans_the_same_jobs():
    """workflow/Snakefile (where the workflow catalog starts) is the same workflow as
    ./Snakefile: the same jobs by default, its own target rule standing in for `all`."""
    root = snakemake("-n", "--cores", "1")
    command = [sys.executable, "-m", "snakemake", "--snakefile", "workflow/Snakefile"]
    catalog = subprocess.run(
        [*command, "-n", "--cores", "1"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert root.returncode == 0 and catalog.returncode == 0, output(catalog)
    jobs, expected = planned_jobs(catalog), planned_jobs(root)
    assert jobs.pop("catalog_all") == expected.pop("all") == 1
    assert jobs == expected, output(catalog)
    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert usage["software-stack-deployment"]["conda"] is True and usage["report"] is True
    assert "--profile profiles/slurm" in usage["mandatory-flags"]["flags"]


def test_dry_run_with_overrides(tmp_path):
    """--configfile and --config override config/config.yaml and still pass validation.

    Nested keys go in a --configfile: Snakemake's --config reads nested values as strings.
    """
    override = tmp_path / "override.yaml"
    override.write_text("spaseg:\n  n_runs: 1\n  device: cpu\n")
    result = snakemake(
        "-n", "--cores", "1", "--config", f"results={tmp_path}", configfiles=[override]
    )
    assert result.returncode == 0, output(result)
    assert str(tmp_path / "example" / "domains.h5ad") in result.stdout


def test_bad_config_value_is_rejected(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("spaseg:\n  device: tpu\n")
    result = snakemake("-n", "--cores", "1", configfiles=[override])
    assert result.returncode != 0
    assert "device" in output(result) and "tpu" in output(result)


# --- the demo (make demo) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """make_demo's project: its config.yaml and sample sheet."""
    config = make_demo(tmp_path_factory.mktemp("demo") / "demo")
    return config, pd.read_csv(config.parent / "samples.tsv", sep="\t")


def test_demo_plans_every_stage(demo):
    """demo/config.yaml runs as `make demo` runs it: Stereo-seq bins and the serial group too.

    A dry run (the real run takes minutes; `make demo` is that check).
    """
    config, sheet = demo
    result = snakemake("-n", "--cores", "2", "--configfile", str(config))
    assert result.returncode == 0, output(result)
    results = config.parent / "results"
    stereoseq, group = DEMO_STEREOSEQ[0], DEMO_GROUP[0]
    planned = [
        results / stereoseq / "binned.h5ad",
        *(results / sample / "domains.png" for sample in sheet["sample"]),
        *(results / "groups" / group / name for name in ("domains.h5ad", "aligned_3d.png")),
    ]
    for path in planned:
        assert str(path) in result.stdout, path
    for rule in ("bin", "joint_pca", "joint_spaseg", "align", "plot_group", "svg_group"):
        assert f"rule {rule}:" in result.stdout, rule
    assert not results.exists()


def test_demo_qc_keeps_the_spots_of_non_stereoseq_sections(demo):
    """The demo's qc.min_genes_per_spot (for the Stereo-seq chip's ambient bins) removes no
    spot of the other sections: each detects over 50 genes, as demo/config.yaml says."""
    import spaseg

    _, sheet = demo
    assert set(sheet["platform"]) == {"h5ad", "visium", "table", "stereo-seq"}
    assert (sheet["group"] == DEMO_GROUP[0]).sum() == len(DEMO_GROUP[1])
    for row in sheet[sheet["platform"] != "stereo-seq"].itertuples():
        adata = spaseg.io.read(row.path, row.platform, sample=row.sample)
        detected = np.asarray((adata.X > 0).sum(axis=1)).ravel()
        assert detected.min() > max(50, DEMO_QC["min_genes_per_spot"]), row.sample


# --- bad sample sheets: rejected before any job runs ------------------------------------------

GOOD = {"sample": "s1", "path": str(EXAMPLE), "platform": "table", "n_domains": 3}


@pytest.mark.parametrize(
    ("rows", "sample", "field", "words"),
    [
        pytest.param(
            [{k: v for k, v in GOOD.items() if k != "platform"}],
            "s1",
            "platform",
            ["column missing"],
            id="missing-column",
        ),
        pytest.param(
            [GOOD, {**GOOD, "n_domains": 4}, {**GOOD, "sample": "s2"}],
            "s1",
            "sample",
            ["2 times", "unique"],
            id="duplicate-sample",
        ),
        pytest.param(
            [GOOD, {**GOOD, "sample": "s2", "path": "no/such/section.csv"}],
            "s2",
            "path",
            ["not found", "no/such/section.csv"],
            id="missing-input",
        ),
        pytest.param(
            [{**GOOD, "platform": "xenium"}], "s1", "platform", ["xenium"], id="unknown-platform"
        ),
        pytest.param([{**GOOD, "n_domains": 1}], "s1", "n_domains", ["minimum"], id="n-domains-1"),
        pytest.param([{**GOOD, "sample": "a/b"}], "a/b", "sample", ["match"], id="slash-in-name"),
        pytest.param(
            [GOOD, {**GOOD, "sample": "s2", "n_domains": "many"}],
            "s2",
            "n_domains",
            ["many"],
            id="n-domains-text",
        ),
    ],
)
def test_bad_sample_sheet(tmp_path, rows, sample, field, words):
    sheet = write_sheet(tmp_path / "samples.tsv", rows)
    results = tmp_path / "results"
    result = snakemake(
        "-n", "--cores", "1", "--config", f"samples={sheet}", f"results={results}", workdir=tmp_path
    )
    message = output(result)
    assert result.returncode != 0, message
    assert f"sample {sample!r}" in message or repr(sample) in message, message
    assert f"field {field!r}" in message, message
    for word in words:
        assert word in message, message
    assert not results.exists()


def test_sample_sheet_n_domains_auto_beside_numbers(tmp_path):
    """'auto' in one row, a number in another and none in a third: the sheet validates and
    the whole workflow plans (the text is not taken for a bad number)."""
    rows = [GOOD, {**GOOD, "sample": "s2", "n_domains": "auto"}, {**GOOD, "sample": "s3"}]
    rows[2].pop("n_domains")
    sheet = write_sheet(tmp_path / "samples.tsv", rows)
    result = snakemake(
        "-n", "--cores", "1", "--printshellcmds", "--config", f"samples={sheet}",
        f"results={tmp_path / 'results'}", workdir=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, output(result)


def test_sheet_metadata_columns_are_checked_before_any_job(tmp_path):
    """Extra columns are metadata (text, carried into obs): allowed unless they would take a
    name the workflow writes into obs itself."""
    args = ["-n", "--cores", "1", "--config", f"results={tmp_path / 'results'}"]
    sheet = write_sheet(tmp_path / "ok.tsv", [{**GOOD, "donor": "01", "condition": "AD"}])
    result = snakemake(*args, f"samples={sheet}", workdir=tmp_path)
    assert result.returncode == 0, output(result)
    for column in ("domain", "2nd_slide"):
        sheet = write_sheet(tmp_path / "bad.tsv", [{**GOOD, column: "x"}])
        result = snakemake(*args, f"samples={sheet}", workdir=tmp_path)
        assert result.returncode != 0
        assert f"field {column!r}" in output(result) and "extra columns" in output(result)


# --- library pieces the workflow owns ---------------------------------------------------------


def test_batch_overview_per_project_and_partial_sections(tmp_path):
    """A project column splits the overview into one page per project; a section that stopped
    after QC has its QC metrics and no domain metrics."""
    import spaseg
    from spaseg._batch import write_batch

    for sample in ("a", "b"):
        section = simulate_tissue(3, n_rows=10, n_genes=60, n_markers=5, seed=0)
        (tmp_path / sample).mkdir()
        spaseg.pp.qc(section, sample=sample, copy=True).write_h5ad(tmp_path / sample / "qc.h5ad")
    summary = pd.DataFrame(
        {"sample": ["a", "b"], "status": ["failed", "failed"], "failed_step": ["normalize_pca"] * 2}
    )
    sheet = pd.DataFrame({"sample": ["a", "b"], "project": ["lab_x", "lab_y"]})
    table = write_batch(tmp_path, summary, sheet).set_index("sample")
    assert table.loc["a", "spots_after_qc"] > 0 and np.isnan(table.loc["a", "domains"])
    x = (tmp_path / "batch/lab_x/overview.html").read_text()
    assert '<td class="text">a</td>' in x and '<td class="text">b</td>' not in x
    assert (tmp_path / "batch/lab_y/overview.html").is_file()
    assert len(list((tmp_path / "batch/multiqc").glob("*_mqc.tsv"))) == 2


def test_savefig_is_atomic_and_closes_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    from spaseg._atomic import savefig

    figure, _ = plt.subplots()
    savefig(figure, tmp_path / "plot.png", dpi=50)
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert not plt.fignum_exists(figure.number) and [p.name for p in tmp_path.iterdir()] == [
        "plot.png"
    ]


def test_add_provenance_survives_h5ad(tmp_path):
    adata = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    config = {"qc": {"max_pct_mt": None}, "spaseg": {"n_domains": 7}}
    add_provenance(adata, config=config, step="load")
    add_provenance(adata, config=config, step="qc")
    adata.write_h5ad(tmp_path / "a.h5ad")
    prov = ad.read_h5ad(tmp_path / "a.h5ad").uns["spaseg_provenance"]
    assert json.loads(prov["config"]) == config
    assert list(prov["steps"]) == ["load", "qc"] and prov["step"] == "qc"
    assert prov["workflow_version"] and {"spaseg", "numpy", "anndata"} <= set(prov["packages"])


def test_example_table_matches_default_sheet():
    """The committed example section is readable and holds the domains the sheet says."""
    import spaseg

    sheet = pd.read_csv(REPO / "config/samples.tsv", sep="\t")
    adata = spaseg.io.read(REPO / sheet.at[0, "path"], sheet.at[0, "platform"], sample="example")
    assert adata.n_obs == 400
    assert adata.obs["domain_truth"].nunique() == sheet.at[0, "n_domains"]


# --- real runs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic_run(tmp_path_factory):
    """The basic scenario (.test/config_basic) on the simulated demo sections, run once."""
    workdir = tmp_path_factory.mktemp("basic")
    make_demo(workdir / ".test" / "demo")
    config = REPO / ".test/config_basic/config.yaml"
    sheet = REPO / ".test/config_basic/samples.tsv"
    args = ["--cores", "2", "--config", f"samples={sheet}"]
    run = snakemake(*args, workdir=workdir, configfiles=[config], timeout=1800)
    report = workdir / "report.html"
    made = snakemake(*args, "--report", str(report), workdir=workdir, configfiles=[config])
    return workdir / ".test/results/basic", run, made, report


def spot_keys(adata: ad.AnnData) -> pd.Index:
    return pd.Index([f"{x:.1f},{y:.1f}" for x, y in np.asarray(adata.obsm["spatial"], float)])


@pytest.mark.slow
def test_basic_run_outputs(basic_run):
    results, run, _, _ = basic_run
    assert run.returncode == 0, output(run)
    for seed, (sample, _, params) in enumerate(DEMO_SECTIONS):
        for name in FINAL_FILES:
            assert (results / sample / name).is_file(), f"{sample}/{name} missing"
        assert not (results / sample / "raw.h5ad").exists()  # temp() output was removed
        adata = ad.read_h5ad(results / sample / "domains.h5ad")
        assert isinstance(adata.obs["domain"].dtype, pd.CategoricalDtype)
        assert adata.obs["domain"].nunique() <= params["n_domains"]
        # The domains found are the simulated ones (make_demo: section i has seed i), through
        # every reader: the shipped defaults give ARI 0.9 and more on these sections.
        # Spots matched by position: a CSV table has no barcodes.
        simulated = simulate_tissue(**params, seed=seed)
        truth = pd.Series(simulated.obs["domain_truth"].to_numpy(), index=spot_keys(simulated))
        found = pd.Series(adata.obs["domain"].to_numpy(), index=spot_keys(adata))
        spots = found.index.intersection(truth.index)
        assert len(spots) > 0.9 * len(found)
        assert adjusted_rand_score(truth[spots], found[spots]) > 0.8, sample
        assert adata.obsm["spaseg_embedding"].shape[0] == adata.n_obs
        assert "spaseg" in adata.uns
        # The sheet's extra columns, as written (text), on every spot and in uns.
        donor, slide = {"sim_h5ad": ("d1", "01"), "sim_visium": ("d1", "02")}.get(
            sample, ("d2", None)
        )
        assert (adata.obs["donor"] == donor).all()
        assert adata.uns["sample_metadata"]["donor"] == donor
        assert adata.uns["sample_metadata"].get("slide") == slide
        assert ("slide" in adata.obs) == (slide is not None)
        assert list(adata.uns["spaseg_provenance"]["steps"]) == [
            "load",
            "qc",
            "normalize_pca",
            "spaseg_train",
        ]
        for rule in ("load", "qc", "normalize_pca", "spaseg_train", "plot_qc", "plot_domains"):
            assert (results / "logs" / rule / f"{sample}.log").is_file()
            assert (results / "benchmarks" / rule / f"{sample}.tsv").is_file()


@pytest.mark.slow
def test_basic_run_batch_overview_and_multiqc(basic_run, tmp_path):
    """{results}/batch/ after the run: one metrics row per section, an offline overview with
    every domain map, MultiQC's report; and the real `multiqc {results}` a user would run
    shows a General Statistics row per section with our columns."""
    results, run, _, _ = basic_run
    assert run.returncode == 0, output(run)
    metrics = pd.read_csv(results / "batch/qc_metrics.tsv", sep="\t", dtype={"slide": str})
    names = [sample for sample, _, _ in DEMO_SECTIONS]
    assert sorted(metrics["sample"]) == sorted(names)
    assert (metrics["status"] == "done").all() and (metrics["spots_after_qc"] > 0).all()
    assert (metrics["spots_read"] >= metrics["spots_after_qc"]).all()
    by_sample = metrics.set_index("sample")
    for sample, _, params in DEMO_SECTIONS:
        domains = ad.read_h5ad(results / sample / "domains.h5ad").obs["domain"]
        assert by_sample.loc[sample, "domains"] == domains.nunique() <= params["n_domains"]
    assert set(by_sample["donor"]) == {"d1", "d2"}  # the sheet's metadata columns
    page = (results / "batch/overview.html").read_text()
    assert page.count("data:image/png;base64,") == len(names) and "<script>" in page
    assert "http://" not in page and "https://" not in page  # opens offline
    # Rule multiqc's report, from its custom content.
    assert (results / "logs/multiqc/batch.log").is_file()
    general = pd.read_csv(results / "batch/multiqc_report_data/multiqc_general_stats.txt", sep="\t")
    assert sorted(general["Sample"]) == sorted(names)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "multiqc"), str(results), "--outdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    general = pd.read_csv(tmp_path / "multiqc_data/multiqc_general_stats.txt", sep="\t")
    assert sorted(general["Sample"]) == sorted(names)
    for column in ("spots_after_qc", "median_genes", "domains", "status"):
        assert any(c.endswith(column) for c in general.columns), general.columns


@pytest.mark.slow
def test_basic_run_report(basic_run):
    _, run, made, report = basic_run
    assert run.returncode == 0, output(run)
    assert made.returncode == 0, output(made)
    assert report.is_file() and "<html" in report.read_text(errors="replace").lower()


@pytest.mark.slow
def test_data_errors_fail_the_job_cleanly(tmp_path):
    """NaN coordinates (load) and more domains than spots (spaseg_train): clear log, no output.
    The tiny section also fails the default gate on median genes, and goes on past it with
    qc.on_fail: continue."""
    tiny = simulate_tissue(
        3, grid="square", n_rows=10, shape="full", n_genes=60, n_markers=8, n_noise_genes=5, seed=1
    )
    nan_xy = tiny.copy()
    nan_xy.obsm["spatial"] = np.asarray(nan_xy.obsm["spatial"], dtype=float)
    nan_xy.obsm["spatial"][:5] = np.nan
    nan_xy.write_h5ad(tmp_path / "nan_xy.h5ad")
    write_table(tiny, tmp_path / "tiny.csv")
    sheet = write_sheet(
        tmp_path / "samples.tsv",
        [
            {"sample": "nan_xy", "path": "nan_xy.h5ad", "platform": "h5ad", "n_domains": 3},
            {"sample": "too_many", "path": "tiny.csv", "platform": "table", "n_domains": 500},
        ],
    )
    short = tmp_path / "short.yaml"
    short.write_text(
        "qc:\n  gates:\n    min_spots: 10\n  on_fail: continue\n"
        "spaseg:\n  n_runs: 1\n  max_iter: 20\n  warmup_iter: 5\n"
    )
    results = tmp_path / "results"
    args = ["--keep-going", "--config", f"samples={sheet}", f"results={results}"]
    result = snakemake("--cores", "2", *args, workdir=tmp_path, configfiles=[short])
    assert result.returncode != 0, output(result)

    load_log = (results / "logs/load/nan_xy.log").read_text()
    assert "sample 'nan_xy'" in load_log and "NaN" in load_log, load_log
    train_log = (results / "logs/spaseg_train/too_many.log").read_text()
    assert "sample 'too_many'" in train_log and "n_domains" in train_log, train_log
    assert (results / "too_many/pca.h5ad").is_file()  # the chain ran up to the failing step
    gate_log = (results / "logs/qc_gate/too_many.log").read_text()
    assert "going on (qc.on_fail: continue): median genes per spot 48 < 50" in gate_log
    # The batch overview is written after a failed run too, with each section's failed step.
    metrics = pd.read_csv(results / "batch/qc_metrics.tsv", sep="\t").set_index("sample")
    assert metrics.loc["nan_xy", "failed_step"] == "load"
    assert metrics.loc["too_many", "failed_step"] == "spaseg_train"
    assert metrics.loc["too_many", "spots_after_qc"] > 0  # QC metrics of the steps it finished
    assert metrics.loc["too_many", "qc_gates_failed"] == "min_median_genes"
    page = (results / "batch/overview.html").read_text()
    assert "Failed sections" in page and "n_domains" in page  # the failed log's last lines
    for sample in ("nan_xy", "too_many"):
        assert not (results / sample / "domains.h5ad").exists()
        leftovers = [p.name for p in (results / sample).glob("*") if p.name.startswith(".")]
        assert not leftovers, f"temporary files left behind: {leftovers}"
