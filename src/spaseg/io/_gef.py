"""Read a Stereo-seq GEF (HDF5) with h5py: square-bin ``/geneExp`` or cell-bin ``/cellBin``.

Layout and sources: ``docs/formats.md``, "GEF". Only
``/geneExp/bin1`` is assumed to exist; a stored level ``binN`` is read directly when it matches
the requested bin size (its x, y are already ``floor(x/N)*N``). Expression rows are read in
slices, so peak memory is about the final matrix plus one slice.
"""

from __future__ import annotations

import os
import re

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from scipy import sparse

from .._errors import InputError
from ._binning import BinAccumulator, BinningLimitError, GeneIndex, binned_anndata

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
DEFAULT_RESOLUTION_NM = 500


def is_hdf5(path: str | os.PathLike) -> bool:
    """True if ``path`` is an HDF5 file (signature at offset 0, or wherever h5py finds it)."""
    with open(path, "rb") as fh:
        if fh.read(8) == HDF5_MAGIC:
            return True
    return bool(h5py.is_hdf5(path))


def decode_names(values: np.ndarray) -> list[str]:
    """Decode fixed-length NUL-padded byte strings up to the first NUL.

    Some geftools versions left garbage bytes after the terminator, so stripping trailing
    NULs is not enough.
    """
    return [v.split(b"\0", 1)[0].decode("utf-8", "replace") for v in values.tolist()]


def _attr_value(value):
    """HDF5 attributes as plain Python values (scalars are stored as 1-element arrays)."""
    if isinstance(value, bytes | np.bytes_):
        return value.split(b"\0", 1)[0].decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "S":
            names = decode_names(value.ravel())
            return names[0] if len(names) == 1 else np.array(names, dtype=object)
        return value.ravel()[0].item() if value.size == 1 else value.ravel().copy()
    return value.item() if isinstance(value, np.generic) else value


def _attrs(obj) -> dict:
    return {str(k): _attr_value(v) for k, v in obj.attrs.items()}


def _gene_columns(fields, gene_key: str, where: str, path, sample) -> tuple[str, str | None]:
    """Choose the key and symbol columns of a gene table by field names, not by version.

    ``geneID`` + ``geneName`` (GEF >= 4) offer both keys; a lone ``gene`` (square-bin
    <= 3) or ``geneName`` (cell-bin <= 3) column is the only key and holds the symbol.
    """
    if gene_key not in ("geneID", "geneName"):
        raise ValueError(f"gene_key must be 'geneID' or 'geneName', got {gene_key!r}")
    if "geneID" in fields:
        if gene_key == "geneName" and "geneName" not in fields:
            raise InputError(
                f"gene_key='geneName' but {where} has no geneName field; fields {list(fields)}",
                sample=sample,
                file=path,
                field="geneName",
            )
        symbol = "geneName" if gene_key == "geneID" and "geneName" in fields else None
        return gene_key, symbol
    for single in ("gene", "geneName"):
        if single in fields:
            if gene_key == "geneName" and single == "gene":
                raise InputError(
                    f"gene_key='geneName' but {where} has a single 'gene' column (GEF version "
                    "<= 3 stores the symbol there; use gene_key='geneID')",
                    sample=sample,
                    file=path,
                    field="geneName",
                )
            return single, None
    raise InputError(
        f"{where} has no gene name field (gene, geneID or geneName); fields {list(fields)}",
        sample=sample,
        file=path,
        field="gene",
    )


def _require_fields(ds: h5py.Dataset, fields, path, sample) -> None:
    have = ds.dtype.names or ()
    missing = [f for f in fields if f not in have]
    if missing:
        raise InputError(
            f"{ds.name} lacks field(s) {missing}; found {list(have)}",
            sample=sample,
            file=path,
            field=", ".join(missing),
        )


def _check_offsets(offsets, counts, n_rows: int, where: str, path, sample) -> None:
    """Rows of entry i are ``[offset_i, offset_i + count_i)``; require them contiguous."""
    counts = counts.astype(np.int64)
    expected = np.cumsum(counts) - counts
    if not np.array_equal(offsets.astype(np.int64), expected) or counts.sum() != n_rows:
        raise InputError(
            f"{where}: offsets are not the cumulative sum of counts, or counts do not add up "
            f"to the {n_rows} expression rows",
            sample=sample,
            file=path,
            field="offset",
        )


def _gene_codes_of_table(table: np.ndarray, key: str, symbol, genes: GeneIndex) -> np.ndarray:
    symbols = decode_names(table[symbol]) if symbol else None
    return genes.encode(decode_names(table[key]), symbols)


