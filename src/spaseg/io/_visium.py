"""Read a 10x Genomics Space Ranger ``outs/`` folder (Visium)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from matplotlib.image import imread

from .._errors import InputError
from ._readers import finish, require_path

POSITION_COLUMNS = [
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
]
#: Space Ranger >= 2 writes the first (with a header line), Space Ranger 1 the second (without).
POSITION_FILES = ("tissue_positions.csv", "tissue_positions_list.csv")
SCALEFACTORS_FILE = "scalefactors_json.json"
_IMAGES = {"hires": "tissue_hires_image.png", "lowres": "tissue_lowres_image.png"}


def read_visium(
    path: str | os.PathLike,
    *,
    sample: str | None = None,
    counts_file: str = "filtered_feature_bc_matrix.h5",
    library_id: str | None = None,
) -> AnnData:
    """Read the in-tissue spots of a Space Ranger ``outs/`` folder.

    Parameters
    ----------
    path
        The ``outs`` folder, or the Space Ranger output folder that contains it.
    sample
        Sample id, used in error messages and as the default ``library_id``.
    counts_file
        10x HDF5 count matrix inside ``outs``, e.g. ``"raw_feature_bc_matrix.h5"``.
    library_id
        Key under ``uns["spatial"]``; defaults to ``sample``, else the run folder's name.

    Returns
    -------
    AnnData with raw counts (float32 CSR) in ``X``; ``var_names`` are gene IDs and
    ``var["gene_symbols"]`` the gene names; ``obs["in_tissue"]``, ``obs["array_row"]`` and
    ``obs["array_col"]``; full-resolution pixel coordinates in ``obsm["spatial"]`` (x =
    ``pxl_col_in_fullres``, y = ``pxl_row_in_fullres``); and, when present, the scale factors
    and images under ``uns["spatial"][library_id]`` as squidpy expects them.

    Raises
    ------
    spaseg.InputError
        If a required file is missing or malformed, or barcodes of the matrix have no position.
    """
    outs = _outs_folder(path, sample)
    adata = _read_matrix(outs / counts_file, sample)
    positions_file = _positions_file(outs / "spatial", sample)
    positions = _read_positions(positions_file, sample=sample)
    adata = _in_tissue_spots(adata, positions, sample=sample, file=positions_file)

    library = _library(outs / "spatial", sample)
    if library:
        run_name = outs.parent.name if outs.name == "outs" else outs.name
        adata.uns["spatial"] = {library_id or sample or run_name: library}
    return finish(adata, path=path, platform="visium", sample=sample)


def _outs_folder(path: str | os.PathLike, sample: str | None) -> Path:
    path = require_path(path, sample=sample, folder=True)
    return path / "outs" if (path / "outs").is_dir() else path


def _read_matrix(file: Path, sample: str | None) -> AnnData:
    require_path(file, sample=sample, field="counts_file")
    try:
        adata = sc.read_10x_h5(file)
    except Exception as err:  # h5py and scanpy raise a mix of OSError, KeyError and Exception
        msg = f"cannot read as a 10x HDF5 count matrix ({err})"
        raise InputError(msg, sample=sample, file=file, field="counts_file") from err
    # Gene IDs are unique and stable across references; symbols are neither.
    adata.var["gene_symbols"] = adata.var_names.astype(str)
    adata.var_names = adata.var["gene_ids"].astype(str).to_numpy()
    return adata


def _positions_file(spatial: Path, sample: str | None) -> Path:
    for name in POSITION_FILES:
        if (spatial / name).is_file():
            return spatial / name
    raise InputError(
        f"file not found; expected spatial/{POSITION_FILES[0]} (Space Ranger >= 2) "
        f"or spatial/{POSITION_FILES[1]} (Space Ranger 1)",
        sample=sample,
        file=spatial / POSITION_FILES[0],
        field="tissue_positions",
    )


def _read_positions(file: Path, *, sample: str | None = None) -> pd.DataFrame:
    """Read a Space Ranger tissue positions CSV, with or without its header line.

    Returns a table indexed by barcode with integer columns ``in_tissue``, ``array_row``,
    ``array_col`` and float columns ``pxl_row_in_fullres``, ``pxl_col_in_fullres``.
    """
    table = _load_positions_csv(file, sample)
    for column in POSITION_COLUMNS:
        if column not in table:
            msg = (
                f"column missing; expected columns {POSITION_COLUMNS}, found {list(table.columns)}"
            )
            raise InputError(msg, sample=sample, file=file, field=column)
    for column in POSITION_COLUMNS[1:]:
        values = pd.to_numeric(table[column], errors="coerce")
        n_bad = int((~np.isfinite(values)).sum())
        if n_bad:
            msg = f"{n_bad} of {len(table)} rows are not finite numbers"
            raise InputError(msg, sample=sample, file=file, field=column)
        table[column] = values if column.startswith("pxl") else values.astype(int)
    table["barcode"] = table["barcode"].astype(str)
    duplicated = table["barcode"][table["barcode"].duplicated()].unique()
    if len(duplicated):
        msg = f"{len(duplicated)} barcodes occur more than once, e.g. {list(duplicated[:3])}"
        raise InputError(msg, sample=sample, file=file, field="barcode")
    return table.set_index("barcode")[POSITION_COLUMNS[1:]]


def _load_positions_csv(file: Path, sample: str | None) -> pd.DataFrame:
    try:
        # Decide by content rather than file name: renamed copies of both versions are common.
        with open(file) as handle:
            has_header = handle.readline().startswith("barcode")
        header = 0 if has_header else None
        table = pd.read_csv(file, header=header, float_precision="round_trip")
    except (OSError, ValueError) as err:
        msg = f"cannot read as CSV ({err})"
        raise InputError(msg, sample=sample, file=file, field="tissue_positions") from err
    if not has_header and table.shape[1] == len(POSITION_COLUMNS):
        table.columns = POSITION_COLUMNS
    return table


def _in_tissue_spots(adata: AnnData, positions: pd.DataFrame, *, sample, file) -> AnnData:
    """Attach grid and pixel positions to the matrix and keep the spots under tissue."""
    unplaced = adata.obs_names[~adata.obs_names.isin(positions.index)]
    if len(unplaced):
        msg = (
            f"{len(unplaced)} of {adata.n_obs} barcodes of the count matrix have no position, "
            f"e.g. {list(unplaced[:3])}"
        )
        raise InputError(msg, sample=sample, file=file, field="barcode")
    spots = positions.loc[adata.obs_names]
    for column in ("in_tissue", "array_row", "array_col"):
        adata.obs[column] = spots[column].to_numpy()
    adata.obsm["spatial"] = spots[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64)
    return adata[adata.obs["in_tissue"].to_numpy() == 1].copy()


def _library(spatial: Path, sample: str | None) -> dict:
    """Scale factors and images in squidpy's ``uns["spatial"][library_id]`` layout (optional)."""
    library = {}
    file = spatial / SCALEFACTORS_FILE
    if file.is_file():
        try:
            library["scalefactors"] = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            msg = f"not valid JSON ({err})"
            raise InputError(msg, sample=sample, file=file, field="scalefactors") from err
    images = {
        res: imread(spatial / name) for res, name in _IMAGES.items() if (spatial / name).is_file()
    }
    if images:
        library["images"] = images
    if library:
        library["metadata"] = {}
    return library
