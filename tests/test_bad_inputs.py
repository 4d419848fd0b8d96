"""The bad-input catalogue (docs/bad_inputs.md): every case run beside a good section.

One workflow run holds a good simulated section and one section per bad input. Each bad
section must end with spaseg's InputError naming the sample, the file (for the readers) and the
field as the last line of its job log and in run_summary.tsv, leave no output of the failed
step (nor a temporary file) behind, and not stop the good section; the inputs that get
documented handling instead must finish, with the handling stated in the log. Sample sheets
and configs that are rejected before any job runs are checked with dry runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse
from test_workflow import EXAMPLE, FINAL_FILES, output, snakemake, write_sheet

from spaseg.datasets._demo import write_table
from spaseg.datasets._simulate import simulate_tissue
from spaseg.datasets._stereoseq import write_stereoseq
from spaseg.datasets._visium_outs import write_visium_outs

# What each step writes: none of it may exist once the step failed.
STEP_OUTPUT = {
    "load": "raw.h5ad",
    "bin": "binned.h5ad",
    "qc": "qc.h5ad",
    "normalize_pca": "pca.h5ad",
    "spaseg_train": "domains.h5ad",
}
# QC settings of the run: the section "qc_empties" has fewer counts in every spot; the gates
# are set for these small simulated panels (60 genes), low enough to let "handful_of_spots"
# through and high enough to stop "few_genes".
MIN_COUNTS = 50
CONFIG = f"""\
qc:
  min_counts_per_spot: {MIN_COUNTS}
  gates:
    min_spots: 5
    min_median_genes: 20
spaseg:
  n_runs: 1
  max_iter: 20
  warmup_iter: 5
"""
# The line a Python traceback ends with (as workflow/rules/common.smk reads it).
ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception)): (.+)$")


# --- inputs: one simulated section, damaged in every way the catalogue lists -----------------


def section(n_rows: int = 12) -> ad.AnnData:
    """A small simulated section: square grid, n_rows x n_rows spots, 60 genes, raw counts."""
    return simulate_tissue(
        3, grid="square", n_rows=n_rows, shape="full", n_genes=60, n_markers=8, seed=1
    )


def dense(adata: ad.AnnData) -> np.ndarray:
    return adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)


def h5ad(make: Callable[[], ad.AnnData] = lambda: section()) -> Callable[[Path], Path]:
    """Writes the section ``make`` returns as ``<path>.h5ad`` (built when the run is set up,
    not when the tests are collected)."""

    def write(path: Path) -> Path:
        make().write_h5ad(path.with_suffix(".h5ad"))
        return path.with_suffix(".h5ad")

    return write


def damaged(make, change: Callable[[bytes], bytes], suffix: str) -> Callable[[Path], Path]:
    """A good file written by ``make``, then its bytes changed (truncated, overwritten)."""

    def write(path: Path) -> Path:
        good = make(path.with_name(path.name + "_good"))
        target = path.with_name(path.name + suffix)
        target.write_bytes(change(good.read_bytes()))
        return target

    return write


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def scrambled(data: bytes) -> bytes:
    """The HDF5 signature and superblock start kept, the rest random bytes."""
    noise = np.random.default_rng(0).integers(0, 256, len(data) - 16, dtype=np.uint8)
    return data[:16] + noise.tobytes()


def table(change: Callable[[pd.DataFrame], pd.DataFrame] = lambda t: t, gz: bool = False):
    def write(path: Path) -> Path:
        csv = write_table(section(), path.with_suffix(".csv"))
        frame = change(pd.read_csv(csv))
        target = path.with_suffix(".csv.gz" if gz else ".csv")
        frame.to_csv(target, index=False)
        return target

    return write


def stereoseq(fmt: str) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        files = write_stereoseq(
            path.with_name(path.name + "_chip"),
            n_bins=(12, 12),
            n_genes=40,
            n_domains=3,
            formats=(fmt,),
            gef_bins=(1,),
        )
        return files[fmt]

    return write


def gem_text(header: str) -> Callable[[Path], Path]:
    """A GEM with the given header line over well-formed rows."""

    def write(path: Path) -> Path:
        rows = [
            f"Gene{g}\t{x}\t{y}\t{1 + (x + g) % 3}"
            for g in range(5)
            for x in range(6)
            for y in range(6)
        ]
        target = path.with_suffix(".gem")
        target.write_text(header + "\n" + "\n".join(rows) + "\n")
        return target

    return write


def visium_without_positions(path: Path) -> Path:
    outs = write_visium_outs(section(), path.with_name(path.name + "_outs"))
    (outs / "spatial" / "tissue_positions.csv").unlink()
    return outs


def without_coordinates() -> ad.AnnData:
    """Neither obsm["spatial"] nor the grid indices the h5ad reader falls back on."""
    adata = section()
    del adata.obsm["spatial"]
    adata.obs = adata.obs.drop(columns=["array_row", "array_col"])
    return adata


def handful() -> ad.AnnData:
    """Six spots, two rows of three."""
    adata = section()
    obs = adata.obs
    return adata[(obs["array_row"] < 2).to_numpy() & (obs["array_col"] < 3).to_numpy()].copy()


def with_coordinates(value: float, n: int) -> ad.AnnData:
    adata = section()
    adata.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=float)
    adata.obsm["spatial"][:n, 0] = value
    return adata


def with_counts(change: Callable[[np.ndarray], np.ndarray]) -> Callable[[], ad.AnnData]:
    def make() -> ad.AnnData:
        adata = section()
        adata.X = change(dense(adata).astype(np.float32))
        return adata

    return make


def log_normalised() -> ad.AnnData:
    adata = section()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    return adata


def repeated(names: pd.Index, n: int = 2) -> list[str]:
    return [names[0]] * n + list(names[n:])


def with_repeated_barcodes() -> ad.AnnData:
    adata = section()
    adata.obs_names = repeated(adata.obs_names)
    return adata


def with_repeated_genes() -> ad.AnnData:
    adata = section()
    adata.var_names = repeated(adata.var_names)
    return adata


def few_counts(X: np.ndarray) -> np.ndarray:
    """At most one count in each of 20 genes: every spot below MIN_COUNTS, QC removes all."""
    return np.minimum(X, 1) * (np.arange(X.shape[1]) < 20)


def few_genes(X: np.ndarray) -> np.ndarray:
    """Counts in 15 genes only, ten times as many: spots pass the count filter, but the
    median spot has fewer detected genes than the run's gate asks."""
    return X * (np.arange(X.shape[1]) < 15) * 10


