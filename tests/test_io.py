"""Readers in spaseg.io: round trips, validation and the error messages users see."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

from spaseg import InputError
from spaseg.datasets._visium_outs import write_visium_outs
from spaseg.io import (
    READERS,
    check_spatial,
    read,
    read_h5ad,
    read_table,
    read_visium,
    register_reader,
)

SAMPLE = "s1"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def make_adata(n_obs: int = 24, n_vars: int = 6, seed: int = 0) -> ad.AnnData:
    """Small Visium-like sample: integer counts, a hexagonal grid and pixel coordinates."""
    rng = np.random.default_rng(seed)
    rows, cols = np.divmod(np.arange(n_obs), 6)
    cols = 2 * cols + rows % 2  # Visium's offset rows
    obs = pd.DataFrame(
        {"array_row": rows, "array_col": cols, "region": rng.choice(["a", "b"], n_obs)},
        index=[f"AAAC{i:04d}-1" for i in range(n_obs)],
    )
    var = pd.DataFrame(
        {"gene_symbols": [f"Gene{j}" for j in range(n_vars)]},
        index=[f"ENSG{j:011d}" for j in range(n_vars)],
    )
    counts = sparse.csr_matrix(rng.poisson(2.0, size=(n_obs, n_vars)).astype(np.float32))
    adata = ad.AnnData(counts, obs=obs, var=var)
    # Pixel coordinates with fractions, so that rounding anywhere would show.
    adata.obsm["spatial"] = np.column_stack([50.0 * cols + 100.25, 86.6 * rows + 200.5])
    return adata


def dense(X) -> np.ndarray:
    return X.toarray() if sparse.issparse(X) else np.asarray(X)


def assert_contract(adata: ad.AnnData, path, platform: str) -> None:
    assert sparse.isspmatrix_csr(adata.X)
    assert adata.obsm["spatial"].dtype == np.float64
    assert adata.obsm["spatial"].shape == (adata.n_obs, 2)
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    assert adata.uns["spaseg_input"] == {"path": str(path), "platform": platform}


@contextmanager
def input_error(*, field: str, file, sample: str = SAMPLE, match: str | None = None):
    """Expect an InputError whose message names the sample, the file and the field."""
    with pytest.raises(InputError) as info:
        yield info
    message = str(info.value)
    assert f"sample {sample!r}" in message
    assert f"file {str(file)!r}" in message
    assert f"field {field!r}" in message
    if match is not None:
        assert re.search(match, message), message


# check_spatial ---------------------------------------------------------------------------


def test_check_spatial_accepts_valid_data():
    check_spatial(make_adata(), sample=SAMPLE, file="x.h5ad")


def no_spatial(adata):
    del adata.obsm["spatial"]


def nan_coordinates(adata):
    adata.obsm["spatial"][:3, 0] = np.nan


def inf_coordinate(adata):
    adata.obsm["spatial"][1, 1] = np.inf


def duplicate_names(adata):
    adata.obs_names = [adata.obs_names[0], *adata.obs_names[:-1]]


@pytest.mark.parametrize(
    ("damage", "field", "match"),
    [
        (no_spatial, 'obsm["spatial"]', "no spatial coordinates"),
        (nan_coordinates, 'obsm["spatial"]', "3 of 24 spots have NaN"),
        (inf_coordinate, 'obsm["spatial"]', "1 of 24 spots have NaN or infinite"),
        (duplicate_names, "obs_names", "more than once, e.g. ['AAAC0000-1']"),
    ],
)
def test_check_spatial_errors(damage, field, match):
    adata = make_adata()
    damage(adata)
    with input_error(field=field, file="x.h5ad", match=re.escape(match)):
        check_spatial(adata, sample=SAMPLE, file="x.h5ad")


@pytest.mark.parametrize(
    ("subset", "field"), [((slice(0, 0), slice(None)), "obs"), ((slice(None), slice(0, 0)), "var")]
)
def test_check_spatial_empty(subset, field):
    adata = make_adata()[subset].copy()
    with input_error(field=field, file="x.h5ad", match="no "):
        check_spatial(adata, sample=SAMPLE, file="x.h5ad")


# read_h5ad -----------------------------------------------------------------------------------


def test_read_h5ad_round_trip(tmp_path):
    original = make_adata()
    original.X = original.X.astype(np.int32)
    original.write_h5ad(path := tmp_path / "s.h5ad")
    adata = read_h5ad(path, sample=SAMPLE)
    assert_contract(adata, path, "h5ad")
    np.testing.assert_array_equal(dense(adata.X), dense(original.X))
    np.testing.assert_array_equal(adata.obsm["spatial"], original.obsm["spatial"])
    pd.testing.assert_frame_equal(adata.obs, original.obs)
    assert list(adata.var["gene_symbols"]) == list(original.var["gene_symbols"])


def test_read_h5ad_grid_only(tmp_path):
    """Visium grid indices become x, y in spot-centre distances (a column step is half of
    one, a row step sqrt(3)/2); a square grid's indices are used as they are."""
    original = make_adata()
    del original.obsm["spatial"]
    original.write_h5ad(path := tmp_path / "s.h5ad")
    adata = read_h5ad(path)
    col, row = (original.obs[c].to_numpy(np.float64) for c in ("array_col", "array_row"))
    expected = np.column_stack([col / 2, row * np.sqrt(3) / 2])
    np.testing.assert_allclose(adata.obsm["spatial"], expected)
    square = original.copy()
    square.obs["array_col"] = np.arange(square.n_obs) % 6  # every row and column parity
    square.write_h5ad(path := tmp_path / "square.h5ad")
    expected = square.obs[["array_col", "array_row"]].to_numpy(np.float64)
    np.testing.assert_array_equal(read_h5ad(path).obsm["spatial"], expected)


