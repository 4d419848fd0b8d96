"""Write an AnnData as a minimal Space Ranger ``outs/`` folder, so Visium input can be tested."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from anndata import AnnData
from PIL import Image
from scipy import sparse

from .._atomic import atomic_path
from .._errors import InputError
from .._geometry import spot_spacing
from ..io._readers import is_count_matrix

# Visium spots are 55 um wide with centres 100 um apart; fiducial dots are 89.5 um wide.
_SPOT_TO_PITCH = 0.55
_FIDUCIAL_TO_SPOT = 89.5 / 55
# Space Ranger downscales the full-resolution image to at most 2000 (hires) and 600 (lowres) px.
_HIRES_PX, _LOWRES_PX = 2000, 600


def write_visium_outs(
    adata: AnnData,
    outdir: str | os.PathLike,
    *,
    version: int = 2,
    library_id: str = "spaseg",
    images: bool = False,
) -> Path:
    """Write ``adata`` as the files of a Space Ranger ``outs/`` folder.

    Writes ``filtered_feature_bc_matrix.h5`` (10x HDF5 layout, as read by
    :func:`scanpy.read_10x_h5`), ``spatial/tissue_positions.csv`` (``version=2``, with header) or
    ``spatial/tissue_positions_list.csv`` (``version=1``, no header) and
    ``spatial/scalefactors_json.json``, and optionally blank tissue images.

    Parameters
    ----------
    adata
        Integer counts in ``X``, ``obs["array_row"]``, ``obs["array_col"]`` and full-resolution
        pixel coordinates (x, y) in ``obsm["spatial"]``. ``var_names`` become the gene IDs and
        ``var["gene_symbols"]`` (if present) the gene names; ``obs["in_tissue"]`` defaults to 1.
    outdir
        The folder to fill; it plays the role of ``outs`` and is created if needed.
    version
        Space Ranger major version of the tissue positions file: 1 or 2.
    library_id
        Written to the HDF5 file's ``library_ids`` attribute, as Space Ranger does.
    images
        Also write white ``spatial/tissue_hires_image.png`` and ``tissue_lowres_image.png``
        matching the scale factors; :func:`scanpy.read_visium` and
        :func:`squidpy.read.visium` insist on them, :func:`spaseg.io.read_visium` does not.

    Returns
    -------
    ``outdir`` as a :class:`~pathlib.Path`.
    """
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, got {version!r}")
    _check(adata)
    outdir = Path(outdir)
    (outdir / "spatial").mkdir(parents=True, exist_ok=True)
    _write_matrix(adata, outdir / "filtered_feature_bc_matrix.h5", library_id)
    positions_name = "tissue_positions.csv" if version == 2 else "tissue_positions_list.csv"
    with atomic_path(outdir / "spatial" / positions_name) as tmp:
        _positions(adata).to_csv(tmp, index=False, header=version == 2)
    coords = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    scalefactors = _scalefactors(coords)
    with atomic_path(outdir / "spatial" / "scalefactors_json.json") as tmp:
        tmp.write_text(json.dumps(scalefactors, indent=2))
    if images:
        _write_images(outdir / "spatial", coords, scalefactors)
    return outdir


def _check(adata: AnnData) -> None:
    for column in ("array_row", "array_col"):
        if column not in adata.obs:
            raise InputError("needed for the tissue positions file", field=f'obs["{column}"]')
    if "spatial" not in adata.obsm:
        raise InputError("needed for the pixel coordinates", field='obsm["spatial"]')
    if not is_count_matrix(adata.X):
        raise InputError("10x matrices hold non-negative whole numbers", field="X")


def _write_matrix(adata: AnnData, file: Path, library_id: str) -> None:
    # A cells x genes CSR matrix has exactly the arrays of 10x's genes x barcodes CSC matrix.
    counts = sparse.csr_matrix(adata.X, dtype=np.int32, copy=True)
    counts.sum_duplicates()
    counts.eliminate_zeros()
    symbols = adata.var["gene_symbols"] if "gene_symbols" in adata.var else adata.var_names
    with atomic_path(file) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["filetype"] = "matrix"
        h5.attrs["library_ids"] = _bytes([library_id])
        h5.attrs["version"] = 2
        matrix = h5.create_group("matrix")
        matrix["barcodes"] = _bytes(adata.obs_names)
        matrix["data"] = counts.data
        matrix["indices"] = counts.indices.astype(np.int64)
        matrix["indptr"] = counts.indptr.astype(np.int64)
        matrix["shape"] = np.array([adata.n_vars, adata.n_obs], dtype=np.int32)
        features = matrix.create_group("features")
        features["id"] = _bytes(adata.var_names)
        features["name"] = _bytes(symbols)
        features["feature_type"] = _bytes(["Gene Expression"] * adata.n_vars)
        features["genome"] = _bytes(["unknown"] * adata.n_vars)
        features["_all_tag_keys"] = _bytes(["genome"])


def _bytes(values) -> np.ndarray:
    """Fixed-length byte strings, the string type of 10x HDF5 files."""
    return np.array([str(value).encode() for value in values], dtype=np.bytes_)


def _positions(adata: AnnData) -> pd.DataFrame:
    coords = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    in_tissue = adata.obs["in_tissue"] if "in_tissue" in adata.obs else np.ones(adata.n_obs)
    return pd.DataFrame(
        {
            "barcode": adata.obs_names.astype(str),
            "in_tissue": np.asarray(in_tissue, dtype=int),
            "array_row": adata.obs["array_row"].to_numpy(int),
            "array_col": adata.obs["array_col"].to_numpy(int),
            "pxl_row_in_fullres": coords[:, 1],
            "pxl_col_in_fullres": coords[:, 0],
        }
    )


def _scalefactors(coords: np.ndarray) -> dict[str, float]:
    """Scale factors consistent with the spot layout; the image is taken to span the spots."""
    pitch = spot_spacing(coords)
    spot = _SPOT_TO_PITCH * pitch
    extent = max(float(coords.max()), 1.0)
    return {
        "spot_diameter_fullres": spot,
        "fiducial_diameter_fullres": _FIDUCIAL_TO_SPOT * spot,
        "tissue_hires_scalef": _HIRES_PX / extent,
        "tissue_lowres_scalef": _LOWRES_PX / extent,
    }


def _write_images(spatial: Path, coords: np.ndarray, scalefactors: dict[str, float]) -> None:
    """White RGB images just large enough to hold every spot at each resolution."""
    for res in ("hires", "lowres"):
        scale = scalefactors[f"tissue_{res}_scalef"]
        width, height = np.ceil(np.maximum(coords.max(axis=0), 0) * scale).astype(int) + 1
        with atomic_path(spatial / f"tissue_{res}_image.png") as tmp:
            Image.fromarray(np.full((height, width, 3), 255, dtype=np.uint8)).save(tmp)