def negative(X: np.ndarray) -> np.ndarray:
    return np.where(X > 5, -X, X)


def fractional(frame: pd.DataFrame) -> pd.DataFrame:
    frame["Gene0004"] = frame["Gene0004"] + 0.5
    return frame


@dataclass
class Case:
    """A catalogue row: how to make the input, and what the user must get.

    ``step`` None: the section finishes, and each step's log in ``logs`` holds its words.
    Otherwise ``step`` fails with InputError naming the sample and ``field`` (and the input
    file, for the readers), its message holding ``words``.
    """

    sample: str
    make: Callable[[Path], Path]
    platform: str = "h5ad"
    step: str | None = "load"
    field: str | None = None
    words: tuple[str, ...] = ()
    n_domains: int = 3
    logs: dict[str, tuple[str, ...]] | None = None


CASES = [
    # Truncated or corrupt files.
    Case("h5ad_truncated", damaged(h5ad(), half, ".h5ad"), field="path", words=("truncated",)),
    Case("h5ad_corrupt", damaged(h5ad(), scrambled, ".h5ad"), field="path", words=("damaged",)),
    Case("table_gz_truncated", damaged(table(gz=True), half, ".csv.gz"), "table", field="path", words=("truncated",)),
    Case("gem_gz_truncated", damaged(stereoseq("gem"), half, ".gem.gz"), "stereo-seq", "bin", "path", ("truncated",)),
    Case("gef_truncated", damaged(stereoseq("gef"), half, ".gef"), "stereo-seq", "bin", "path", ("truncated",)),
    Case("gef_corrupt", damaged(stereoseq("gef"), scrambled, ".gef"), "stereo-seq", "bin", "path", ("damaged",)),
    # Coordinates.
    Case("no_coordinates", h5ad(without_coordinates), field='obsm["spatial"]', words=("no coordinates",)),
    Case("nan_coordinates", h5ad(lambda: with_coordinates(np.nan, 3)), field='obsm["spatial"]', words=("3 of 144 spots", "NaN")),
    Case("inf_coordinates", table(lambda t: t.assign(x=t["x"].where(t.index > 0, np.inf))), "table", field="x", words=("infinite",)),
    # Names.
    Case("duplicate_barcodes", h5ad(with_repeated_barcodes), field="obs_names", words=("more than once",)),
    Case("duplicate_genes", h5ad(with_repeated_genes), step=None, logs={"load": ("field 'var_names'", "gene names occur more than once", "renamed")}),
    # Counts.
    Case("negative_counts", h5ad(with_counts(negative)), field="X", words=("negative",)),
    Case("fractional_counts", table(fractional), "table", field="Gene0004", words=("not a count",)),
    Case("log_normalised", h5ad(log_normalised), field="X", words=("log-normalised", "raw counts")),
    Case("all_zero", h5ad(with_counts(np.zeros_like)), field="X", words=("every count is zero",)),
    # Sizes.
    Case("handful_of_spots", h5ad(handful), step=None, n_domains=2, logs={"normalize_pca": ("using 5",), "svg": ("not tested",)}),
    Case("too_many_domains", h5ad(lambda: section(5)), step="spaseg_train", field="n_domains", n_domains=30, words=("larger than the number of spots",)),
    # Columns.
    Case("table_renamed_column", table(lambda t: t.rename(columns={"x": "X"})), "table", field="x", words=("column not found", "'X'")),
    Case("table_missing_column", table(lambda t: t.drop(columns="y")), "table", field="y", words=("column not found",)),
    Case("gem_renamed_column", gem_text("gene\tx\ty\tMIDCount"), "stereo-seq", "bin", "geneID", ("lacks required column",)),
    Case("gem_missing_column", gem_text("geneID\tx\ty"), "stereo-seq", "bin", "MIDCount|MIDCounts|UMICount", ("lacks required column",)),
    Case("visium_no_positions", visium_without_positions, "visium", field="tissue_positions", words=("file not found",)),
]  # fmt: skip
# Stopped by the QC gates (rule qc_gate): qc_failed, not failed.
GATE_CASES = [
    Case("qc_empties", h5ad(with_counts(few_counts)), step="qc_gate", field="qc.gates.min_spots", words=("spots after QC 0 < 5",)),
    Case("few_genes", h5ad(with_counts(few_genes)), step="qc_gate", field="qc.gates.min_median_genes", words=("median genes per spot", "< 20")),
]  # fmt: skip
GOOD = Case("good", h5ad(), step=None)
SPACES = "with spaces/séction ü 東京"  # the good section's folder: spaces and non-ASCII work