def test_read_h5ad_counts_from_layer(tmp_path):
    original = make_adata()
    counts = original.X.copy()
    original.layers["counts"] = counts
    original.X = np.log1p(counts)  # what a preprocessed file looks like
    original.write_h5ad(path := tmp_path / "s.h5ad")
    np.testing.assert_array_equal(dense(read_h5ad(path).X), dense(counts))


def test_read_h5ad_counts_from_raw(tmp_path):
    original = make_adata()
    counts = original.X.copy()
    original.raw = original
    original.X = np.log1p(counts)
    original.write_h5ad(path := tmp_path / "s.h5ad")
    np.testing.assert_array_equal(dense(read_h5ad(path).X), dense(counts))


def test_read_h5ad_gene_symbols_from_gene_name(tmp_path):
    original = make_adata()
    original.var = original.var.rename(columns={"gene_symbols": "gene_name"})
    original.write_h5ad(path := tmp_path / "s.h5ad")
    adata = read_h5ad(path)
    assert list(adata.var["gene_symbols"]) == list(original.var["gene_name"])


def test_read_h5ad_without_counts(tmp_path):
    original = make_adata()
    original.X = np.log1p(original.X)
    original.write_h5ad(path := tmp_path / "s.h5ad")
    with input_error(field="X", file=path, match="no raw counts"):
        read_h5ad(path, sample=SAMPLE)


def test_read_h5ad_without_coordinates(tmp_path):
    original = make_adata()
    del original.obsm["spatial"]
    del original.obs["array_row"]
    original.write_h5ad(path := tmp_path / "s.h5ad")
    with input_error(field='obsm["spatial"]', file=path, match="array_row"):
        read_h5ad(path, sample=SAMPLE)


def test_read_h5ad_nan_coordinates(tmp_path):
    original = make_adata()
    original.obsm["spatial"][:2] = np.nan
    original.write_h5ad(path := tmp_path / "s.h5ad")
    with input_error(field='obsm["spatial"]', file=path, match="2 of 24 spots"):
        read_h5ad(path, sample=SAMPLE)


def test_read_h5ad_missing_or_corrupt(tmp_path):
    with input_error(field="path", file=tmp_path / "no.h5ad", match="not found"):
        read_h5ad(tmp_path / "no.h5ad", sample=SAMPLE)
    (path := tmp_path / "bad.h5ad").write_text("not hdf5")
    with input_error(field="path", file=path, match="cannot read"):
        read_h5ad(path, sample=SAMPLE)


@pytest.mark.realdata
def test_read_h5ad_dlpfc():
    path = SHARED / "data" / "dlpfc" / "151673.h5ad"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    adata = read_h5ad(path, sample="151673")
    assert adata.shape == (3639, 5000)
    assert "array_row" in adata.obs
    assert_contract(adata, path, "h5ad")