def _choose_level(gene_exp: h5py.Group, bin_size: int, path, sample) -> str:
    """Return ``bin{bin_size}`` if stored, else ``bin1``.

    Either way ``floor(x / bin_size)`` of the stored x gives the bin index, because a stored
    level holds ``floor(x / N) * N``.
    """
    levels = sorted((k for k in gene_exp if re.fullmatch(r"bin\d+", k)), key=lambda k: int(k[3:]))
    for name in (f"bin{bin_size}", "bin1"):
        if name in levels and "expression" in gene_exp[name] and "gene" in gene_exp[name]:
            return name
    raise InputError(
        f"the GEF has neither geneExp/bin1 nor geneExp/bin{bin_size} (with expression and "
        f"gene datasets); stored levels: {levels}",
        sample=sample,
        file=path,
        field=f"geneExp/bin{bin_size}",
    )


def _rows_gene_codes(codes, offsets, counts, start: int, stop: int) -> np.ndarray:
    """Gene code of each expression row in ``[start, stop)``: ``repeat(codes, count)``, sliced."""
    ends = offsets + counts
    lengths = np.clip(ends, start, stop) - np.clip(offsets, start, stop)
    return np.repeat(codes, lengths)


def _check_rows(rows: np.ndarray, where: str, path, sample) -> None:
    for name, what in (("x", "coordinate"), ("y", "coordinate"), ("count", "count")):
        if rows[name].size and rows[name].min() < 0:
            raise InputError(f"{where} has a negative {what}", sample=sample, file=path, field=name)


def _read_square(f: h5py.File, bin_size, sample, gene_key, chunksize, path) -> ad.AnnData:
    level = _choose_level(f["geneExp"], bin_size, path, sample)
    group = f["geneExp"][level]
    expression, gene_table = group["expression"], group["gene"]
    _require_fields(expression, ("x", "y", "count"), path, sample)
    _require_fields(gene_table, ("offset", "count"), path, sample)
    key, symbol = _gene_columns(gene_table.dtype.names, gene_key, gene_table.name, path, sample)
    table = gene_table[()]
    n_rows = expression.shape[0]
    if n_rows == 0:
        raise InputError(
            f"{expression.name} has zero rows", sample=sample, file=path, field="expression"
        )
    offsets, counts = table["offset"].astype(np.int64), table["count"].astype(np.int64)
    _check_offsets(offsets, counts, n_rows, gene_table.name, path, sample)
    genes = GeneIndex()
    codes = _gene_codes_of_table(table, key, symbol, genes)
    acc = BinAccumulator(bin_size)
    fields = expression.fields(["x", "y", "count"])
    for start in range(0, n_rows, chunksize):
        stop = min(start + chunksize, n_rows)
        rows = fields[start:stop]  # x, y, count keep the file's dtypes: less memory
        _check_rows(rows, expression.name, path, sample)
        try:
            acc.add(
                rows["x"],
                rows["y"],
                _rows_gene_codes(codes, offsets, counts, start, stop),
                rows["count"],
            )
        except BinningLimitError as err:
            raise InputError(
                f"coordinates too large ({err})", sample=sample, file=path, field="x, y"
            ) from err
    bin_x, bin_y, matrix = acc.result(len(genes))
    matrix, var = genes.sorted_var(matrix)
    resolution = _attrs(expression).get("resolution") or DEFAULT_RESOLUTION_NM
    uns = {
        "bin_size": int(bin_size),
        "resolution_nm": int(resolution),
        "meta": _attrs(f),
        "source": "gef",
        "gene_key": gene_key,
        "level_read": level,
        "n_records": int(n_rows),
    }
    return binned_anndata(bin_x, bin_y, matrix, var, bin_size, uns)