@pytest.fixture(scope="module")
def catalogue_run(tmp_path_factory):
    """One workflow run over the good section and every case: the sheet's rows, the results
    folder, the finished run and run_summary.tsv (by sample)."""
    workdir = tmp_path_factory.mktemp("bad inputs ü")
    data = workdir / "data"
    rows = []
    for case in [GOOD, *CASES, *GATE_CASES]:
        folder = data / (SPACES if case is GOOD else case.sample)
        folder.mkdir(parents=True)
        path = case.make(folder / case.sample)
        row = {"sample": case.sample, "path": str(path.relative_to(workdir))}
        rows.append({**row, "platform": case.platform, "n_domains": case.n_domains})
    sheet = write_sheet(workdir / "samples.tsv", rows)
    config = workdir / "short.yaml"
    config.write_text(CONFIG)
    results = workdir / "results ü"
    # One thread per job: two jobs at a time on 2 cores (the sections are tiny).
    threads = [f"{rule}=1" for rule in ("bin", "normalize_pca", "spaseg_train", "svg")]
    args = ["--cores", "2", "--keep-going", "--set-threads", *threads,
            "--config", f"samples={sheet}", f"results={results}"]  # fmt: skip
    run = snakemake(*args, workdir=workdir, configfiles=[config], timeout=900)
    summary = pd.read_csv(results / "run_summary.tsv", sep="\t", dtype=str).fillna("")
    return {"rows": pd.DataFrame(rows).set_index("sample"), "results": results, "run": run,
            "summary": summary.set_index("sample")}  # fmt: skip