# read_visium ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_read_visium_round_trip(tmp_path, version):
    original = make_adata()
    original.obs["in_tissue"] = 1
    original.obs.loc[original.obs_names[:4], "in_tissue"] = 0
    outs = write_visium_outs(original, tmp_path / "run" / "outs", version=version)
    expected_file = "tissue_positions.csv" if version == 2 else "tissue_positions_list.csv"
    assert (outs / "spatial" / expected_file).is_file()

    adata = read_visium(tmp_path / "run", sample=SAMPLE)  # the parent of outs/ works too
    assert_contract(adata, tmp_path / "run", "visium")
    kept = original[original.obs["in_tissue"] == 1]
    assert list(adata.obs_names) == list(kept.obs_names)
    np.testing.assert_array_equal(dense(adata.X), dense(kept.X))
    np.testing.assert_array_equal(adata.obsm["spatial"], kept.obsm["spatial"])
    for column in ("array_row", "array_col", "in_tissue"):
        np.testing.assert_array_equal(adata.obs[column], kept.obs[column])
    assert list(adata.var_names) == list(original.var_names)
    assert list(adata.var["gene_symbols"]) == list(original.var["gene_symbols"])
    scalefactors = json.loads((outs / "spatial" / "scalefactors_json.json").read_text())
    assert adata.uns["spatial"][SAMPLE]["scalefactors"] == scalefactors


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scanpy points to squidpy's reader
def test_visium_outs_with_images_match_scanpy(tmp_path):
    original = make_adata()
    outs = write_visium_outs(original, tmp_path / "outs", images=True)
    adata = read_visium(outs, library_id="lib")
    assert set(adata.uns["spatial"]["lib"]["images"]) == {"hires", "lowres"}
    # scanpy's own reader agrees on the layout and on which pixel column is x.
    reference = sc.read_visium(outs)
    np.testing.assert_array_equal(dense(reference.X), dense(adata.X))
    # scanpy parses the CSV a last digit less exactly than we do, hence allclose.
    np.testing.assert_allclose(reference.obsm["spatial"].astype(float), adata.obsm["spatial"])


def test_read_visium_optional_scalefactors(tmp_path):
    outs = write_visium_outs(make_adata(), tmp_path / "outs")
    (outs / "spatial" / "scalefactors_json.json").unlink()
    adata = read_visium(outs)
    assert "spatial" not in adata.uns and adata.n_obs == 24


@pytest.mark.parametrize(
    ("remove", "field"),
    [
        ("filtered_feature_bc_matrix.h5", "counts_file"),
        ("spatial/tissue_positions.csv", "tissue_positions"),
    ],
)
def test_read_visium_missing_file(tmp_path, remove, field):
    outs = write_visium_outs(make_adata(), tmp_path / "outs")
    (outs / remove).unlink()
    with input_error(field=field, file=outs / remove, match="not found"):
        read_visium(outs, sample=SAMPLE)


def test_read_visium_missing_folder(tmp_path):
    with input_error(field="path", file=tmp_path / "nowhere", match="folder not found"):
        read_visium(tmp_path / "nowhere", sample=SAMPLE)


def test_read_visium_bad_positions(tmp_path):
    outs = write_visium_outs(make_adata(), tmp_path / "outs")
    file = outs / "spatial" / "tissue_positions.csv"
    positions = pd.read_csv(file)
    positions.drop(columns="array_col").to_csv(file, index=False)
    with input_error(field="array_col", file=file, match="column missing"):
        read_visium(outs, sample=SAMPLE)
    positions.iloc[1:].to_csv(file, index=False)
    with input_error(field="barcode", file=file, match="1 of 24 barcodes"):
        read_visium(outs, sample=SAMPLE)
    positions.loc[:2, "pxl_row_in_fullres"] = np.nan
    positions.to_csv(file, index=False)
    with input_error(field="pxl_row_in_fullres", file=file, match="3 of 24 rows"):
        read_visium(outs, sample=SAMPLE)


# read_table ----------------------------------------------------------------------------------


def make_table(adata: ad.AnnData) -> pd.DataFrame:
    table = pd.DataFrame(dense(adata.X).astype(int), columns=adata.var["gene_symbols"])
    table.insert(0, "cell", adata.obs_names)
    table.insert(1, "px", adata.obsm["spatial"][:, 0])
    table.insert(2, "py", adata.obsm["spatial"][:, 1])
    table["cell_type"] = adata.obs["region"].to_numpy()
    return table


