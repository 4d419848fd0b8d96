"""Square binning of DNB-level Stereo-seq records into a bins x genes count matrix.

Bin index = ``floor(coordinate / bin_size)`` on the coordinates as written, as geftools,
Stereopy (since Oct 2023) and sainsc do; never relative to ``min(x)`` and never shifted by a
header offset (see ``docs/formats.md``, "Coordinates and bins").

Records arrive in chunks. Each chunk is reduced to unique (bin, gene) pairs with summed
counts, and the reduced parts are merged from time to time, so memory stays near the size of
the final sparse matrix plus one chunk whatever the row order of the file.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

# One int64 key packs (bin_y, bin_x, gene) with 21 bits each, so a single sort reduces a
# chunk. 2**21 bins is > 1 m of tissue at bin1 (500 nm pitch); 2**21 genes is far above any
# annotation.
_BITS = 21
_LIMIT = 1 << _BITS
_MASK = _LIMIT - 1
# Reduced parts are merged once they exceed max(merged size, this); see BinAccumulator.add.
MERGE_MIN_ENTRIES = 1_000_000
_INT32_MAX = np.iinfo(np.int32).max


class BinningLimitError(ValueError):
    """A bin index or gene code does not fit the packed key (see ``_BITS``)."""


def pack_keys(bin_x: np.ndarray, bin_y: np.ndarray, gene_codes: np.ndarray) -> np.ndarray:
    """Pack non-negative ``(bin_y, bin_x, gene)`` triples into sortable int64 keys.

    Sorting the keys orders records by ``bin_y``, then ``bin_x``, then gene (row-major bins).
    """
    for name, values in (("bin_x", bin_x), ("bin_y", bin_y), ("gene code", gene_codes)):
        if values.size and not 0 <= int(values.min()) <= int(values.max()) < _LIMIT:
            raise BinningLimitError(f"{name} values must lie in [0, 2**{_BITS}) to be binned")
    key = bin_y.astype(np.int64)  # shifts and ors in place: one int64 temporary at a time
    key <<= 2 * _BITS
    part = bin_x.astype(np.int64)
    part <<= _BITS
    key |= part
    del part
    key |= gene_codes
    return key


def reduce_keys(
    keys: np.ndarray, counts: np.ndarray, *, presorted_runs: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``counts`` over equal ``keys``; return the sorted unique keys and their sums.

    ``presorted_runs`` selects a stable sort (timsort), which is near linear on a
    concatenation of already sorted parts.
    """
    if keys.size == 0:
        return keys.astype(np.int64), counts.astype(np.int64)
    order = np.argsort(keys, kind="stable" if presorted_runs else None)
    keys = keys[order]
    last = np.empty(keys.size, dtype=bool)  # last entry of each run of equal keys
    np.not_equal(keys[1:], keys[:-1], out=last[:-1])
    last[-1] = True
    totals = np.diff(np.cumsum(counts[order], dtype=np.int64)[last], prepend=0)
    if totals.max() < _INT32_MAX and totals.min() > -_INT32_MAX:
        totals = totals.astype(np.int32)  # a third less memory for the kept parts
    return keys[last], totals