def last_error(log: Path) -> str:
    """The error a log ends with, as "SomeError: message" (no module path); nothing but blank
    lines may follow it."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    match = ERROR_LINE.match(lines[-1]) if lines else None
    assert match, f"{log} does not end with an error:\n" + "\n".join(lines[-15:])
    return f"{match[1]}: {match[2]}"


@pytest.mark.slow
def test_good_section_finishes(catalogue_run):
    """The good section, in a folder with spaces and non-ASCII characters, runs to the end."""
    results = catalogue_run["results"]
    assert SPACES in catalogue_run["rows"].at["good", "path"]
    for name in FINAL_FILES:
        assert (results / "good" / name).is_file(), output(catalogue_run["run"])
    assert catalogue_run["summary"].at["good", "status"] == "done"
    assert catalogue_run["run"].returncode != 0  # the bad sections failed


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c.step], ids=lambda c: c.sample)
def test_bad_input_fails_cleanly(catalogue_run, case):
    results, summary = catalogue_run["results"], catalogue_run["summary"]
    log = results / "logs" / case.step / f"{case.sample}.log"
    line = last_error(log)
    assert line.startswith(f"InputError: sample {case.sample!r}, "), line
    assert f"field {case.field!r}" in line, line
    if case.step in ("load", "bin"):  # the readers name the input file too
        path = catalogue_run["rows"].at[case.sample, "path"]
        assert re.search(rf"file '[^']*{re.escape(Path(path).name)}", line), line
    for word in case.words:
        assert word in line, line
    # The run summary has it, and so has the end of Snakemake's output.
    row = summary.loc[case.sample]
    assert (row["status"], row["failed_step"], row["error"]) == ("failed", case.step, line)
    assert f"{case.sample}: failed at {case.step}" in output(catalogue_run["run"])
    assert line in output(catalogue_run["run"])
    # No output of the failed step nor of any step after it, no temporary file.
    made = STEP_OUTPUT[case.step]
    later = FINAL_FILES[FINAL_FILES.index(made) :] if made in FINAL_FILES else FINAL_FILES
    assert not [name for name in {made, *later} if (results / case.sample / name).exists()]
    assert not list((results / case.sample).glob(".*")), "temporary files left behind"


@pytest.mark.slow
@pytest.mark.parametrize("case", GATE_CASES, ids=lambda c: c.sample)
def test_qc_gate_stops_section_after_its_qc_plot(catalogue_run, case):
    """qc_failed with the gate, its value and threshold in the summary; the QC plot and the
    gate table are there, nothing after QC is."""
    results, summary = catalogue_run["results"], catalogue_run["summary"]
    line = last_error(results / "logs" / "qc_gate" / f"{case.sample}.log")
    assert line.startswith(f"QCGateError: sample {case.sample!r}, file "), line
    assert f"field {case.field!r}" in line and "qc.on_fail: skip" in line, line
    for word in case.words:
        assert word in line, line
    row = summary.loc[case.sample]
    assert (row["status"], row["failed_step"], row["error"]) == ("qc_failed", "qc_gate", line)
    assert f"{case.sample}: qc_failed at qc_gate" in output(catalogue_run["run"])
    folder = results / case.sample
    assert (folder / "qc.png").is_file() and (folder / "qc_gates.tsv").is_file()
    assert not [
        p.name for p in folder.iterdir() if p.name not in ("qc.h5ad", "qc.png", "qc_gates.tsv")
    ]
    overview = pd.read_csv(results / "batch" / "qc_metrics.tsv", sep="\t").set_index("sample")
    assert case.field.rsplit(".", 1)[1] in overview.at[case.sample, "qc_gates_failed"].split(",")


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if not c.step], ids=lambda c: c.sample)
def test_handled_input_finishes_and_says_so(catalogue_run, case):
    results = catalogue_run["results"]
    for name in FINAL_FILES:
        assert (results / case.sample / name).is_file(), name
    assert catalogue_run["summary"].at[case.sample, "status"] == "done"
    for step, words in case.logs.items():
        log = (results / "logs" / step / f"{case.sample}.log").read_text()
        for word in words:
            assert word in log, log


@pytest.mark.slow
def test_no_temporary_files_left(catalogue_run):
    results = catalogue_run["results"]
    leftovers = [p for p in results.rglob("*") if ".tmp" in p.name or ".partial" in p.name]
    assert not leftovers, leftovers


# --- rejected before any job runs: dry runs ----------------------------------------------------


def dry_run(workdir: Path, rows: list[dict], *configs: Path):
    sheet = write_sheet(workdir / "samples.tsv", rows)
    results = workdir / "results"
    args = ["-n", "--cores", "1", "--config", f"samples={sheet}", f"results={results}"]
    return snakemake(*args, workdir=workdir, configfiles=configs), results


def table_row(sample: str = "good", **columns) -> dict:
    return {"sample": sample, "path": str(EXAMPLE), "platform": "table", **columns}


@pytest.mark.parametrize("name", ["../up", "a/../../b", "a;rm -rf ~", "$(touch pwned)", "a b"])
def test_unsafe_sample_name_is_rejected(tmp_path, name):
    result, results = dry_run(tmp_path, [table_row(), table_row(name)])
    message = output(result)
    assert result.returncode != 0, message
    assert f"sample {name!r}" in message and "field 'sample'" in message, message
    assert "letters, digits" in message, message
    assert not results.exists() and not (tmp_path / "pwned").exists()


def test_unsafe_group_name_is_rejected(tmp_path):
    result, results = dry_run(tmp_path, [table_row(group="g;rm -rf ~")])
    message = output(result)
    assert result.returncode != 0, message
    assert "sample 'good'" in message and "field 'group'" in message, message
    assert not results.exists()


@pytest.mark.parametrize(
    ("platform", "path", "want"),
    [("visium", EXAMPLE, "a folder"), ("h5ad", EXAMPLE.parent, "a file")],
    ids=["visium-file", "h5ad-folder"],
)
def test_path_of_the_wrong_kind_is_rejected(tmp_path, platform, path, want):
    result, results = dry_run(tmp_path, [table_row(platform=platform, path=str(path))])
    message = output(result)
    assert result.returncode != 0, message
    assert "sample 'good'" in message and "field 'path'" in message and want in message, message
    assert not results.exists()


def test_yaml_tag_that_runs_code_is_rejected(tmp_path):
    """Snakemake's loader refuses the tag (nothing runs); it names neither file nor key."""
    pwned = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f'results: !!python/object/apply:os.system ["touch {pwned}"]\n')
    result, results = dry_run(tmp_path, [table_row()], config)
    message = output(result)
    assert result.returncode != 0, message
    assert "not valid JSON or YAML" in message, message
    assert not pwned.exists() and not results.exists()


