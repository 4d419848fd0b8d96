"""Read a cell-by-gene table (CSV, TSV or Parquet) with one row per cell or spot."""

from __future__ import annotations

import logging
import os
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from .._errors import InputError
from ._readers import count_problem, finish, require_path

_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
_PARQUET = {".parquet", ".pq"}
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip"}  # pandas decompresses these by suffix
# What pandas and pyarrow raise on a damaged file: parse errors are ValueErrors, a bad gzip
# stream an OSError, a truncated one EOFError, a corrupt deflate block zlib.error.
_READ_ERRORS = (OSError, ValueError, EOFError, zlib.error)

log = logging.getLogger("spaseg")


def read_table(
    path: str | os.PathLike,
    *,
    sample: str | None = None,
    x: str = "x",
    y: str = "y",
    cell_id: str | None = None,
) -> AnnData:
    """Read a table with one row per cell or spot and one column per gene.

    The format follows the extension: ``.csv`` (comma), ``.tsv`` or ``.txt`` (tab), each
    optionally compressed (``.gz`` ...), or ``.parquet``/``.pq``.

    Parameters
    ----------
    path
        The table file.
    sample
        Sample id, used in error messages.
    x, y
        Columns holding the coordinates.
    cell_id
        Column with unique cell/spot names; by default rows are named ``"0"``, ``"1"``, ...

    Returns
    -------
    AnnData with the counts of every other numeric column (one gene each) as float32 CSR in
    ``X``, (x, y) in ``obsm["spatial"]`` and the remaining columns (text, true/false, and
    the ``"Unnamed: 0"`` row index that :meth:`pandas.DataFrame.to_csv` writes) in ``obs``.
    A column name that repeats keeps every column, the repeats renamed ``name.1``, ``name.2``,
    ... (pandas' rule; logged as a warning).

    Raises
    ------
    spaseg.InputError
        If the file cannot be read (truncated, damaged, empty), has no rows, a coordinate
        column is missing or not finite, there are no gene columns, a gene column holds values
        that are not counts (log-normalised values are named as such), or every count is zero.
    """
    path = require_path(path, sample=sample)
    error = partial(InputError, sample=sample, file=path)
    table = _load(path, error, sample)
    if table.empty:
        msg = f"the table has no rows (columns found: {_preview(table.columns)})"
        raise error(msg, field="rows")
    for column in (x, y, cell_id):
        if column is not None and column not in table:
            raise error(f"column not found; columns found: {_preview(table.columns)}", field=column)

    genes = [c for c in table.columns if c not in {x, y, cell_id} and _is_gene(c, table[c])]
    if not genes:
        msg = f"no gene columns: expected numeric columns besides {x!r} and {y!r}"
        raise error(msg, field="genes")
    obs = table.drop(columns=[x, y, *genes])
    obs.index = (obs.pop(cell_id) if cell_id else obs.index).astype(str)
    adata = AnnData(X=_counts(table, genes, error), obs=obs, var=pd.DataFrame(index=genes))
    adata.obsm["spatial"] = np.column_stack([_coordinate(table, c, error) for c in (x, y)])
    return finish(adata, path=path, platform="table", sample=sample)


def _load(path: Path, error, sample: str | None) -> pd.DataFrame:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    extension = suffixes[-1] if suffixes else ""
    if extension not in _SEPARATORS and extension not in _PARQUET:
        msg = f"unknown table format {extension!r}; use .csv, .tsv or .txt (optionally .gz) or .parquet"
        raise error(msg, field="path")
    try:
        if extension in _PARQUET:
            return pd.read_parquet(path)
        sep = _SEPARATORS[extension]
        # round_trip: coordinates come back exactly as written, not off by the last digit.
        table = pd.read_csv(path, sep=sep, float_precision="round_trip")
        header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str).iloc[0]
    except _READ_ERRORS as err:
        msg = f"cannot read as a {extension} table, the file is truncated or damaged ({err})"
        raise error(msg, field="path") from err
    _log_repeated_columns(header, table.columns, path, sample)
    return table


def _log_repeated_columns(
    header: pd.Series, columns: pd.Index, path: Path, sample: str | None
) -> None:
    """pandas renames a repeated column ``name.1``, ``name.2``, ...: say so in the log."""
    names = header.dropna()
    repeated = names[names.duplicated()].unique()
    if len(repeated):
        renamed = [c for c in columns if str(c).rpartition(".")[0] in set(repeated)]
        log.warning(
            "sample %r, file %r, field 'columns': %d column names occur more than once, e.g. "
            "%s; kept every column, repeats renamed %s",
            sample,
            str(path),
            len(repeated),
            list(repeated[:3]),
            renamed[:3],
        )


def _is_gene(name, values: pd.Series) -> bool:
    # Text and flag columns (cell type, QC pass) are annotations, not genes; so is the
    # "Unnamed: 0" column that pandas' to_csv leaves behind when it writes the row index.
    if str(name).startswith("Unnamed:"):
        return False
    return is_numeric_dtype(values) and not is_bool_dtype(values)


def _coordinate(table: pd.DataFrame, column: str, error) -> np.ndarray:
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
    n_bad = int((~np.isfinite(values)).sum())
    if n_bad:
        msg = f"{n_bad} of {len(values)} rows have a missing, non-numeric or infinite coordinate"
        raise error(msg, field=column)
    return values


def _counts(table: pd.DataFrame, genes: list[str], error) -> np.ndarray:
    values = table[genes].to_numpy(np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    bad_genes = np.flatnonzero(bad.any(axis=0))
    if len(bad_genes):
        first = bad_genes[0]
        example = values[bad[:, first], first][0]
        msg = (
            f"gene column holds {example:g}, not a count (counts must be non-negative whole "
            f"numbers); {len(bad_genes)} gene column(s) affected: {count_problem(values)}"
        )
        raise error(msg, field=str(genes[first]))
    return values


def _preview(columns: pd.Index, limit: int = 20) -> str:
    """Comma-separated column names, cut short: gene tables have thousands of columns."""
    names = ", ".join(repr(str(c)) for c in columns[:limit])
    return names + (f", ... ({len(columns) - limit} more)" if len(columns) > limit else "")