@pytest.mark.parametrize("name", ["cells.csv", "cells.tsv.gz", "cells.parquet"])
def test_read_table_round_trip(tmp_path, name):
    original = make_adata()
    path = tmp_path / name
    table = make_table(original)
    if name.endswith(".parquet"):
        table.to_parquet(path)
    else:
        table.to_csv(path, sep="," if ".csv" in name else "\t", index=False)

    adata = read_table(path, sample=SAMPLE, x="px", y="py", cell_id="cell")
    assert_contract(adata, path, "table")
    assert list(adata.obs_names) == list(original.obs_names)
    assert list(adata.var_names) == list(original.var["gene_symbols"])
    np.testing.assert_array_equal(dense(adata.X), dense(original.X))
    np.testing.assert_array_equal(adata.obsm["spatial"], original.obsm["spatial"])
    assert list(adata.obs["cell_type"]) == list(original.obs["region"])


def test_read_table_default_names(tmp_path):
    table = make_table(make_adata()).drop(columns="cell").rename(columns={"px": "x", "py": "y"})
    table.to_csv(path := tmp_path / "cells.csv")  # with pandas' unnamed index column
    adata = read_table(path)
    assert list(adata.obs_names[:2]) == ["0", "1"]
    assert list(adata.var_names) == [f"Gene{j}" for j in range(6)]


def drop_x(table):
    del table["px"]


def nan_y(table):
    table.loc[:4, "py"] = np.nan


def negative_count(table):
    table["Gene2"] = -table["Gene2"] - 1


def fractional_count(table):
    table["Gene4"] = table["Gene4"] + 0.5


def no_genes(table):
    table.drop(columns=[f"Gene{j}" for j in range(6)], inplace=True)


@pytest.mark.parametrize(
    ("damage", "field", "match"),
    [
        (drop_x, "px", r"not found; columns found: 'cell', 'py', 'Gene0'"),
        (nan_y, "py", "5 of 24 rows have a missing"),
        (negative_count, "Gene2", r"holds -\d+, not a count"),
        (fractional_count, "Gene4", r"holds \d+\.5, not a count"),
        (no_genes, "genes", "no gene columns"),
    ],
)
def test_read_table_errors(tmp_path, damage, field, match):
    table = make_table(make_adata())
    damage(table)
    table.to_csv(path := tmp_path / "cells.csv", index=False)
    with input_error(field=field, file=path, match=match):
        read_table(path, sample=SAMPLE, x="px", y="py", cell_id="cell")


def test_read_table_unknown_format(tmp_path):
    (path := tmp_path / "cells.xlsx").write_text("")
    with input_error(field="path", file=path, match="unknown table format '.xlsx'"):
        read_table(path, sample=SAMPLE)


# read (dispatcher) ---------------------------------------------------------------------------


def test_read_dispatches(tmp_path):
    make_adata().write_h5ad(path := tmp_path / "s.h5ad")
    assert read(path, "h5ad", sample=SAMPLE).uns["spaseg_input"]["platform"] == "h5ad"
    outs = write_visium_outs(make_adata(), tmp_path / "outs")
    assert (
        read(outs, "visium", sample=SAMPLE, counts_file="filtered_feature_bc_matrix.h5").n_obs == 24
    )


def test_read_unknown_platform(tmp_path):
    with input_error(
        field="platform", file=tmp_path, match="supported: 'h5ad', 'stereo-seq', 'table', 'visium'"
    ):
        read(tmp_path, "slide-seq", sample=SAMPLE)


def test_register_reader(monkeypatch, tmp_path):
    monkeypatch.setattr("spaseg.io._read.READERS", dict(READERS))  # leave the real table alone
    make_adata().write_h5ad(path := tmp_path / "s.h5ad")
    register_reader("custom", read_h5ad)
    assert read(path, "custom").n_obs == 24
    assert "custom" not in READERS


def test_write_visium_outs_needs_counts(tmp_path):
    adata = make_adata()
    adata.X = np.log1p(adata.X)
    with pytest.raises(InputError, match="field 'X'"):
        write_visium_outs(adata, tmp_path / "outs")