@pytest.mark.parametrize(
    ("yaml", "key"),
    [
        ("qc:\n  max_pct_mt: !!python/name:os.system\n", "qc.max_pct_mt"),
        ("spaseg:\n  k_range: !!python/tuple [3, 12]\n", "spaseg.k_range"),
    ],
    ids=["python-name", "python-tuple"],
)
def test_yaml_python_objects_are_rejected(tmp_path, yaml, key):
    """Tags the loader does build into Python objects: refused by config key."""
    config = tmp_path / "tagged.yaml"
    config.write_text(yaml)
    result, results = dry_run(tmp_path, [table_row()], config)
    message = output(result)
    assert result.returncode != 0, message
    assert f"config key {key!r}" in message and "Python tags" in message, message
    assert not results.exists()


# --- format variants of the cases, checked on the reader alone ---------------------------------


def test_repeated_table_columns_are_kept_and_logged(tmp_path, caplog):
    import spaseg

    frame = pd.read_csv(write_table(section(), tmp_path / "s.csv"))
    frame.columns = [*frame.columns[:-1], frame.columns[-2]]  # last gene named like the one before
    frame.to_csv(path := tmp_path / "repeated.csv", index=False)
    with caplog.at_level("WARNING", logger="spaseg"):
        adata = spaseg.io.read(path, "table", sample="s1")
    assert adata.n_vars == section().n_vars
    assert "sample 's1'" in caplog.text and "occur more than once" in caplog.text
    assert f"{frame.columns[-1]}.1" in caplog.text


def test_gem_with_only_zero_counts_is_refused(tmp_path):
    import spaseg

    (path := tmp_path / "zero.gem").write_text("geneID\tx\ty\tMIDCount\nA\t1\t2\t0\n")
    with pytest.raises(spaseg.InputError, match=r"field 'MIDCount': every count is zero"):
        spaseg.io.read_stereoseq(path, sample="s1")


def section_of(X: np.ndarray) -> ad.AnnData:
    adata = ad.AnnData(sparse.csr_matrix(X.astype(np.float32)))
    adata.obsm["spatial"] = np.column_stack([np.arange(len(X)), np.zeros(len(X))])
    return adata


@pytest.mark.parametrize(
    ("X", "field", "words"),
    [
        (np.array([[0, 0, 0], [0, 0, 0], [1, 2, 3]]), "qc.min_counts_per_spot", "median total"),
        (np.array([[1, 2, 0], [2, 4, 0], [3, 6, 0]]), "X", "same normalised expression"),
        (np.array([[1, 2, 0], [2, 4, 1]]), "pca.n_comps", "too few spots"),
    ],
    ids=["half-empty", "all-alike", "two-spots"],
)
def test_sections_pca_cannot_use(X, field, words):
    import spaseg

    with pytest.raises(spaseg.InputError, match=re.escape(f"field {field!r}") + ".*" + words):
        spaseg.pp.normalize_pca(section_of(X), sample="s1")


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [("x,y,G1\n", "rows", "no rows"), ("", "path", "truncated or damaged")],
    ids=["header-only", "empty"],
)
def test_table_without_rows(tmp_path, text, field, words):
    import spaseg

    (path := tmp_path / "s.csv").write_text(text)
    with pytest.raises(spaseg.InputError, match=re.escape(f"field {field!r}") + ".*" + words):
        spaseg.io.read(path, "table", sample="s1")
