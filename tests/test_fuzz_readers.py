"""Fuzzing the readers and the preprocessing: random small inputs either give a valid AnnData or
raise spaseg.InputError, never another exception (docs/bad_inputs.md).

Matrices, coordinates, names and sample-sheet rows are drawn with hypothesis, written as the
files users hand in (h5ad, CSV table, GEM) and read with ``spaseg.io.read``; what a reader
accepts then goes through ``spaseg.pp.qc`` and ``spaseg.pp.normalize_pca``. Any exception other
than InputError is a bug in the library.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse

import spaseg
from spaseg import InputError
from spaseg.io._readers import is_count_matrix

SAMPLE = "fuzz"
# No example database (no .hypothesis/ folder in the checkout); few, small examples: the file
# runs in well under a minute on 2 cores. SPASEG_FUZZ_EXAMPLES=5000 fuzzes for longer.
FUZZ = settings(
    max_examples=int(os.environ.get("SPASEG_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values a count matrix may hold: mostly counts, sometimes what users hand in by mistake.
SPECIAL_VALUES = [np.nan, np.inf, -np.inf, -1.0, -3.0, 0.5, 1.25, 7.1, 1e9]
cell_values = st.one_of(
    st.integers(0, 30).map(float),
    st.just(0.0),
    st.sampled_from(SPECIAL_VALUES),
    st.floats(-5, 50, allow_nan=False),
)
coordinate_values = st.one_of(
    st.integers(-5, 40).map(float),
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e12]),
    st.floats(-100, 100, allow_nan=False),
)
names = st.sampled_from(["G0", "G1", "G2", "MT-CO1", "mt-nd1", "x", "y", "Gène", "a b", "0"])


@st.composite
def sections(draw):
    """(counts, coordinates, gene names, spot names).

    Half the examples are clean (counts, a grid, unique spot names; gene names may repeat,
    which readers handle), so that they reach pp; the other half may be empty, hold NaN,
    infinite, negative or fractional values, or repeat coordinates and barcodes.
    """
    clean = draw(st.booleans())
    n_obs = draw(st.integers(3, 12) if clean else st.integers(0, 12))
    n_vars = draw(st.integers(2, 6) if clean else st.integers(0, 6))
    values = st.integers(0, 30).map(float) if clean else cell_values
    counts = draw(arrays(np.float64, (n_obs, n_vars), elements=values))
    kind = "grid" if clean else draw(st.sampled_from(["grid", "constant", "duplicated", "any"]))
    if kind == "grid":
        coords = np.column_stack([np.arange(n_obs) % 4, np.arange(n_obs) // 4]).astype(float)
    elif kind == "constant":
        coords = np.full((n_obs, 2), 3.0)
    elif kind == "duplicated":
        coords = np.repeat(draw(arrays(np.float64, (1, 2), elements=coordinate_values)), n_obs, 0)
    else:
        coords = draw(arrays(np.float64, (n_obs, 2), elements=coordinate_values))
    genes = draw(st.lists(names, min_size=n_vars, max_size=n_vars))
    if draw(st.booleans()):
        genes = [f"Gene{j}" for j in range(n_vars)]
    spots = [f"s{i}" for i in range(n_obs)]
    if not clean and n_obs > 1 and draw(st.booleans()):
        spots[-1] = spots[0]  # a repeated barcode
    return counts, coords, genes, spots


# --- writers: each makes the file a user would hand in --------------------------------------


def write_h5ad(folder: Path, counts, coords, genes, spots) -> Path:
    adata = ad.AnnData(
        X=counts.astype(np.float32),
        obs=pd.DataFrame(index=pd.Index(spots)),
        var=pd.DataFrame(index=pd.Index(genes)),
    )
    adata.obsm["spatial"] = coords
    path = folder / "section.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about repeated names
        adata.write_h5ad(path)
    return path


def write_csv(folder: Path, counts, coords, genes, spots) -> Path:
    table = pd.DataFrame(counts, columns=genes)
    table.insert(0, "y", coords[:, 1], allow_duplicates=True)
    table.insert(0, "x", coords[:, 0], allow_duplicates=True)
    path = folder / "section.csv"
    table.to_csv(path, index=False)
    return path


def write_gem(folder: Path, counts, coords, genes, spots) -> Path:
    """One GEM row per non-zero cell; coordinates and counts written as they come (a GEM
    should hold non-negative integers, so the fractional and special values test the reader)."""
    rows = ["geneID\tx\ty\tMIDCount"]
    for i, j in zip(*np.nonzero(counts), strict=True):
        x, y = coords[i]
        rows.append(f"{genes[j]}\t{_gem_number(x)}\t{_gem_number(y)}\t{_gem_number(counts[i, j])}")
    path = folder / "section.gem"
    path.write_text("\n".join(rows) + "\n")
    return path


def _gem_number(value: float) -> str:
    return str(int(value)) if np.isfinite(value) and value == int(value) else str(value)


WRITERS = {"h5ad": write_h5ad, "table": write_csv, "stereo-seq": write_gem}


# --- what a valid result is -----------------------------------------------------------------


def assert_valid_input(adata: ad.AnnData) -> None:
    """The reader contract: spots, genes, finite (x, y), raw counts, unique names."""
    assert adata.n_obs > 0 and adata.n_vars > 0
    coords = adata.obsm["spatial"]
    assert coords.shape == (adata.n_obs, 2) and np.isfinite(coords).all()
    assert sparse.issparse(adata.X) and adata.X.nnz > 0
    assert is_count_matrix(adata.X)
    assert adata.obs_names.is_unique and adata.var_names.is_unique


# Settings of qc and normalize_pca, from none to strict.
pp_settings = st.fixed_dictionaries(
    {
        "min_spots_per_gene": st.integers(0, 3),
        "min_genes_per_spot": st.integers(0, 2),
        "min_counts_per_spot": st.integers(0, 5),
        "max_pct_mt": st.sampled_from([None, 0.0, 50.0]),
        "detected_quantile": st.sampled_from([0.0, 0.05, 0.5]),
    }
)
pca_settings = st.fixed_dictionaries(
    {
        "n_comps": st.integers(1, 4),
        "scale": st.booleans(),
        "target_sum": st.sampled_from([None, 1e4]),
    }
)


def _valid_or_input_error(step: str, call):
    """``call()``'s result, or None after an InputError that names the sample (any other
    exception fails the test)."""
    try:
        return call()
    except InputError as err:
        assert f"sample {SAMPLE!r}" in str(err)
        event(f"{step}: InputError, field {err.field}")
        return None


def run_pp(adata: ad.AnnData, qc_kwargs: dict, pca_kwargs: dict) -> None:
    """QC then normalisation + PCA: each either returns a valid result or raises InputError."""
    qc = _valid_or_input_error(
        "qc", lambda: spaseg.pp.qc(adata, **qc_kwargs, sample=SAMPLE, copy=True)
    )
    if qc is None:
        return
    assert 0 < qc.n_obs <= adata.n_obs and 0 < qc.n_vars <= adata.n_vars
    assert is_count_matrix(qc.X)
    pca = _valid_or_input_error(
        "normalize_pca", lambda: spaseg.pp.normalize_pca(qc, **pca_kwargs, sample=SAMPLE)
    )
    if pca is None:
        return
    event("normalize_pca: valid")  # --hypothesis-show-statistics: how far examples get
    embedding = pca.obsm["X_pca"]
    assert embedding.shape[0] == pca.n_obs and 1 <= embedding.shape[1] <= pca_kwargs["n_comps"]
    assert np.isfinite(embedding).all()
    assert is_count_matrix(pca.layers["counts"])


# --- the fuzz tests ---------------------------------------------------------------------------


@FUZZ
@given(
    section=sections(),
    platform=st.sampled_from(sorted(WRITERS)),
    qc_kwargs=pp_settings,
    pca_kwargs=pca_settings,
)
def test_readers_and_pp_return_valid_data_or_input_error(section, platform, qc_kwargs, pca_kwargs):
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = WRITERS[platform](Path(folder), *section)
        kwargs = {"bin_size": 1} if platform == "stereo-seq" else {}
        try:
            adata = spaseg.io.read(path, platform, sample=SAMPLE, **kwargs)
        except InputError as err:
            message = str(err)
            assert f"sample {SAMPLE!r}" in message and f"file {str(path)!r}" in message
            assert err.field, message
            event(f"read: InputError, field {err.field}")
            return
        assert_valid_input(adata)
        run_pp(adata, qc_kwargs, pca_kwargs)


@FUZZ
@given(section=sections(), dense=st.booleans(), qc_kwargs=pp_settings, pca_kwargs=pca_settings)
def test_pp_on_any_anndata(section, dense, qc_kwargs, pca_kwargs):
    """Data that did not come through a reader (a library user's AnnData): pp checks X too."""
    counts, coords, genes, spots = section
    X = counts.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.AnnData(X if dense else sparse.csr_matrix(X))
        adata.obsm["spatial"] = coords
        run_pp(adata, qc_kwargs, pca_kwargs)


# A sample-sheet row: names users type (path traversal, shell characters, non-ASCII), the
# platforms and paths that exist or not.
sheet_rows = st.fixed_dictionaries(
    {
        "sample": st.one_of(
            st.sampled_from(["s1", "../up", "a;rm -rf ~", "$(id)", "séction", "a b", ""]),
            st.text(max_size=12),
        ),
        "platform": st.one_of(
            st.sampled_from(["h5ad", "table", "visium", "stereo-seq"]), st.text(max_size=8)
        ),
        "path": st.sampled_from(["good.h5ad", "good.csv", "missing.h5ad", ".", "dir with space"]),
    }
)


@pytest.fixture(scope="module")
def sheet_folder(tmp_path_factory) -> Path:
    """Files a sheet row may name: a good h5ad and CSV, a folder with a space in its name."""
    folder = tmp_path_factory.mktemp("fuzz sheet ü")
    counts = np.arange(12, dtype=np.float64).reshape(4, 3)
    coords = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    genes = ["G0", "G1", "G2"]
    write_h5ad(folder, counts, coords, genes, ["a", "b", "c", "d"]).rename(folder / "good.h5ad")
    write_csv(folder, counts, coords, genes, None).rename(folder / "good.csv")
    (folder / "dir with space").mkdir()
    return folder


@FUZZ
@given(row=sheet_rows)
def test_sample_sheet_rows_through_read(sheet_folder, row):
    """Whatever a sheet row says, spaseg.io.read gives data or an InputError naming the sample."""
    try:
        adata = spaseg.io.read(sheet_folder / row["path"], row["platform"], sample=row["sample"])
    except InputError as err:
        assert f"sample {row['sample']!r}" in str(err) and err.field
        return
    assert_valid_input(adata)
