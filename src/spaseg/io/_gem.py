"""Read a Stereo-seq GEM (tab-separated DNB x gene counts, plain or gzip) into square bins.

Layout (``docs/formats.md``, "GEM"): optional ``#Key=Value`` lines, one
header row, then one row per (gene, DNB). The file is streamed with pyarrow's CSV reader;
each block is binned and reduced at once, so the whole table is never in memory.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pyarrow as pa
import pyarrow.compute as pacompute
import pyarrow.csv as pacsv

from .._errors import InputError
from ._binning import BinAccumulator, BinningLimitError, GeneIndex, binned_anndata

GZIP_MAGIC = b"\x1f\x8b"
COUNT_COLUMNS = ("MIDCount", "MIDCounts", "UMICount")
DEFAULT_RESOLUTION_NM = 500
# pyarrow fails on a row longer than one block, so blocks never get smaller than this.
_MIN_BLOCK_BYTES = 1 << 16
_SAMPLE_LINES = 1000
_IO_ERRORS = (OSError, EOFError, zlib.error)


@dataclass
class GemHeader:
    """What precedes the data rows of a GEM."""

    meta: dict[str, str] = field(default_factory=dict)
    n_skip_lines: int = 0  # '#' and blank lines before the header (pyarrow counts both)
    columns: list[str] = field(default_factory=list)
    mean_line_bytes: float = 32.0
    max_line_bytes: int = 64


def is_gzip(path: str | os.PathLike) -> bool:
    """True if ``path`` starts with the gzip magic bytes (whatever its suffix)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _open_text(path, gz: bool):
    return gzip.open(path, "rt", newline="") if gz else open(path, newline="")


def read_gem_header(path: str | os.PathLike, *, sample: str | None = None) -> GemHeader:
    """Parse the ``#`` metadata lines and the column header, and sample line lengths."""
    header = GemHeader()
    lengths = []
    try:
        with _open_text(path, is_gzip(path)) as fh:
            for line in fh:
                if not header.columns:
                    if line.startswith("#"):
                        key, _, value = line[1:].rstrip("\r\n").partition("=")
                        header.meta[key.strip()] = value.strip()
                        header.n_skip_lines += 1
                        continue
                    if not line.strip():
                        header.n_skip_lines += 1
                        continue
                    header.columns = line.rstrip("\r\n").split("\t")
                    continue
                lengths.append(len(line))
                if len(lengths) >= _SAMPLE_LINES:
                    break
    except (*_IO_ERRORS, UnicodeDecodeError) as err:
        raise InputError(
            f"cannot read the GEM, the file is truncated or not valid gzip/text ({err})",
            sample=sample,
            file=path,
            field="path",
        ) from err
    if not header.columns:
        raise InputError(
            "the GEM has no header row (only '#' metadata lines or nothing at all)",
            sample=sample,
            file=path,
            field="header",
        )
    if lengths:
        header.mean_line_bytes = float(np.mean(lengths))
        header.max_line_bytes = int(max(lengths))
    return header


def _choose_columns(header: GemHeader, gene_key: str, path, sample) -> dict[str, str | None]:
    """Map roles (gene, symbol, x, y, count) to column names; fail on missing ones."""
    cols = header.columns
    count = next((c for c in COUNT_COLUMNS if c in cols), None)
    missing = [c for c in ("geneID", "x", "y") if c not in cols]
    if count is None:
        missing.append("|".join(COUNT_COLUMNS))
    if missing:
        raise InputError(
            f"the GEM header lacks required column(s) {missing}; found columns {cols}",
            sample=sample,
            file=path,
            field=", ".join(missing),
        )
    if gene_key not in ("geneID", "geneName"):
        raise ValueError(f"gene_key must be 'geneID' or 'geneName', got {gene_key!r}")
    if gene_key == "geneName" and "geneName" not in cols:
        raise InputError(
            "gene_key='geneName' but the GEM has no geneName column (in GEMv0.1 the geneID "
            f"column holds the gene symbol; use gene_key='geneID'); found columns {cols}",
            sample=sample,
            file=path,
            field="geneName",
        )
    symbol = "geneName" if gene_key == "geneID" and "geneName" in cols else None
    return {"gene": gene_key, "symbol": symbol, "x": "x", "y": "y", "count": count}


def _arrow_error(err: Exception, columns: list[str], path, sample) -> InputError:
    """Turn a pyarrow parse/conversion error into an InputError that names the column."""
    msg = str(err)
    name = None
    if "column #" in msg:
        digits = msg.split("column #", 1)[1].split(":", 1)[0]
        if digits.isdigit() and int(digits) < len(columns):
            name = columns[int(digits)]
    if "conversion error" in msg:
        what = f"column {name!r} has a value that is not an integer below 2**31" if name else msg
        problem = f"{what}; x, y and counts must be non-negative integers ({msg})"
    else:
        problem = f"malformed GEM row ({msg})"
    return InputError(problem, sample=sample, file=path, field=name or "rows")


