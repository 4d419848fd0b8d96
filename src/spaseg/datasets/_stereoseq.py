"""Simulated Stereo-seq data with known spatial domains, written as GEM and square-bin GEF.

The tissue is a continuous model in unit coordinates (irregular outline, wavy layers, blobs),
evaluated on 4 x 4 DNB blocks (2 um) and sampled per DNB, one stripe of DNB rows at a time, so
files of 100M+ rows are written with bounded memory. Sparsity follows bin1 data: most DNBs are empty, a captured DNB
holds 1-3 genes and counts are mostly 1. File layouts follow
``docs/formats.md`` (geftools conventions for the GEF).

Coordinates start at a non-multiple offset (``x0=12013, y0=7027``), so binning relative to
``min(x)`` gives different bins than the canonical ``floor(x / bin_size)``.
"""

from __future__ import annotations

import gzip
import json
import math
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pacompute
import pyarrow.csv as pacsv

from .._atomic import atomic_path

MT_GENES = (
    "mt-Nd1", "mt-Nd2", "mt-Co1", "mt-Co2", "mt-Atp8", "mt-Atp6", "mt-Co3",
    "mt-Nd3", "mt-Nd4l", "mt-Nd4", "mt-Nd5", "mt-Nd6", "mt-Cytb",
)  # fmt: skip
AMBIENT_RATE = 0.01  # chance that a DNB outside the tissue captures something
GENES_PER_DNB = (2, 0.25)  # 1 + Binomial(2, 0.25) genes per captured DNB: 1-3, mean 1.5
COUNT_P = 0.75  # counts are Geometric(0.75): 1 in 75 % of rows
EXON_P = 0.75  # ExonCount ~ Binomial(MIDCount, 0.75) <= MIDCount
MT_FRACTION = 0.05
DOMAIN_BLOCK = 4  # DNBs per side of the blocks on which the domain map is evaluated


# --------------------------------------------------------------------------- tissue model