def _bin_ranges(parts: list[tuple[np.ndarray, np.ndarray]], block: int) -> list[tuple[int, int]]:
    """Split the key space into ranges of about ``block`` entries that never split a bin.

    Boundaries are quantiles of a sample of the (sorted) parts, rounded down to the first key
    of a bin, so each range holds whole bins.
    """
    total = sum(k.size for k, _ in parts)
    n_ranges = max(1, -(-total // block))
    sample = np.sort(np.concatenate([k[:: max(1, k.size // 1000)] for k, _ in parts]))
    cuts = sample[(np.arange(1, n_ranges) * sample.size) // n_ranges]
    cuts = np.unique((cuts >> _BITS) << _BITS)
    edges = [np.iinfo(np.int64).min, *cuts.tolist(), np.iinfo(np.int64).max]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _reduced_ranges(parts, block: int):
    """Yield the parts' union, summed per key, one range of whole bins at a time."""
    for lo, hi in _bin_ranges(parts, block):
        keys, counts = [], []
        for k, c in parts:
            a, b = np.searchsorted(k, [lo, hi])
            keys.append(k[a:b])
            counts.append(c[a:b])
        yield reduce_keys(np.concatenate(keys), np.concatenate(counts), presorted_runs=True)


class BinAccumulator:
    """Collect chunks of DNB records and sum them into square bins.

    Each chunk is reduced to sorted unique (bin, gene) keys with summed counts (a "part").
    Parts are merged range by range, never all at once, so memory stays near the size of
    the parts plus one range.

    Parameters
    ----------
    bin_size
        Edge of a square bin in DNB units (1 keeps DNB resolution).
    block
        Entries handled per range when merging.
    """

    def __init__(self, bin_size: int, *, block: int = 4_000_000):
        if int(bin_size) != bin_size or bin_size < 1:
            raise ValueError(f"bin_size must be a positive integer, got {bin_size!r}")
        self.bin_size = int(bin_size)
        self.block = block
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending = 0  # entries added since the last merge
        self._merged = 0  # entries after the last merge
        self._factor = 1  # grows while merges do not shrink the data

    def add(self, x: np.ndarray, y: np.ndarray, gene_codes: np.ndarray, counts: np.ndarray):
        """Add one chunk of records (non-negative integer arrays of equal length)."""
        keys = pack_keys(x // self.bin_size, y // self.bin_size, gene_codes)
        part = reduce_keys(keys, counts)
        self._parts.append(part)
        self._pending += part[0].size
        # Merging bounds memory when the same (bin, gene) recurs in many chunks (random row
        # order). In the usual orders (by position, by gene) chunks hardly overlap, so after
        # a merge that did not shrink the data, merges become rarer.
        if self._pending > self._factor * max(self._merged, MERGE_MIN_ENTRIES):
            self._merge()

    def _merge(self) -> None:
        if len(self._parts) < 2:
            return
        before = sum(k.size for k, _ in self._parts)
        keys = np.empty(before, dtype=np.int64)
        counts = np.empty(before, dtype=np.result_type(*(c.dtype for _, c in self._parts)))
        n = 0
        for k, c in _reduced_ranges(self._parts, self.block):
            if c.dtype.itemsize > counts.dtype.itemsize:  # a sum outgrew int32
                counts = counts.astype(c.dtype)
            keys[n : n + k.size], counts[n : n + k.size] = k, c
            n += k.size
        self._parts = [
            (keys[:n].copy(), counts[:n].copy()) if n < 0.9 * before else (keys[:n], counts[:n])
        ]
        self._factor = 1 if n < 0.9 * before else 2 * self._factor
        self._merged, self._pending = n, 0

    def result(self, n_genes: int) -> tuple[np.ndarray, np.ndarray, sparse.csr_matrix]:
        """Return ``bin_x, bin_y`` (one per non-empty bin, row-major order) and the CSR matrix.

        Zero-count pairs are dropped, so a bin appears only if it holds a positive count.
        """
        parts, self._parts = self._parts, []
        total = sum(k.size for k, _ in parts)
        data = np.empty(total, dtype=np.float32)
        indices = np.empty(total, dtype=np.int32)
        bins, lengths, n = [], [], 0
        for keys, counts in _reduced_ranges(parts, self.block) if parts else []:
            keep = counts != 0
            keys = keys[keep]
            if keys.size == 0:
                continue
            data[n : n + keys.size] = counts[keep]
            indices[n : n + keys.size] = keys & _MASK
            n += keys.size
            bin_keys = keys >> _BITS
            starts = np.flatnonzero(np.r_[True, bin_keys[1:] != bin_keys[:-1]])
            bins.append(bin_keys[starts])
            lengths.append(np.diff(np.r_[starts, keys.size]))
        del parts
        bin_keys = np.concatenate(bins) if bins else np.zeros(0, np.int64)
        indptr = np.r_[0, np.cumsum(np.concatenate(lengths))] if lengths else np.zeros(1, np.int64)
        if n < 0.9 * total:
            data, indices = data[:n].copy(), indices[:n].copy()
        matrix = sparse.csr_matrix(
            (data[:n], indices[:n], indptr.astype(np.int64)), shape=(bin_keys.size, n_genes)
        )
        return bin_keys & _MASK, bin_keys >> _BITS, matrix


def bin_counts(
    x: np.ndarray,
    y: np.ndarray,
    gene_codes: np.ndarray,
    counts: np.ndarray,
    bin_size: int,
    *,
    n_genes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, sparse.csr_matrix]:
    """Sum DNB records into square bins of ``bin_size`` x ``bin_size`` DNBs.

    Parameters
    ----------
    x, y
        Non-negative integer DNB coordinates as written in the file.
    gene_codes
        Integer gene code of each record (column index of the result).
    counts
        Count of each record.
    bin_size
        Bin edge in DNB units; bin index = ``floor(x / bin_size)``.
    n_genes
        Number of columns; default ``max(gene_codes) + 1``.

    Returns
    -------
    bin_x, bin_y
        Bin indices of the non-empty bins, ordered by ``bin_y`` then ``bin_x``.
    matrix
        ``scipy.sparse.csr_matrix`` (float32) of shape ``(n_bins, n_genes)``.
    """
    x, y = np.asarray(x), np.asarray(y)
    gene_codes, counts = np.asarray(gene_codes), np.asarray(counts)
    if n_genes is None:
        n_genes = int(gene_codes.max()) + 1 if gene_codes.size else 0
    acc = BinAccumulator(bin_size)
    acc.add(x, y, gene_codes, counts)
    return acc.result(n_genes)


def binned_anndata(
    bin_x: np.ndarray,
    bin_y: np.ndarray,
    matrix: sparse.csr_matrix,
    var: pd.DataFrame,
    bin_size: int,
    uns: dict,
) -> ad.AnnData:
    """Wrap a binned matrix as AnnData with the project's Stereo-seq keys.

    ``obs["bin_x"]``, ``obs["bin_y"]`` are the bin indices; ``obs["array_col"]``,
    ``obs["array_row"]`` repeat them so the image builder can use bins as pixels;
    ``obsm["spatial"]`` is the bin centre in DNB units, ``(bin + 0.5) * bin_size``.
    """
    bin_x = np.asarray(bin_x, dtype=np.int64)
    bin_y = np.asarray(bin_y, dtype=np.int64)
    names = pd.Index(bin_x.astype(str)).str.cat(bin_y.astype(str), sep="_")
    obs = pd.DataFrame(
        {"bin_x": bin_x, "bin_y": bin_y, "array_row": bin_y, "array_col": bin_x},
        index=names,
    )
    spatial = (np.column_stack([bin_x, bin_y]).astype(np.float64) + 0.5) * bin_size
    adata = ad.AnnData(X=matrix, obs=obs, var=var)
    adata.obsm["spatial"] = spatial
    adata.uns["stereoseq"] = uns
    return adata


class GeneIndex:
    """Give gene names integer codes in order of first appearance, across chunks.

    ``symbols`` optionally records one symbol per code (the first one seen), for
    ``var["gene_symbols"]`` when the gene key is an ID.
    """

    def __init__(self):
        self._codes: dict[str, int] = {}
        self.names: list[str] = []
        self.symbols: list[str | None] = []

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, names, symbols=None) -> np.ndarray:
        """Return the code (int32) of each of ``names`` (a list of str), adding new names."""
        codes = np.empty(len(names), dtype=np.int32)
        symbols = [None] * len(names) if symbols is None else symbols
        for i, (name, symbol) in enumerate(zip(names, symbols, strict=True)):
            code = self._codes.get(name)
            if code is None:
                code = self._codes[name] = len(self.names)
                self.names.append(name)
                self.symbols.append(symbol)
            codes[i] = code
        return codes

    def sorted_var(self, matrix: sparse.csr_matrix) -> tuple[sparse.csr_matrix, pd.DataFrame]:
        """Reorder the columns of ``matrix`` (coded by this index) by gene name.

        Sorting by name (code-point order, the byte order geftools uses) makes the result
        independent of the row order of the file, so a GEM and its GEF give the same var.
        """
        names = np.array(self.names, dtype=object)
        order = np.argsort(names, kind="stable")
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        matrix = matrix.copy() if matrix.nnz == 0 else matrix
        matrix.indices = rank[matrix.indices]
        matrix.has_sorted_indices = False
        matrix.sort_indices()
        var = pd.DataFrame(index=pd.Index(names[order].astype(str), name=None))
        if any(s is not None for s in self.symbols):
            var["gene_symbols"] = np.array(self.symbols, dtype=object)[order].astype(str)
        return matrix, var
