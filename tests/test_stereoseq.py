"""Stereo-seq readers (GEM, GEF), binning and the Stereo-seq file simulator."""

from __future__ import annotations

import gzip
import re
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from spaseg._errors import InputError
from spaseg.datasets._stereoseq import simulate_stereoseq_counts, write_stereoseq
from spaseg.io import _binning, _gem
from spaseg.io._stereoseq import bin_counts, read_gef, read_gem, read_stereoseq

# Small section: ~75k DNB records, several stripes (chunk_rows) so stripe seams are tested.
SIM = dict(n_bins=(30, 20), n_genes=120, n_domains=5, seed=3, chunk_rows=20_000)


# --------------------------------------------------------------------------- helpers


def as_series(adata) -> pd.Series:
    """Non-zero entries keyed by (obs name, var name): compares matrices across orders."""
    coo = sparse.coo_matrix(adata.X)
    index = pd.MultiIndex.from_arrays([adata.obs_names[coo.row], adata.var_names[coo.col]])
    return pd.Series(coo.data.astype(np.int64), index=index).sort_index()


def reference(x, y, genes, counts, bin_size) -> pd.Series:
    """Binning done independently of the library: pandas group-by on floor(x / bin_size)."""
    df = pd.DataFrame({"bx": np.asarray(x) // bin_size, "by": np.asarray(y) // bin_size})
    df["obs"] = df["bx"].astype(str) + "_" + df["by"].astype(str)
    df["gene"], df["count"] = np.asarray(genes), np.asarray(counts, dtype=np.int64)
    summed = df.groupby(["obs", "gene"])["count"].sum()
    return summed[summed != 0].rename_axis([None, None]).sort_index()


def assert_same_bins(a, b) -> None:
    """Same obs, var and counts, in the same order."""
    assert list(a.obs_names) == list(b.obs_names)
    assert list(a.var_names) == list(b.var_names)
    assert (a.X != b.X).nnz == 0
    np.testing.assert_array_equal(a.obsm["spatial"], b.obsm["spatial"])


@pytest.fixture(scope="module")
def sim():
    return simulate_stereoseq_counts(**SIM)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_stereoseq(tmp_path_factory.mktemp("sim"), **SIM, gef_bins=(1, 50))


@pytest.fixture(scope="module")
def files_v4(tmp_path_factory):
    return write_stereoseq(
        tmp_path_factory.mktemp("sim4"), **SIM, gef_bins=(1, 50), gene_name=True, compress=False
    )


# A hand-made GEM: offsets are not multiples of 50, so floor(x/50) differs from binning
# relative to min(x) = 12000 / min(y) = 7027.
HAND_ROWS = [
    ("A", 12013, 7027, 1),
    ("B", 12013, 7027, 2),
    ("A", 12049, 7049, 3),
    ("A", 12050, 7027, 1),
    ("C", 12099, 7050, 4),
    ("B", 12100, 7050, 1),
    ("C", 12000, 7099, 2),
    ("A", 12001, 7098, 1),
    ("B", 12151, 7100, 5),
    ("C", 12013, 7027, 1),
]
HAND_OBS = ["240_140", "241_140", "240_141", "241_141", "242_141", "243_142"]
HAND_X = np.array([[4, 2, 1], [1, 0, 0], [1, 0, 2], [0, 0, 4], [0, 1, 0], [0, 5, 0]])
HAND_META = ["#FileFormat=GEMv0.1", "#SortedBy=None", "#BinSize=1", "#OffsetX=0", "#OffsetY=0"]


def hand_gem(count="MIDCount", meta=True, exon=True, gene_name=False, extra=None) -> str:
    """The hand-made GEM as text, in one of the header variants of the format note."""
    columns = ["geneID", *(["geneName"] if gene_name else []), "x", "y", count]
    columns += [*(["ExonCount"] if exon else []), *([extra] if extra else [])]
    lines = (HAND_META if meta else []) + ["\t".join(columns)]
    for i, (gene, x, y, c) in enumerate(HAND_ROWS):
        fields = ([f"ID_{gene}", gene] if gene_name else [gene]) + [str(x), str(y), str(c)]
        fields += ([str(max(c - 1, 0))] if exon else []) + ([str(i % 3)] if extra else [])
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


def write_text(path, text, gz=False):
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


# --------------------------------------------------------------------------- binning


def test_bin_counts_floors_written_coordinates():
    x, y = np.array([12013, 12049, 12050, 0]), np.array([7027, 7049, 7027, 99])
    bx, by, m = bin_counts(x, y, np.array([0, 0, 1, 1]), np.array([1, 2, 3, 4]), 50)
    assert list(zip(bx, by, strict=True)) == [(0, 1), (240, 140), (241, 140)]  # row-major
    np.testing.assert_array_equal(m.toarray(), [[0, 4], [3, 0], [0, 3]])
    with pytest.raises(ValueError, match="must lie in"):
        bin_counts(np.array([-1]), np.array([0]), np.array([0]), np.array([1]), 50)


def test_accumulator_merges_chunks_in_any_order(monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 500, 5000), rng.integers(0, 300, 5000)
    genes, counts = rng.integers(0, 7, 5000), rng.integers(0, 4, 5000)
    expected = bin_counts(x, y, genes, counts, 20)
    monkeypatch.setattr(_binning, "MERGE_MIN_ENTRIES", 0)  # merge after every chunk
    acc = _binning.BinAccumulator(20, block=50)  # many small merge ranges
    for part in np.array_split(rng.permutation(5000), 37):
        acc.add(x[part], y[part], genes[part], counts[part])
    bx, by, m = acc.result(7)
    np.testing.assert_array_equal(bx, expected[0])
    np.testing.assert_array_equal(by, expected[1])
    assert (m != expected[2]).nnz == 0


# --------------------------------------------------------------------------- GEM


def test_hand_made_gem(tmp_path):
    path = write_text(tmp_path / "hand.gem", hand_gem())
    adata = read_gem(path, bin_size=50)
    assert list(adata.obs_names) == HAND_OBS
    assert list(adata.var_names) == ["A", "B", "C"]
    np.testing.assert_array_equal(adata.X.toarray(), HAND_X)
    assert adata.X.dtype == np.float32 and sparse.issparse(adata.X)
    np.testing.assert_array_equal(adata.obs["array_col"], adata.obs["bin_x"])
    np.testing.assert_array_equal(adata.obs["array_row"], adata.obs["bin_y"])
    np.testing.assert_array_equal(adata.obsm["spatial"][0], [12025.0, 7025.0])
    assert adata.obsm["spatial"].dtype == np.float64
    info = adata.uns["stereoseq"]
    assert info["bin_size"] == 50 and info["resolution_nm"] == 500 and info["source"] == "gem"
    assert info["meta"]["FileFormat"] == "GEMv0.1" and info["meta"]["OffsetX"] == "0"
    adata.write_h5ad(tmp_path / "hand.h5ad")  # uns must be writable


def test_gem_gz_detected_by_magic_bytes(tmp_path):
    plain = read_gem(write_text(tmp_path / "hand.gem", hand_gem()), bin_size=50)
    for name in ("hand.gem.gz", "hand_gzipped.txt"):
        assert_same_bins(
            read_gem(write_text(tmp_path / name, hand_gem(), gz=True), bin_size=50), plain
        )


@pytest.mark.parametrize(
    "variant",
    [
        dict(count="MIDCounts"),
        dict(count="UMICount"),
        dict(meta=False),
        dict(exon=False),
        dict(extra="CellID"),
        dict(extra="label"),
        dict(count="MIDCounts", meta=False, exon=False),
    ],
)
def test_gem_header_variants(tmp_path, variant):
    adata = read_gem(write_text(tmp_path / "v.gem", hand_gem(**variant)), bin_size=50)
    assert list(adata.obs_names) == HAND_OBS
    np.testing.assert_array_equal(adata.X.toarray(), HAND_X)


def test_gem_gene_name_column(tmp_path):
    path = write_text(tmp_path / "v2.gem", hand_gem(gene_name=True))
    by_id = read_gem(path, bin_size=50)
    assert list(by_id.var_names) == ["ID_A", "ID_B", "ID_C"]
    assert list(by_id.var["gene_symbols"]) == ["A", "B", "C"]
    by_name = read_gem(path, bin_size=50, gene_key="geneName")
    assert list(by_name.var_names) == ["A", "B", "C"]
    np.testing.assert_array_equal(by_name.X.toarray(), HAND_X)


def test_gem_gene_name_duplicates_are_summed(tmp_path):
    text = hand_gem(gene_name=True).replace("ID_C\tC", "ID_C\tB")
    adata = read_gem(write_text(tmp_path / "dup.gem", text), bin_size=50, gene_key="geneName")
    assert list(adata.var_names) == ["A", "B"]
    np.testing.assert_array_equal(adata.X.toarray(), np.c_[HAND_X[:, 0], HAND_X[:, 1:].sum(1)])


def test_gem_matches_direct_binning(sim, files):
    for bin_size in (20, 50, 7):
        adata = read_gem(files["gem"], bin_size=bin_size)
        expected = reference(
            sim.x, sim.y, sim.genes["gene_name"].to_numpy()[sim.gene], sim.count, bin_size
        )
        pd.testing.assert_series_equal(as_series(adata), expected, check_names=False)


def test_gem_chunked_equals_unchunked(files, monkeypatch):
    whole = read_gem(files["gem"], bin_size=20)
    monkeypatch.setattr(_gem, "_MIN_BLOCK_BYTES", 2048)
    monkeypatch.setattr(_binning, "MERGE_MIN_ENTRIES", 0)
    assert_same_bins(read_gem(files["gem"], bin_size=20, chunksize=10), whole)


def test_gem_any_row_order(sim, tmp_path, monkeypatch):
    """Rows in random order (every chunk overlaps every other) still sum exactly."""
    names = sim.genes["gene_name"].to_numpy()[sim.gene]
    order = np.random.default_rng(1).permutation(sim.x.size)
    table = pd.DataFrame({"geneID": names, "x": sim.x, "y": sim.y, "MIDCount": sim.count})
    table.iloc[order].to_csv(tmp_path / "shuffled.gem", sep="\t", index=False)
    monkeypatch.setattr(_gem, "_MIN_BLOCK_BYTES", 1 << 14)
    monkeypatch.setattr(_binning, "MERGE_MIN_ENTRIES", 0)
    adata = read_gem(tmp_path / "shuffled.gem", bin_size=50, chunksize=100)
    expected = reference(sim.x, sim.y, names, sim.count, 50)
    pd.testing.assert_series_equal(as_series(adata), expected, check_names=False)


def test_gem_zero_counts_add_no_bins(tmp_path):
    text = hand_gem() + "A\t99999\t99999\t0\t0\n"
    adata = read_gem(write_text(tmp_path / "zero.gem", text), bin_size=50)
    assert list(adata.obs_names) == HAND_OBS


# --------------------------------------------------------------------------- GEF


def test_gef_equals_gem(files, tmp_path):
    for bin_size in (20, 50):
        gef = read_gef(files["gef"], bin_size=bin_size)
        assert_same_bins(gef, read_gem(files["gem"], bin_size=bin_size))
        assert gef.uns["stereoseq"]["source"] == "gef"
        assert gef.uns["stereoseq"]["level_read"] == ("bin50" if bin_size == 50 else "bin1")
    gef.write_h5ad(tmp_path / "gef.h5ad")  # GEF attributes in uns must be writable


def test_gef_stored_level_equals_binning_bin1(files, tmp_path):
    only_bin1 = shutil.copy(files["gef"], tmp_path / "bin1_only.gef")
    with h5py.File(only_bin1, "a") as f:
        del f["geneExp/bin50"]
    from_bin1 = read_gef(only_bin1, bin_size=50)
    assert from_bin1.uns["stereoseq"]["level_read"] == "bin1"
    assert_same_bins(read_gef(files["gef"], bin_size=50), from_bin1)


def test_gef_chunked_equals_unchunked(files):
    assert_same_bins(
        read_gef(files["gef"], bin_size=20, chunksize=997), read_gef(files["gef"], bin_size=20)
    )


def test_gef_v4_gene_keys(sim, files_v4):
    gem_by_name = read_gem(files_v4["gem"], bin_size=50, gene_key="geneName")
    gef_by_name = read_gef(files_v4["gef"], bin_size=50, gene_key="geneName")
    assert_same_bins(gef_by_name, gem_by_name)
    names = sim.genes["gene_name"].to_numpy()[sim.gene]
    expected = reference(sim.x, sim.y, names, sim.count, 50)
    pd.testing.assert_series_equal(as_series(gef_by_name), expected, check_names=False)
    gef_by_id = read_gef(files_v4["gef"], bin_size=20)
    assert_same_bins(gef_by_id, read_gem(files_v4["gem"], bin_size=20))
    symbols = sim.genes.set_index("gene_id")["gene_name"]
    assert (gef_by_id.var["gene_symbols"] == symbols[gef_by_id.var_names]).all()


def test_simulated_gef_follows_geftools_conventions(files, files_v4):
    with h5py.File(files["gef"]) as f:
        assert f.attrs["version"][0] == 2
        gene, expression = f["geneExp/bin1/gene"][()], f["geneExp/bin1/expression"]
        assert gene.dtype.names == ("gene", "offset", "count")
        np.testing.assert_array_equal(gene["offset"], np.cumsum(gene["count"]) - gene["count"])
        assert list(gene["gene"]) == sorted(gene["gene"])  # byte order of the key
        assert expression.dtype["count"] == np.uint8 and expression.dtype["x"] == np.int32
        assert expression.attrs["minX"][0] == 0 and expression.attrs["resolution"][0] == 500
        bin50 = f["geneExp/bin50/expression"][()]
        assert (bin50["x"] % 50 == 0).all() and (bin50["y"] % 50 == 0).all()
    with h5py.File(files_v4["gef"]) as f:
        assert f.attrs["version"][0] == 4
        assert f["geneExp/bin1/gene"].dtype.names[:2] == ("geneID", "geneName")


def test_cellbin_gef(tmp_path):
    path = tmp_path / "cells.cellbin.gef"
    cell_dtype = [("id", "u4"), ("x", "i4"), ("y", "i4"), ("offset", "u4"), ("geneCount", "u2")]
    cells = np.array([(7, 100, 200, 0, 2), (8, 150, 210, 2, 1), (9, 300, 50, 3, 3)], cell_dtype)
    exp = np.array(
        [(0, 2), (2, 1), (1, 4), (0, 1), (1, 1), (2, 7)], [("geneID", "u4"), ("count", "u2")]
    )
    genes = np.array([(b"Zeta",), (b"Alpha\x00junk",), (b"Mid",)], [("geneName", "S64")])
    with h5py.File(path, "w") as f:
        f.attrs["resolution"] = np.array([715], "u4")
        f.attrs.create("bin_type", np.bytes_("CellBin"), dtype="S32")
        for name, data in (("cell", cells), ("cellExp", exp), ("gene", genes)):
            f.create_dataset(f"cellBin/{name}", data=data)
    adata = read_stereoseq(path)
    assert list(adata.var_names) == ["Alpha", "Mid", "Zeta"]  # decoded up to the first NUL
    np.testing.assert_array_equal(adata.X.toarray(), [[0, 1, 2], [4, 0, 0], [1, 7, 1]])
    np.testing.assert_array_equal(adata.obsm["spatial"], [[100, 200], [150, 210], [300, 50]])
    assert list(adata.obs["cell_id"]) == [7, 8, 9]
    assert adata.uns["stereoseq"]["resolution_nm"] == 715
    assert adata.uns["stereoseq"]["meta"]["bin_type"] == "CellBin"
    adata.write_h5ad(tmp_path / "cells.h5ad")


# --------------------------------------------------------------------------- dispatch


def test_read_stereoseq_decides_by_content(files, tmp_path):
    gef_named_gem = shutil.copy(files["gef"], tmp_path / "really_a_gef.gem")
    gem_named_gef = shutil.copy(files["gem"], tmp_path / "really_a_gem.gef")
    assert read_stereoseq(gef_named_gem, bin_size=50).uns["stereoseq"]["source"] == "gef"
    assert read_stereoseq(gem_named_gef, bin_size=50).uns["stereoseq"]["source"] == "gem"


# --------------------------------------------------------------------------- bad input


def _bad_gem(text):
    return lambda tmp: write_text(tmp / "bad.gem", text)


def _gzip_truncated(tmp):
    rows = hand_gem().split("\n", len(HAND_META) + 1)[-1]
    data = gzip.compress((hand_gem() + rows * 500).encode())  # longer than the header scan
    (tmp / "cut.gem.gz").write_bytes(data[: len(data) // 2])
    return tmp / "cut.gem.gz"


def _h5(tmp, build, name="bad.gef"):
    with h5py.File(tmp / name, "w") as f:
        build(f)
    return tmp / name


def _gef_without_levels(f):
    ds = f.create_dataset(
        "geneExp/bin100/expression", data=np.zeros(1, [("x", "i4"), ("y", "i4"), ("count", "u1")])
    )
    f.create_dataset(
        "geneExp/bin100/gene", data=np.zeros(1, [("gene", "S8"), ("offset", "u4"), ("count", "u4")])
    )
    return ds


def _gef_bad_offsets(f):
    f.create_dataset(
        "geneExp/bin1/expression", data=np.ones(3, [("x", "i4"), ("y", "i4"), ("count", "u1")])
    )
    gene = np.array(
        [(b"A", 0, 2), (b"B", 1, 1)], [("gene", "S8"), ("offset", "u4"), ("count", "u4")]
    )
    f.create_dataset("geneExp/bin1/gene", data=gene)


def _gef_truncated(tmp):
    path = shutil.copy(_h5(tmp, _gef_without_levels, "full.gef"), tmp / "cut.gef")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


HEADER = "geneID\tx\ty\tMIDCount\n"
BAD_INPUTS = {
    "missing count column": (
        _bad_gem("geneID\tx\ty\tcnt\nA\t1\t2\t3\n"),
        r"lacks required column.*found columns",
    ),
    "missing x column": (
        _bad_gem("geneID\tX\ty\tMIDCount\nA\t1\t2\t3\n"),
        r"lacks required column.*'x'",
    ),
    "non-integer count": (
        _bad_gem(HEADER + "A\t1\t2\t1.5\n"),
        r"'MIDCount' has a value that is not an integer",
    ),
    "negative count": (_bad_gem(HEADER + "A\t1\t2\t-3\n"), r"negative count"),
    "NaN coordinate": (_bad_gem(HEADER + "A\tNaN\t2\t3\n"), r"'x' has 1 missing/NaN coordinate"),
    "empty coordinate": (_bad_gem(HEADER + "A\t1\t\t3\n"), r"'y' has 1 missing/NaN coordinate"),
    "negative coordinate": (_bad_gem(HEADER + "A\t-1\t2\t3\n"), r"negative coordinate"),
    "short row": (_bad_gem(HEADER + "A\t1\t2\n"), r"malformed GEM row"),
    "only comments": (_bad_gem("#FileFormat=GEMv0.1\n#BinSize=1\n"), r"no header row"),
    "zero rows": (_bad_gem("#FileFormat=GEMv0.1\n" + HEADER), r"no data rows"),
    "truncated gzip": (_gzip_truncated, r"truncated or not valid gzip"),
    "HDF5 not a GEF": (
        lambda tmp: _h5(tmp, lambda f: f.create_group("foo")),
        r"not a GEF: no 'geneExp' or 'cellBin'",
    ),
    "GEF without level": (
        lambda tmp: _h5(tmp, _gef_without_levels),
        r"neither geneExp/bin1 nor geneExp/bin50.*bin100",
    ),
    "GEF truncated": (_gef_truncated, r"cannot open as HDF5/GEF.*truncated"),
    "missing file": (lambda tmp: tmp / "nope.gem", r"does not exist"),
    "GEF bad offsets": (
        lambda tmp: _h5(tmp, _gef_bad_offsets),
        r"offsets are not the cumulative sum",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_file_and_problem(tmp_path, case):
    make, problem = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(
        InputError, match=re.escape(f"sample 's1', file {str(path)!r}") + ".*" + problem
    ):
        read_stereoseq(path, bin_size=50, sample="s1")


def test_gene_key_gene_name_without_column(tmp_path, files):
    with pytest.raises(InputError, match=r"hand\.gem.*no geneName column"):
        read_gem(write_text(tmp_path / "hand.gem", hand_gem()), gene_key="geneName")
    with pytest.raises(InputError, match=r"sim\.gef.*single 'gene' column"):
        read_gef(files["gef"], gene_key="geneName")


# --------------------------------------------------------------------------- simulator


def test_simulator_is_sparse_and_has_truth(sim):
    n_dnb = SIM["n_bins"][0] * SIM["n_bins"][1] * 20**2
    per_dnb = pd.Series(sim.x.astype(np.int64) * 100_000 + sim.y).value_counts()
    assert per_dnb.size < 0.4 * n_dnb  # most DNBs are empty
    assert per_dnb.max() <= 3  # a captured DNB holds 1-3 genes
    assert (sim.count == 1).mean() > 0.6 and (sim.exon <= sim.count).all()
    assert sim.x.min() == 12013 and sim.y.min() == 7027
    assert sim.genes["is_mt"].sum() > 0
    truth20 = sim.truth[sim.truth["bin_size"] == 20]
    assert set(truth20["domain"]) == set(range(-1, SIM["n_domains"]))
    assert not truth20.duplicated(["bin_x", "bin_y"]).any()
    markers = sim.genes["marker_domain"]
    assert set(markers[markers >= 0]) == set(range(SIM["n_domains"]))


def test_write_stereoseq_outputs(files, sim):
    truth = pd.read_csv(files["truth"], sep="\t")
    pd.testing.assert_frame_equal(truth, sim.truth, check_dtype=False)
    genes = pd.read_csv(files["genes"], sep="\t")
    assert {"gene", "marker_domain"} <= set(genes.columns)
    with gzip.open(files["gem"], "rt") as fh:
        head = [next(fh) for _ in range(9)]
    assert head[0] == "#FileFormat=GEMv0.1\n" and head[8] == "geneID\tx\ty\tMIDCount\tExonCount\n"


def test_write_stereoseq_gem_variants(tmp_path):
    small = dict(n_bins=(8, 6), n_genes=40, n_domains=3, seed=5)
    sim = simulate_stereoseq_counts(**small)
    paths = write_stereoseq(
        tmp_path, **small, formats=("gem",), count_column="UMICount", meta=False, exon=False
    )
    assert set(paths) == {"gem", "truth", "genes", "meta"}
    with gzip.open(paths["gem"], "rt") as fh:
        assert fh.readline() == "geneID\tx\ty\tUMICount\n"
    expected = reference(sim.x, sim.y, sim.genes["gene_name"].to_numpy()[sim.gene], sim.count, 20)
    adata = read_stereoseq(paths["gem"], bin_size=20)
    pd.testing.assert_series_equal(as_series(adata), expected, check_names=False)
