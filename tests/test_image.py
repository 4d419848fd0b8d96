"""Spots -> image pixels and the neighbour graph on occupied pixels."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import hex_section

from spaseg import InputError
from spaseg.pp import spot_image


def test_hex_grid_has_no_checkerboard(hex_adata):
    layout = spot_image(hex_adata)
    assert layout.grid == "hex"
    # One spot per pixel, and the tissue (a full rectangle here) fills the image completely.
    assert layout.n_pixels == hex_adata.n_obs
    assert layout.mask().all()
    assert layout.shape == (16, 16)


def test_hex_interior_spots_have_six_neighbours(hex_adata):
    layout = spot_image(hex_adata)
    degree = np.bincount(layout.edges.ravel(), minlength=layout.n_pixels)
    rows = hex_adata.obs["array_row"].to_numpy()
    cols = hex_adata.obs["array_col"].to_numpy()
    interior = (rows > 0) & (rows < rows.max()) & (cols > 1) & (cols < cols.max() - 1)
    assert (degree[layout.spot_pixel[interior]] == 6).all()
    assert degree.max() == 6


def test_hex_edges_join_true_neighbours_only(hex_adata):
    layout = spot_image(hex_adata)
    lattice = np.column_stack([hex_adata.obs["array_row"], hex_adata.obs["array_col"]])
    first_spot = np.empty(layout.n_pixels, dtype=int)
    first_spot[layout.spot_pixel] = np.arange(hex_adata.n_obs)
    a, b = lattice[first_spot[layout.edges[:, 0]]], lattice[first_spot[layout.edges[:, 1]]]
    d = np.abs(a - b)
    assert set(map(tuple, d)) <= {(0, 2), (1, 1)}


def test_image_values_and_background():
    adata = hex_section(n_rows=6, n_cols=6)
    adata = adata[adata.obs["array_row"] != 3].copy()  # a gap: background inside the image
    layout = spot_image(adata)
    image = layout.to_image(adata.obsm["X_pca"])
    assert image.shape == (5, *layout.shape)
    assert not layout.mask()[3].any()
    assert np.all(image[:, 3] == 0)
    row, col = adata.obs["array_row"].iloc[7], adata.obs["array_col"].iloc[7] // 2
    np.testing.assert_allclose(image[:, row, col], adata.obsm["X_pca"][7])


def test_square_grid_four_neighbours():
    r, c = np.meshgrid(np.arange(5), np.arange(4), indexing="ij")
    obs = pd.DataFrame({"array_row": r.ravel(), "array_col": c.ravel()})
    obs.index = obs.index.astype(str)
    layout = spot_image(ad.AnnData(obs=obs))
    assert layout.grid == "square"
    assert layout.shape == (5, 4)
    assert len(layout.edges) == 5 * 3 + 4 * 4


def test_free_coordinates_are_quantised_and_averaged():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, size=(400, 2))
    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(400)]))
    adata.obsm["spatial"] = xy
    layout = spot_image(adata, max_size=20)
    assert layout.grid == "free"
    assert max(layout.shape) <= 20
    feats = rng.normal(size=(400, 3))
    pix = layout.pixel_features(feats)
    k = layout.spot_pixel[0]
    np.testing.assert_allclose(pix[k], feats[layout.spot_pixel == k].mean(axis=0))


def test_hex_grid_needs_array_columns():
    adata = ad.AnnData(obs=pd.DataFrame(index=["a", "b"]))
    adata.obsm["spatial"] = np.zeros((2, 2))
    with pytest.raises(InputError, match="array_row"):
        spot_image(adata, grid="hex")