def _read_cellbin(f: h5py.File, sample, gene_key, chunksize, path) -> ad.AnnData:
    """Cells x genes from ``/cellBin/cell``, ``cellExp`` and ``gene``; coordinates = cell x, y."""
    group = f["cellBin"]
    missing = [k for k in ("cell", "cellExp", "gene") if k not in group]
    if missing:
        raise InputError(
            f"cell-bin GEF lacks /cellBin/{missing}; found {list(group)}",
            sample=sample,
            file=path,
            field="cellBin",
        )
    cells_ds, exp, gene_table = group["cell"], group["cellExp"], group["gene"]
    _require_fields(cells_ds, ("x", "y", "offset", "geneCount"), path, sample)
    _require_fields(exp, ("geneID", "count"), path, sample)
    key, symbol = _gene_columns(gene_table.dtype.names, gene_key, gene_table.name, path, sample)
    cells = cells_ds[()]
    n_rows = exp.shape[0]
    if n_rows == 0 or cells.shape[0] == 0:
        raise InputError(
            "the cell-bin GEF has no cells or no expression rows",
            sample=sample,
            file=path,
            field="cellExp",
        )
    gene_count = cells["geneCount"].astype(np.int64)
    _check_offsets(cells["offset"], gene_count, n_rows, cells_ds.name, path, sample)
    genes = GeneIndex()
    codes = _gene_codes_of_table(gene_table[()], key, symbol, genes)
    indices = np.empty(n_rows, dtype=np.int32)
    data = np.empty(n_rows, dtype=np.float32)
    fields = exp.fields(["geneID", "count"])
    for start in range(0, n_rows, chunksize):
        rows = fields[start : start + chunksize]
        gene_idx = rows["geneID"].astype(np.int64)
        if gene_idx.size and gene_idx.max() >= len(codes):
            raise InputError(
                f"{exp.name} refers to gene index {gene_idx.max()} but {gene_table.name} has "
                f"{len(codes)} genes",
                sample=sample,
                file=path,
                field="geneID",
            )
        indices[start : start + len(rows)] = codes[gene_idx]
        data[start : start + len(rows)] = rows["count"]
    indptr = np.r_[0, np.cumsum(gene_count)]
    matrix = sparse.csr_matrix((data, indices, indptr), shape=(len(cells), len(genes)))
    matrix.sum_duplicates()  # genes merged by name may repeat within a cell
    matrix, var = genes.sorted_var(matrix)
    ids = cells["id"] if "id" in cells.dtype.names else np.arange(len(cells))
    obs = pd.DataFrame({"cell_id": ids.astype(np.int64)}, index=ids.astype(str))
    adata = ad.AnnData(X=matrix, obs=obs, var=var)
    adata.obsm["spatial"] = np.column_stack([cells["x"], cells["y"]]).astype(np.float64)
    meta = _attrs(f)
    adata.uns["stereoseq"] = {
        "bin_size": "cell",
        "resolution_nm": int(meta.get("resolution") or DEFAULT_RESOLUTION_NM),
        "meta": meta,
        "source": "gef",
        "gene_key": gene_key,
        "level_read": "cellBin",
        "n_records": int(n_rows),
    }
    return adata


def read_gef(
    path: str | os.PathLike,
    *,
    bin_size: int = 50,
    sample: str | None = None,
    gene_key: str = "geneID",
    chunksize: int = 10_000_000,
) -> ad.AnnData:
    """Read a Stereo-seq GEF: square bins from ``/geneExp`` or cells from ``/cellBin``.

    Parameters
    ----------
    path
        A square-bin (``.gef``, ``.raw.gef``, ``.tissue.gef``) or cell-bin GEF.
    bin_size
        Bin edge in DNB units. ``/geneExp/bin{bin_size}`` is read when stored, else ``bin1``
        is binned with ``floor(x / bin_size)``. Ignored for cell-bin files.
    sample
        Sample id, used in error messages.
    gene_key
        ``"geneID"`` or ``"geneName"``; the gene table's columns are chosen by field name
        (``gene`` in version <= 3, ``geneID``/``geneName`` in version >= 4). Genes sharing
        a key are summed.
    chunksize
        Expression rows read per slice.

    Returns
    -------
    AnnData as :func:`spaseg.io.read_gem` returns for square bins, with
    ``uns["stereoseq"]["resolution_nm"]`` from the expression attributes and ``meta`` the
    root attributes. For a cell-bin GEF: one row per cell, ``obs["cell_id"]``,
    ``obsm["spatial"]`` = cell centre (DNB units), ``uns["stereoseq"]["bin_size"] = "cell"``.

    Raises
    ------
    InputError
        Not HDF5, no ``geneExp``/``cellBin``, no usable level, inconsistent offsets, bad values.
    """
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(
            f"cannot open as HDF5/GEF: the file is truncated or damaged ({err})",
            sample=sample,
            file=path,
            field="path",
        ) from err
    with f:
        try:
            if "geneExp" in f:
                return _read_square(f, bin_size, sample, gene_key, chunksize, path)
            if "cellBin" in f:
                return _read_cellbin(f, sample, gene_key, chunksize, path)
        except (OSError, KeyError) as err:  # h5py's errors for damaged files and links
            raise InputError(
                f"cannot read the GEF, the HDF5 file is truncated or damaged ({err})",
                sample=sample,
                file=path,
                field="path",
            ) from err
        raise InputError(
            f"HDF5 file is not a GEF: no 'geneExp' or 'cellBin' group (top level: {list(f)})",
            sample=sample,
            file=path,
            field="geneExp",
        )