def _check_values(values: dict[str, pa.Array], roles: dict, path, sample) -> None:
    """Reject missing values and negative coordinates or counts in one block."""
    for role in ("x", "y", "count"):
        column = values[role]
        name = roles[role]
        what = "coordinate" if role in ("x", "y") else "count"
        if column.null_count:
            raise InputError(
                f"column {name!r} has {column.null_count} missing/NaN {what} value(s)",
                sample=sample,
                file=path,
                field=name,
            )
        if len(column) and pacompute.min(column).as_py() < 0:
            raise InputError(
                f"column {name!r} has a negative {what}", sample=sample, file=path, field=name
            )


def _gene_codes(batch: pa.RecordBatch, roles: dict, genes: GeneIndex) -> np.ndarray:
    """Global gene codes of one block; new genes (and their symbols) join ``genes``."""
    gene_col = batch.column(roles["gene"])
    idx = gene_col.indices.to_numpy(zero_copy_only=False)
    dictionary = gene_col.dictionary
    used, first = np.unique(idx, return_index=True)
    symbols = None
    if roles["symbol"]:
        symbol_col = batch.column(roles["symbol"])
        symbol_idx = symbol_col.indices.to_numpy(zero_copy_only=False)[first]
        symbols = symbol_col.dictionary.take(pa.array(symbol_idx)).to_pylist()
    local = np.full(len(dictionary), -1, dtype=np.int32)
    local[used] = genes.encode(dictionary.take(pa.array(used)).to_pylist(), symbols)
    return local[idx]


def read_gem(
    path: str | os.PathLike,
    *,
    bin_size: int = 50,
    sample: str | None = None,
    gene_key: str = "geneID",
    chunksize: int = 2_000_000,
) -> ad.AnnData:
    """Read a Stereo-seq GEM and sum its DNB counts into square bins.

    Parameters
    ----------
    path
        ``.gem``, ``.gem.gz``, ``.txt`` or ``.txt.gz``; gzip is detected by its magic bytes.
    bin_size
        Bin edge in DNB units; bin index = ``floor(x / bin_size)`` on the written x, y
        (never relative to the minimum, never shifted by ``#OffsetX``).
    sample
        Sample id, used in error messages.
    gene_key
        ``"geneID"`` (default; in GEMv0.1 it holds the symbol) or ``"geneName"`` (GEMv0.2).
        Genes sharing a key are summed.
    chunksize
        Approximate number of rows parsed per block (peak memory grows with it).

    Returns
    -------
    AnnData with raw counts (float32 CSR) in ``X``, ``obs["bin_x"]``, ``obs["bin_y"]``,
    ``obs["array_row"]`` (= bin_y), ``obs["array_col"]`` (= bin_x), ``obsm["spatial"]``
    (bin centre in DNB units), ``var["gene_symbols"]`` when the gene key is geneID and a
    geneName column exists, and ``uns["stereoseq"]`` (bin_size, resolution_nm, meta, source).
    Optional ``ExonCount``, ``CellID``/``label`` columns are ignored.

    Raises
    ------
    InputError
        Missing columns, non-integer, missing or negative values, truncated gzip, no rows.
    """
    header = read_gem_header(path, sample=sample)
    roles = _choose_columns(header, gene_key, path, sample)
    block = max(
        int(chunksize * header.mean_line_bytes), _MIN_BLOCK_BYTES, 16 * header.max_line_bytes
    )
    text = pa.dictionary(pa.int32(), pa.string())
    # int32 is the GEM spec's range (uint32 in practice below 2**31) and halves the memory.
    types = {roles[r]: pa.int32() for r in ("x", "y", "count")}
    types.update({roles[r]: text for r in ("gene", "symbol") if roles[r]})
    acc = BinAccumulator(bin_size)
    genes = GeneIndex()
    n_rows = 0
    try:
        compression = "gzip" if is_gzip(path) else None
        with pa.input_stream(path, compression=compression) as stream:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(skip_rows=header.n_skip_lines, block_size=block),
                parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(types), column_types=types
                ),
            )
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                values = {r: batch.column(roles[r]) for r in ("x", "y", "count")}
                _check_values(values, roles, path, sample)
                x, y, counts = (values[r].to_numpy() for r in ("x", "y", "count"))
                acc.add(x, y, _gene_codes(batch, roles, genes), counts)
                n_rows += batch.num_rows
    except pa.ArrowInvalid as err:
        raise _arrow_error(err, header.columns, path, sample) from err
    except BinningLimitError as err:
        raise InputError(
            f"coordinates or gene count too large ({err})", sample=sample, file=path, field="x, y"
        ) from err
    except _IO_ERRORS as err:
        raise InputError(
            f"cannot read the GEM, the file is truncated or not valid gzip/text ({err})",
            sample=sample,
            file=path,
            field="path",
        ) from err
    if n_rows == 0:
        raise InputError(
            "the GEM has a header but no data rows", sample=sample, file=path, field="rows"
        )
    bin_x, bin_y, matrix = acc.result(len(genes))
    matrix, var = genes.sorted_var(matrix)
    uns = {
        "bin_size": int(bin_size),
        "resolution_nm": DEFAULT_RESOLUTION_NM,
        "meta": dict(header.meta),
        "source": "gem",
        "gene_key": gene_key,
        "n_records": int(n_rows),
    }
    return binned_anndata(bin_x, bin_y, matrix, var, bin_size, uns)