@dataclass
class _Tissue:
    """Outline, layers and blobs as functions of unit coordinates ``u, v`` in [0, 1)."""

    n_domains: int
    outline: np.ndarray  # rows (k, amplitude, phase) of the radial outline
    wave: tuple[float, float, float]  # amplitude, frequency, phase of the layer boundaries
    layer_cuts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    blobs: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))  # cu cv ru rv ang ph dom

    def inside(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du, dv = (u - 0.5) / 0.46, (v - 0.5) / 0.46
        theta = np.arctan2(dv, du)
        radius = np.ones_like(theta)
        for k, amp, phase in self.outline:
            radius += amp * np.cos(k * theta + phase)
        return np.hypot(du, dv) < radius

    def layer_coordinate(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        amp, freq, phase = self.wave
        return v + amp * np.sin(2 * np.pi * freq * u + phase)

    def domains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Domain of each point (broadcast ``u``, ``v``); -1 outside the tissue."""
        u, v = np.broadcast_arrays(u, v)
        dom = np.searchsorted(self.layer_cuts, self.layer_coordinate(u, v)).astype(np.int8)
        for cu, cv, ru, rv, angle, phase, d in self.blobs:
            du, dv = u - cu, v - cv
            a = (du * np.cos(angle) + dv * np.sin(angle)) / ru
            b = (-du * np.sin(angle) + dv * np.cos(angle)) / rv
            wobble = 1 + 0.15 * np.cos(3 * np.arctan2(b, a) + phase)
            dom[np.hypot(a, b) < wobble] = d
        dom[~self.inside(u, v)] = -1
        return dom


def _make_tissue(n_domains: int, rng: np.random.Generator) -> tuple[_Tissue, float]:
    """Random tissue; also return the fraction of the canvas it covers."""
    ks = np.arange(2, 6)
    outline = np.column_stack([ks, rng.uniform(0.02, 0.07, 4), rng.uniform(0, 2 * np.pi, 4)])
    wave = (0.05, rng.uniform(0.8, 1.6), rng.uniform(0, 2 * np.pi))
    tissue = _Tissue(n_domains, outline, wave)
    grid = (np.arange(256) + 0.5) / 256
    u, v = np.meshgrid(grid, grid)
    inside = tissue.inside(u, v)
    n_blob_domains = n_domains // 3
    blobs = []
    # Blob centres well inside the outline; two irregular ellipses per blob domain.
    du, dv = (u - 0.5) / 0.46, (v - 0.5) / 0.46
    core = np.flatnonzero(inside & (np.hypot(du, dv) < 0.6))
    for i in range(n_blob_domains):
        for _ in range(2):
            c = rng.choice(core)
            blobs.append(
                [u.flat[c], v.flat[c], *rng.uniform(0.06, 0.11, 2),
                 rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi), n_domains - 1 - i]
            )  # fmt: skip
    tissue.blobs = np.array(blobs, dtype=float).reshape(-1, 7)
    # Layer cuts at quantiles of the layer coordinate, so layers have similar areas.
    n_layers = n_domains - n_blob_domains
    t = tissue.layer_coordinate(u, v)[inside]
    tissue.layer_cuts = np.quantile(t, np.arange(1, n_layers) / n_layers)
    return tissue, float(inside.mean())


# --------------------------------------------------------------------------- gene programs


@dataclass
class _Genes:
    ids: np.ndarray  # str
    names: np.ndarray  # str (symbols)
    marker_domain: np.ndarray  # -1 for non-markers
    cdf: np.ndarray  # (n_domains + 1, n_genes); last row = ambient profile

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "gene_id": self.ids,
                "gene_name": self.names,
                "marker_domain": self.marker_domain,
                "is_mt": pd.Series(self.names).str.startswith("mt-").to_numpy(),
            }
        )


def _make_genes(n_genes: int, n_domains: int, rng: np.random.Generator) -> _Genes:
    """Log-normal base expression, ~5 % mitochondrial reads, disjoint marker sets."""
    n_mt = min(len(MT_GENES), n_genes // 20)
    names = np.array(list(MT_GENES[:n_mt]) + [f"Gene{i:05d}" for i in range(n_genes - n_mt)])
    ids = np.array([f"SIMG{i:08d}" for i in range(n_genes)])
    base = rng.lognormal(0.0, 1.3, n_genes)
    if n_mt:
        base[:n_mt] *= MT_FRACTION / (1 - MT_FRACTION) * base[n_mt:].sum() / base[:n_mt].sum()
    n_markers = max(1, min(30, (n_genes - n_mt) // (2 * n_domains)))
    pool = rng.permutation(np.arange(n_mt, n_genes))
    marker_domain = np.full(n_genes, -1)
    profiles = np.tile(base, (n_domains + 1, 1))
    for d in range(n_domains):
        markers = pool[d * n_markers : (d + 1) * n_markers]
        marker_domain[markers] = d
        profiles[d, markers] *= rng.uniform(4, 12, len(markers))
    profiles /= profiles.sum(axis=1, keepdims=True)
    profiles[n_domains] = profiles[:n_domains].mean(axis=0)  # ambient RNA: a tissue average
    cdf = np.cumsum(profiles, axis=1)
    cdf[:, -1] = 1.0
    return _Genes(ids, names, marker_domain, cdf)


# --------------------------------------------------------------------------- the plan


@dataclass
class _Plan:
    """Everything fixed by the arguments: canvas, tissue, genes and the stripe layout."""

    x0: int
    y0: int
    width: int
    height: int
    tissue: _Tissue
    genes: _Genes
    capture: np.ndarray  # per-domain capture probability of a DNB
    stripes: list[tuple[int, int]]
    truth_bins: tuple[int, ...]
    seed: int


def _canvas(n_bins, bin_size: int, tissue_fraction: float) -> tuple[int, int]:
    """Canvas size in DNBs from ``(width_bins, height_bins)`` or a target spot count."""
    if isinstance(n_bins, int | np.integer):
        side = math.ceil(math.sqrt(n_bins / tissue_fraction))
        return side * bin_size, side * bin_size
    width_bins, height_bins = n_bins
    return int(width_bins) * bin_size, int(height_bins) * bin_size


def _stripes(y0: int, height: int, align: int, lines: int) -> list[tuple[int, int]]:
    """Split ``[y0, y0 + height)`` into stripes whose inner edges are multiples of ``align``.

    Aligned stripes hold whole bins of every size dividing ``align``, so truth and stored
    GEF levels can be computed stripe by stripe.
    """
    step = max(align, lines // align * align)
    edges = [y0]
    edge = (y0 // align + 1) * align
    while edge < y0 + height:
        edges.append(edge)
        edge += step
    edges.append(y0 + height)
    return list(zip(edges[:-1], edges[1:], strict=True))


def _make_plan(
    n_bins, bin_size, n_genes, n_domains, truth_bins, gef_bins, x0, y0, capture, seed, chunk_rows
) -> _Plan:
    if n_domains < 1 or n_genes < n_domains:
        raise ValueError("need n_domains >= 1 and n_genes >= n_domains")
    rng = np.random.default_rng(seed)
    tissue, fraction = _make_tissue(n_domains, rng)
    genes = _make_genes(n_genes, n_domains, rng)
    width, height = _canvas(n_bins, bin_size, fraction)
    cap = rng.uniform(*capture, n_domains)
    rows_per_line = width * (fraction * cap.mean() + AMBIENT_RATE) * 1.5
    align = math.lcm(*(int(b) for b in (*truth_bins, *gef_bins)))
    stripes = _stripes(y0, height, align, int(chunk_rows / max(rows_per_line, 1.0)))
    return _Plan(x0, y0, width, height, tissue, genes, cap, stripes, tuple(truth_bins), seed)


# --------------------------------------------------------------------------- one stripe


@dataclass
class _Stripe:
    x: np.ndarray  # int32 DNB coordinates
    y: np.ndarray
    gene: np.ndarray  # int32 codes into the gene table
    count: np.ndarray  # int32
    exon: np.ndarray  # int32
    truth: pd.DataFrame
    n_tissue: int


def _sample_genes(profile: np.ndarray, cdf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    genes = np.empty(profile.size, dtype=np.int64)
    for p in np.unique(profile):
        sel = profile == p
        genes[sel] = np.searchsorted(cdf[p], rng.random(int(sel.sum())), side="right")
    return genes


def _stripe_truth(
    plan: _Plan, dom: np.ndarray, y_start: int, rec_x: np.ndarray, rec_y: np.ndarray
) -> pd.DataFrame:
    """Majority domain, purity and tissue fraction per bin, for each truth bin size."""
    height, width = dom.shape
    xs = np.arange(plan.x0, plan.x0 + width)
    ys = np.arange(y_start, y_start + height)
    n_dom = plan.tissue.n_domains
    frames = []
    for b in plan.truth_bins:
        bx0, by0 = plan.x0 // b, y_start // b
        n_bx = (plan.x0 + width - 1) // b - bx0 + 1
        n_by = (y_start + height - 1) // b - by0 + 1
        local = ((ys // b - by0)[:, None] * n_bx + (xs // b - bx0)[None, :]).ravel()
        table = np.bincount(
            local * (n_dom + 1) + dom.ravel().astype(np.int64) + 1,
            minlength=n_bx * n_by * (n_dom + 1),
        ).reshape(-1, n_dom + 1)[:, 1:]
        tissue = table.sum(axis=1)
        reads = np.bincount((rec_y // b - by0) * n_bx + (rec_x // b - bx0), minlength=len(table))
        keep = np.flatnonzero((tissue > 0) | (reads > 0))
        majority = table[keep].argmax(axis=1)
        frames.append(
            pd.DataFrame(
                {
                    "bin_size": b,
                    "bin_x": keep % n_bx + bx0,
                    "bin_y": keep // n_bx + by0,
                    "domain": np.where(tissue[keep] > 0, majority, -1),
                    "purity": table[keep].max(axis=1) / np.maximum(tissue[keep], 1),
                    "tissue_frac": tissue[keep] / b**2,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _stripe_domains(plan: _Plan, y_start: int, y_stop: int) -> np.ndarray:
    """Domain of every DNB in rows ``[y_start, y_stop)``, shape ``(rows, width)``.

    The model is evaluated once per ``DOMAIN_BLOCK`` x ``DOMAIN_BLOCK`` block of DNBs (2 um,
    about a small cell) on blocks counted from the canvas corner, so any stripe layout sees
    the same map; this is 16x cheaper than per DNB.
    """
    size = DOMAIN_BLOCK
    rows = (np.arange(y_start, y_stop) - plan.y0) // size
    cols = np.arange(plan.width) // size
    first = rows[0]
    u = (np.arange(cols[-1] + 1) + 0.5) * size / plan.width
    v = (np.arange(first, rows[-1] + 1) + 0.5) * size / plan.height
    step = max(1, 250_000 // u.size)  # bounds the model's float64 temporaries
    blocks = np.concatenate(
        [plan.tissue.domains(u[None, :], v[i : i + step, None]) for i in range(0, v.size, step)]
    )
    return blocks[rows - first][:, cols]


def _simulate_stripe(plan: _Plan, index: int) -> _Stripe:
    """DNB records of one stripe: capture, genes per DNB, counts; duplicates merged."""
    y_start, y_stop = plan.stripes[index]
    rng = np.random.default_rng([plan.seed, index])
    dom = _stripe_domains(plan, y_start, y_stop).ravel()
    capture = plan.capture.astype(np.float32)
    prob = np.where(dom >= 0, capture[np.maximum(dom, 0)], np.float32(AMBIENT_RATE))
    captured = np.flatnonzero(rng.random(dom.size, dtype=np.float32) < prob)
    n_per = 1 + rng.binomial(*GENES_PER_DNB, size=captured.size)
    dnb = np.repeat(captured, n_per)
    profile = np.where(dom[dnb] >= 0, dom[dnb], plan.tissue.n_domains)
    gene = _sample_genes(profile, plan.genes.cdf, rng)
    count = rng.geometric(COUNT_P, size=dnb.size)
    # One row per (gene, DNB): a gene drawn twice in a DNB becomes one row with the sum.
    key, inverse = np.unique(dnb * len(plan.genes.ids) + gene, return_inverse=True)
    count = np.bincount(inverse, weights=count).astype(np.int32)
    dnb, gene = key // len(plan.genes.ids), key % len(plan.genes.ids)
    x = (plan.x0 + dnb % plan.width).astype(np.int32)
    y = (y_start + dnb // plan.width).astype(np.int32)
    truth = _stripe_truth(plan, dom.reshape(-1, plan.width), y_start, x, y)
    exon = rng.binomial(count, EXON_P).astype(np.int32)
    return _Stripe(x, y, gene.astype(np.int32), count, exon, truth, int((dom >= 0).sum()))


def _iter_stripes(plan: _Plan) -> Iterator[_Stripe]:
    for index in range(len(plan.stripes)):
        yield _simulate_stripe(plan, index)


# --------------------------------------------------------------------------- in memory


@dataclass
class StereoseqSimulation:
    """DNB-level records of a simulated Stereo-seq section, with the truth.

    Attributes
    ----------
    x, y
        DNB coordinates (int32) as they are written to the files.
    gene
        Gene code per record, an index into ``genes``.
    count, exon
        MIDCount and ExonCount per record.
    genes
        ``gene_id``, ``gene_name``, ``marker_domain`` (-1: none) and ``is_mt`` per code.
    truth
        ``bin_size, bin_x, bin_y, domain, purity, tissue_frac`` for each truth bin size;
        domain -1 marks bins with ambient reads only.
    """

    x: np.ndarray
    y: np.ndarray
    gene: np.ndarray
    count: np.ndarray
    exon: np.ndarray
    genes: pd.DataFrame
    truth: pd.DataFrame
    params: dict


_RECORD_FIELDS = ("x", "y", "gene", "count", "exon")


def simulate_stereoseq_counts(
    *,
    n_bins: tuple[int, int] | int = (60, 40),
    bin_size: int = 20,
    n_genes: int = 2000,
    n_domains: int = 6,
    bin_size_truth: tuple[int, ...] = (20, 50),
    x0: int = 12013,
    y0: int = 7027,
    capture: tuple[float, float] = (0.26, 0.40),
    seed: int = 0,
    chunk_rows: int = 2_000_000,
    gef_bins: tuple[int, ...] = (1, 50),
) -> StereoseqSimulation:
    """Simulate DNB-level Stereo-seq records in memory (the records the writers write).

    Parameters are those of :func:`write_stereoseq`: the same values of these arguments give
    the same records. ``gef_bins`` and ``chunk_rows`` matter because they set the stripe
    layout, and each stripe has its own random stream.

    Returns
    -------
    StereoseqSimulation
        Records ``x, y, gene, count, exon``, the gene table and the truth.
    """
    plan = _make_plan(
        n_bins, bin_size, n_genes, n_domains, bin_size_truth, gef_bins, x0, y0, capture,
        seed, chunk_rows,
    )  # fmt: skip
    stripes = list(_iter_stripes(plan))
    records = {k: np.concatenate([getattr(s, k) for s in stripes]) for k in _RECORD_FIELDS}
    truth = pd.concat([s.truth for s in stripes], ignore_index=True)
    return StereoseqSimulation(
        **records, genes=plan.genes.table(), truth=truth, params=_params(plan, n_bins, bin_size)
    )


def _params(plan: _Plan, n_bins, bin_size) -> dict:
    return {
        "n_bins": n_bins if isinstance(n_bins, int) else list(n_bins),
        "bin_size": bin_size,
        "width_dnb": plan.width,
        "height_dnb": plan.height,
        "x0": plan.x0,
        "y0": plan.y0,
        "n_genes": len(plan.genes.ids),
        "n_domains": plan.tissue.n_domains,
        "truth_bins": list(plan.truth_bins),
        "seed": plan.seed,
        "n_stripes": len(plan.stripes),
    }


# --------------------------------------------------------------------------- GEM


@dataclass(frozen=True)
class _FileOptions:
    """How the files are written (format variants); see :func:`write_stereoseq`."""

    gene_name: bool = False
    count_column: str = "MIDCount"
    exon: bool = True
    meta: bool = True
    compress: bool = True
    header_offset: tuple[int, int] = (0, 0)
    sn: str = "SS200000000TL_A1"
    chunk_rows: int = 2_000_000

    def gem_meta_lines(self) -> list[str]:
        """The eight ``#`` lines of the SAW example header (GEMv0.2 when it has geneName)."""
        if not self.meta:
            return []
        return [
            f"#FileFormat=GEMv0.{2 if self.gene_name else 1}",
            "#SortedBy=None",
            "#BinType=Bin",
            "#BinSize=1",
            "#Omics=Transcriptomics",
            f"#Stereo-seqChip={self.sn}",
            f"#OffsetX={self.header_offset[0]}",
            f"#OffsetY={self.header_offset[1]}",
        ]

    def gem_columns(self) -> list[str]:
        columns = ["geneID", *(["geneName"] if self.gene_name else []), "x", "y"]
        return columns + [self.count_column, *(["ExonCount"] if self.exon else [])]


class _GemWriter:
    """Append stripes to a tab-separated GEM."""

    def __init__(self, fh, genes: _Genes, opts: _FileOptions):
        self.fh, self.opts = fh, opts
        self.key = pa.array(genes.ids if opts.gene_name else genes.names)
        self.symbol = pa.array(genes.names)
        lines = [*opts.gem_meta_lines(), "\t".join(opts.gem_columns())]
        fh.write(("\n".join(lines) + "\n").encode())

    def write(self, stripe: _Stripe) -> None:
        codes = pa.array(stripe.gene)
        columns = {"geneID": pacompute.take(self.key, codes)}
        if self.opts.gene_name:
            columns["geneName"] = pacompute.take(self.symbol, codes)
        columns.update({"x": stripe.x, "y": stripe.y, self.opts.count_column: stripe.count})
        if self.opts.exon:
            columns["ExonCount"] = stripe.exon
        buffer = pa.BufferOutputStream()
        options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
        pacsv.write_csv(pa.table(columns), buffer, write_options=options)
        self.fh.write(buffer.getvalue())


@contextmanager
def _open_gem(path, compress: bool):
    """Open the GEM for writing, atomically and gzipped (level 1: speed) if asked."""
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        if not compress:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as fh:
            yield fh


# --------------------------------------------------------------------------- GEF


def _uint_dtype(max_value: int) -> np.dtype:
    """geftools' count width: u8 up to 255, u16 up to 65535, else u32."""
    return np.dtype("u1" if max_value <= 255 else "u2" if max_value <= 65535 else "u4")


class _LevelSpill:
    """Records of one GEF level, spilled to disk in stripe order and sorted by gene at the end.

    geftools groups ``expression`` rows by gene. A counting sort over the spilled records
    (per-gene row counts are known by then) does that with bounded memory.
    """

    FIELDS = ("gene", "x", "y", "count", "exon")

    def __init__(self, tmpdir: Path, level: int, n_genes: int):
        self.level, self.tmpdir = level, tmpdir
        self.files = {f: open(tmpdir / f"bin{level}.{f}", "wb") for f in self.FIELDS}  # noqa: SIM115
        self.gene_rows = np.zeros(n_genes, dtype=np.int64)
        self.max = dict.fromkeys(("x", "y", "count", "exon"), 0)
        self.n = 0

    def add(self, stripe: _Stripe) -> None:
        records = {"gene": stripe.gene, "x": stripe.x, "y": stripe.y}
        records |= {"count": stripe.count, "exon": stripe.exon}
        if self.level > 1:
            records = self._aggregate(records)
        for name, values in records.items():
            values.astype(np.int32).tofile(self.files[name])
        for name in self.max:
            if len(records[name]):
                self.max[name] = max(self.max[name], int(records[name].max()))
        self.gene_rows += np.bincount(records["gene"], minlength=self.gene_rows.size)
        self.n += len(records["gene"])

    def _aggregate(self, rec: dict) -> dict:
        """Sum counts per (gene, bin); x, y become ``floor(x/N)*N`` as in geftools."""
        n = self.level
        key = (rec["gene"].astype(np.int64) << 42) | ((rec["x"] // n).astype(np.int64) << 21)
        key |= (rec["y"] // n).astype(np.int64)
        key, inverse = np.unique(key, return_inverse=True)
        mask = (1 << 21) - 1
        return {
            "gene": (key >> 42).astype(np.int32),
            "x": (((key >> 21) & mask) * n).astype(np.int32),
            "y": ((key & mask) * n).astype(np.int32),
            "count": np.bincount(inverse, weights=rec["count"]).astype(np.int32),
            "exon": np.bincount(inverse, weights=rec["exon"]).astype(np.int32),
        }

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()

    def sorted_by_gene(self, order: np.ndarray, chunk_rows: int) -> dict[str, np.ndarray]:
        """Memory-mapped arrays with the rows grouped by gene in the order ``order``."""
        self.close()
        counts = self.gene_rows[order]
        cursor = np.zeros_like(self.gene_rows)
        cursor[order] = np.cumsum(counts) - counts
        src = {
            f: np.memmap(self.tmpdir / f"bin{self.level}.{f}", np.int32, "r") for f in self.FIELDS
        }
        out = {
            f: np.memmap(self.tmpdir / f"bin{self.level}.{f}.sorted", np.int32, "w+", shape=(self.n,))
            for f in self.FIELDS[1:]
        }  # fmt: skip
        for start in range(0, self.n, chunk_rows):
            gene = np.asarray(src["gene"][start : start + chunk_rows])
            o = np.argsort(gene, kind="stable")
            g = gene[o]
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
            sizes = np.diff(np.r_[starts, g.size])
            pos = cursor[g] + np.arange(g.size) - np.repeat(starts, sizes)
            cursor[g[starts]] += sizes
            for f in out:
                out[f][pos] = np.asarray(src[f][start : start + chunk_rows])[o]
        return out


def _gene_table(genes: _Genes, gene_name: bool, order: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """geftools gene table: key(s) as NUL-padded S64, ``offset`` and ``count`` (uint32)."""
    keys = (
        [("geneID", genes.ids), ("geneName", genes.names)] if gene_name else [("gene", genes.names)]
    )
    dtype = [(name, "S64") for name, _ in keys] + [("offset", "u4"), ("count", "u4")]
    table = np.zeros(order.size, dtype=dtype)
    for name, values in keys:
        table[name] = np.char.encode(values[order].astype(str), "utf-8")
    counts = rows[order]
    table["offset"] = np.cumsum(counts) - counts
    table["count"] = counts
    return table


def _scalar(dtype, value) -> np.ndarray:
    return np.array([value], dtype=dtype)  # geftools writes every scalar as a 1-element array


def _write_level(group: h5py.Group, spill: _LevelSpill, genes: _Genes, opts: _FileOptions):
    """Write ``/geneExp/binN/{expression,gene,exon}`` with geftools' dtypes and attributes."""
    key = genes.ids if opts.gene_name else genes.names
    order = np.array(sorted(np.flatnonzero(spill.gene_rows), key=lambda g: key[g].encode()))
    chunk_rows = opts.chunk_rows
    rows = spill.sorted_by_gene(order, chunk_rows)
    n, level = spill.n, spill.level
    count_dtype = _uint_dtype(spill.max["count"])
    expression = group.create_dataset(
        "expression", shape=(n,), dtype=[("x", "i4"), ("y", "i4"), ("count", count_dtype)]
    )
    exon_ds = (
        group.create_dataset("exon", shape=(n,), dtype=_uint_dtype(spill.max["exon"]))
        if opts.exon
        else None
    )
    for start in range(0, n, chunk_rows):
        sl = slice(start, min(start + chunk_rows, n))
        block = np.empty(sl.stop - sl.start, dtype=expression.dtype)
        for f in ("x", "y", "count"):
            block[f] = rows[f][sl]
        expression[sl] = block
        if exon_ds is not None:
            exon_ds[sl] = rows["exon"][sl]
    group.create_dataset("gene", data=_gene_table(genes, opts.gene_name, order, spill.gene_rows))
    attrs = {
        "minX": _scalar("i4", opts.header_offset[0] // level * level),
        "minY": _scalar("i4", opts.header_offset[1] // level * level),
        "maxX": _scalar("i4", spill.max["x"]),
        "maxY": _scalar("i4", spill.max["y"]),
        "maxExp": _scalar("u4", spill.max["count"]),
        "resolution": _scalar("u4", 500),
    }
    expression.attrs.update(attrs)
    if exon_ds is not None:
        exon_ds.attrs["maxExon"] = _scalar("i4", spill.max["exon"])


def _write_gef_root(f: h5py.File, opts: _FileOptions, n_tissue: int) -> None:
    f.attrs["version"] = _scalar("u4", 4 if opts.gene_name else 2)
    f.attrs["geftool_ver"] = np.zeros(3, dtype="u4")
    for name, value in (("omics", "Transcriptomics"), ("bin_type", "Bin"), ("sn", opts.sn)):
        f.attrs.create(name, np.bytes_(value), dtype="S32")
    f.attrs["gef_area"] = _scalar("f4", n_tissue * 500.0**2)
    f.attrs.create("generator", np.bytes_("spaseg.datasets"), dtype="S32")  # not geftools


# --------------------------------------------------------------------------- files


def write_stereoseq(
    outdir,
    *,
    n_bins: tuple[int, int] | int = (60, 40),
    bin_size: int = 20,
    n_genes: int = 2000,
    n_domains: int = 6,
    bin_size_truth: tuple[int, ...] = (20, 50),
    formats: tuple[str, ...] = ("gem", "gef"),
    gef_bins: tuple[int, ...] = (1, 50),
    gene_name: bool = False,
    count_column: str = "MIDCount",
    exon: bool = True,
    meta: bool = True,
    compress: bool = True,
    header_offset: tuple[int, int] = (0, 0),
    sn: str = "SS200000000TL_A1",
    x0: int = 12013,
    y0: int = 7027,
    capture: tuple[float, float] = (0.26, 0.40),
    seed: int = 0,
    chunk_rows: int = 2_000_000,
) -> dict[str, Path]:
    """Write a simulated Stereo-seq section as GEM and/or square-bin GEF, plus the truth.

    Parameters
    ----------
    outdir
        Output folder (created).
    n_bins
        ``(width_bins, height_bins)`` of the canvas at ``bin_size``, or an int: the target
        number of tissue spots at ``bin_size`` (e.g. 527_000 at 20 gives ~10^8 GEM rows).
    bin_size
        Bin size that ``n_bins`` refers to.
    n_genes, n_domains
        Genes (including up to 13 ``mt-`` genes) and domains (``n_domains // 3`` of them are
        blobs, the rest layers).
    bin_size_truth
        Bin sizes for which ``truth.tsv.gz`` lists the majority domain per bin.
    formats
        Any of ``"gem"``, ``"gef"``.
    gef_bins
        Levels stored under ``/geneExp`` (must include 1).
    gene_name
        GEMv0.2 / GEF version 4: ``geneID`` holds IDs and ``geneName`` symbols. Otherwise
        GEMv0.1 / GEF version 2 with the symbol in ``geneID`` / ``gene``.
    count_column
        ``"MIDCount"``, ``"MIDCounts"`` or ``"UMICount"``.
    exon, meta, compress
        Write ``ExonCount`` (and GEF ``exon``), the ``#`` header lines, and gzip the GEM.
    header_offset
        ``#OffsetX/Y`` of the GEM and the GEF ``minX/minY`` origin; coordinates are not
        shifted by it.
    sn
        Chip serial number for the metadata.
    x0, y0
        DNB coordinates of the canvas corner (deliberately not multiples of bin sizes).
    capture
        Range of per-domain probabilities that a tissue DNB captures RNA.
    seed
        Random seed.
    chunk_rows
        Approximate records generated and written per stripe (bounds memory).

    Returns
    -------
    Paths keyed ``gem``, ``gef`` (as requested), ``truth`` (``truth.tsv.gz``), ``genes``
    (``genes.tsv``) and ``meta`` (``meta.json``).
    """
    if count_column not in ("MIDCount", "MIDCounts", "UMICount"):
        raise ValueError(f"count_column must be MIDCount, MIDCounts or UMICount: {count_column!r}")
    if "gef" in formats and 1 not in gef_bins:
        raise ValueError("gef_bins must include 1 (every GEF has /geneExp/bin1)")
    opts = _FileOptions(
        gene_name, count_column, exon, meta, compress, tuple(header_offset), sn, chunk_rows
    )
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    plan = _make_plan(
        n_bins, bin_size, n_genes, n_domains, bin_size_truth, gef_bins, x0, y0, capture, seed,
        chunk_rows,
    )  # fmt: skip
    paths = {"truth": "truth.tsv.gz", "genes": "genes.tsv", "meta": "meta.json"}
    if "gem" in formats:
        paths["gem"] = "sim.gem.gz" if compress else "sim.gem"
    if "gef" in formats:
        paths["gef"] = "sim.gef"
    paths = {k: outdir / name for k, name in paths.items()}
    with tempfile.TemporaryDirectory(dir=outdir, prefix=".spill.") as tmp:
        spills = [_LevelSpill(Path(tmp), b, n_genes) for b in gef_bins] if "gef" in formats else []
        stats = _write_gem_and_spill(plan, paths.get("gem"), spills, opts)
        if spills:
            with atomic_path(paths["gef"]) as tmp_gef, h5py.File(tmp_gef, "w") as f:
                _write_gef_root(f, opts, stats["n_tissue_dnb"])
                for spill in spills:
                    _write_level(
                        f.create_group(f"geneExp/bin{spill.level}"), spill, plan.genes, opts
                    )
    _write_tables(plan, paths, stats, opts, _params(plan, n_bins, bin_size))
    return paths


def _write_gem_and_spill(plan: _Plan, gem_path, spills: list[_LevelSpill], opts) -> dict:
    """Simulate stripe by stripe; write GEM rows and spill GEF records as they come."""
    truths, n_rows, n_tissue = [], 0, 0
    with ExitStack() as stack:
        writer = None
        if gem_path is not None:
            writer = _GemWriter(
                stack.enter_context(_open_gem(gem_path, opts.compress)), plan.genes, opts
            )
        for stripe in _iter_stripes(plan):
            if writer is not None:
                writer.write(stripe)
            for spill in spills:
                spill.add(stripe)
            truths.append(stripe.truth)
            n_rows += stripe.x.size
            n_tissue += stripe.n_tissue
    truth = pd.concat(truths, ignore_index=True)
    return {"n_rows": n_rows, "n_tissue_dnb": n_tissue, "truth": truth}


def _write_tables(plan: _Plan, paths: dict, stats: dict, opts: _FileOptions, params: dict):
    """truth.tsv.gz, genes.tsv (``gene`` = the GEM's geneID value) and meta.json."""
    with atomic_path(paths["truth"]) as tmp:
        stats["truth"].to_csv(tmp, sep="\t", index=False, compression="gzip")
    genes = plan.genes.table()
    genes.insert(0, "gene", genes["gene_id"] if opts.gene_name else genes["gene_name"])
    with atomic_path(paths["genes"]) as tmp:
        genes.to_csv(tmp, sep="\t", index=False)
    counts = {k: v for k, v in stats.items() if k != "truth"}
    info = params | counts | {"files": {k: p.name for k, p in paths.items()}}
    with atomic_path(paths["meta"]) as tmp:
        tmp.write_text(json.dumps(info, indent=1))
