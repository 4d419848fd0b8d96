"""The PCA step's options: a gene panel (pca.genes: the library, the file format, and the
workflow's check before any job runs), genes left out, and scaled genes kept sparse."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import yaml
from scipy import sparse
from test_workflow import output, snakemake
from test_workflow_cci import dry_run

import spaseg
from spaseg import InputError


def section():
    adata = spaseg.datasets.simulate_tissue(3, pattern="layers", n_rows=14, n_genes=120, seed=1)
    adata.var["gene_symbols"] = [f"Sym{k}" for k in range(adata.n_vars)]
    return adata


def test_scaled_pcs_are_those_of_scanpy_scale_without_densifying():
    """scale=True gives the PCs of sc.pp.scale(max_value=10) (both clips included), from a
    matrix that stays sparse."""
    adata = spaseg.datasets.simulate_tissue(3, pattern="layers", n_rows=24, n_genes=120, seed=1)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    x = adata.X.toarray()
    x[:, 0] = 0.0
    x[0, 0] = 6.0  # a rare gene (one spot of ~250): clipped at +10 SD
    x[:, 1] = 3.0
    x[0, 1] = 0.0  # present everywhere else: its zero clipped at -10 SD,
    x[1, 1] = 1e-3  # and a stored value too, which becomes a zero to drop
    adata.X = sparse.csr_matrix(x, dtype=np.float64)  # float64: no cast that would copy it
    dense = sc.pp.scale(adata, max_value=10, copy=True)
    assert dense.X[0, 0] == 10 and (dense.X[:2, 1] == -10).all()  # the clips do act

    before = adata.X.copy()
    scaled = spaseg.pp.scaled_genes(adata)
    assert sparse.issparse(scaled.X) and scaled.X.nnz <= adata.X.nnz
    assert (adata.X != before).nnz == 0  # the input is left as it was
    centred = scaled.X.toarray() - scaled.X.toarray().mean(axis=0)
    np.testing.assert_allclose(centred, dense.X - dense.X.mean(axis=0), atol=1e-4)  # float32

    sc.pp.pca(dense, n_comps=5, random_state=0)
    sc.pp.pca(scaled, n_comps=5, random_state=0)
    np.testing.assert_allclose(
        np.abs(scaled.obsm["X_pca"]), np.abs(dense.obsm["X_pca"]), rtol=1e-3, atol=1e-3
    )


def test_panel_pcs_are_the_pcs_of_the_panel_genes():
    """All genes are normalised; the PCs are those of the panel's columns alone."""
    adata = section()
    panel = list(adata.var_names[5:35])
    out = spaseg.pp.normalize_pca(adata, n_comps=5, genes=panel, copy=True)
    assert out.var["pca_panel"].sum() == 30 and out.uns["pca"]["params"]["genes"] == 30
    assert (out.varm["PCs"][~out.var["pca_panel"].to_numpy()] == 0).all()

    by_hand = adata.copy()
    sc.pp.normalize_total(by_hand, target_sum=float(np.median(np.asarray(adata.X.sum(axis=1)))))
    sc.pp.log1p(by_hand)
    by_hand = by_hand[:, panel].copy()
    sc.pp.pca(by_hand, n_comps=5, random_state=0)
    for k in range(5):  # the same components, up to sign
        r = np.corrcoef(out.obsm["X_pca"][:, k], by_hand.obsm["X_pca"][:, k])[0, 1]
        assert abs(r) > 0.999, (k, r)
    everything = spaseg.pp.normalize_pca(adata, n_comps=5, copy=True)
    assert not np.allclose(np.abs(everything.obsm["X_pca"]), np.abs(out.obsm["X_pca"]), atol=1e-3)


def test_panel_file_symbols_comments_and_missing_genes(tmp_path, caplog):
    adata = section()
    path = tmp_path / "panel.tsv"
    path.write_text("# genes variable in earlier sections\nsym3\tnote\n\nSYM4,x\nSym9\nNOPE\n")
    assert spaseg.io.read_gene_panel(path) == ["sym3", "SYM4", "Sym9", "NOPE"]
    with caplog.at_level(logging.WARNING, logger="spaseg"):
        out = spaseg.pp.normalize_pca(adata, n_comps=2, genes=path, sample="s1", copy=True)
    assert list(out.var_names[out.var["pca_panel"]]) == list(adata.var_names[[3, 4, 9]])
    assert "3 of the 4 panel genes" in caplog.text


def test_panel_without_the_data_genes_is_named(tmp_path):
    adata = section()
    with pytest.raises(InputError, match="0 of the 2 panel genes") as err:
        spaseg.pp.normalize_pca(adata, genes=["ENSG1", "ENSG2"], sample="s1")
    assert err.value.field == "pca.genes" and err.value.sample == "s1"
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(InputError, match="names no genes") as err:
        spaseg.io.read_gene_panel(empty)
    assert err.value.file == empty


def test_excluded_genes_are_left_out_of_the_pcs(tmp_path, caplog):
    """pca.exclude_genes: the PCs are those of the other genes (names or symbols, a file or a
    list, genes the data lack ignored); with a panel, of the panel without them."""
    adata = section()
    path = tmp_path / "exclude.txt"
    path.write_text(f"# another tissue\nsym3\n{adata.var_names[4]}\nNOPE\n")
    with caplog.at_level(logging.INFO, logger="spaseg"):
        out = spaseg.pp.normalize_pca(adata, n_comps=5, exclude_genes=path, sample="s1", copy=True)
    kept = out.var["pca_panel"].to_numpy()
    assert list(out.var_names[~kept]) == list(adata.var_names[[3, 4]])
    assert out.uns["pca"]["params"]["exclude_genes"] == 2
    assert "s1: PCA without 2 genes" in caplog.text
    by_list = spaseg.pp.normalize_pca(
        adata, n_comps=5, genes=list(adata.var_names[kept]), copy=True
    )
    np.testing.assert_allclose(out.obsm["X_pca"], by_list.obsm["X_pca"], rtol=1e-5, atol=1e-5)

    both = spaseg.pp.normalize_pca(
        adata, n_comps=3, genes=list(adata.var_names[:20]), exclude_genes=["Sym3"], copy=True
    )
    assert both.var["pca_panel"].sum() == 19 and not both.var["pca_panel"].iloc[3]
    assert both.uns["pca"]["params"]["exclude_genes"] == 1

    with pytest.raises(InputError, match="leaves 1 genes") as err:
        spaseg.pp.normalize_pca(adata, exclude_genes=list(adata.var_names[1:]), sample="s1")
    assert err.value.field == "pca.exclude_genes" and err.value.sample == "s1"


def test_leading_genes_of_each_pc_are_logged(caplog):
    """The log names each PC's leading genes (by symbol): on simulated layers, PC1's are
    planted domain markers, which is how a contaminating programme would show up."""
    adata = section()
    roles = dict(zip(adata.var["gene_symbols"], adata.var["gene_role"], strict=True))
    with caplog.at_level(logging.INFO, logger="spaseg"):
        spaseg.pp.normalize_pca(adata, n_comps=3, sample="s1")
    lines = [r.getMessage() for r in caplog.records if "leading genes" in r.getMessage()]
    assert [line.split(" leading")[0] for line in lines] == ["s1: PC1", "s1: PC2", "s1: PC3"]
    pc1 = [name.rstrip("+-") for name in lines[0].split(": ")[-1].split()]
    assert len(pc1) == 6 and all(roles[name] == "marker" for name in pc1), lines[0]


def test_joint_pca_takes_the_panel_among_shared_genes():
    a, b = section(), section()
    b = b[:, 10:].copy()  # the panel's first genes are not shared
    joint = spaseg.pp.joint_normalize_pca(
        {"a": a, "b": b}, n_comps=3, genes=list(a.var_names[5:25])
    )
    assert joint.var["pca_panel"].sum() == 15
    joint = spaseg.pp.joint_normalize_pca(
        {"a": a, "b": b}, n_comps=3, exclude_genes=list(a.var_names[10:15])
    )
    assert joint.var["pca_panel"].sum() == b.n_vars - 5


def test_workflow_reads_the_panel_before_any_job(tmp_path):
    result, _, _ = dry_run(tmp_path / "missing", {"pca": {"genes": "nowhere.txt"}})
    assert result.returncode != 0
    assert "pca.genes" in output(result) and "nowhere.txt" in output(result)

    panel = tmp_path / "panel.txt"
    panel.write_text("G1\nG2\nG3\n")
    result, jobs, _ = dry_run(tmp_path / "panel", {"pca": {"genes": str(panel)}})
    assert result.returncode == 0, output(result)
    assert jobs["normalize_pca"] == 2 and result.stdout.count(str(panel)) >= 2, result.stdout

    result, _, _ = dry_run(tmp_path / "exclude", {"pca": {"exclude_genes": "nowhere.txt"}})
    assert result.returncode != 0
    assert "pca.exclude_genes" in output(result) and "nowhere.txt" in output(result)
    result, jobs, _ = dry_run(tmp_path / "exclude2", {"pca": {"exclude_genes": str(panel)}})
    assert result.returncode == 0, output(result)
    assert result.stdout.count(str(panel)) >= 2, result.stdout


def test_workflow_pca_uses_the_panel(tmp_path):
    """The rule reads the panel and the exclusion list (rule inputs) and computes the PCs on
    the panel's genes without the excluded ones."""
    _, _, paths = dry_run(tmp_path, {})
    genes = list(ad.read_h5ad(paths["section"]).var_names[:12])
    panel = tmp_path / "panel.txt"
    panel.write_text("\n".join(genes) + "\n")
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("\n".join(genes[:2]) + "\n")
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["pca"] = {"genes": str(panel), "exclude_genes": str(exclude)}
    config["qc"] = {"gates": {"min_spots": None, "min_median_genes": None}}  # a tiny section
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    target = str(tmp_path / "results" / "a" / "pca.h5ad")
    result = snakemake("--cores", "1", target, configfiles=[tmp_path / "config.yaml"])
    assert result.returncode == 0, output(result)
    pca = ad.read_h5ad(target)
    used = [g for g in pca.var_names if g in genes[2:]]
    assert list(pca.var_names[pca.var["pca_panel"]]) == used and len(used) > 2
    assert pca.uns["pca"]["params"]["genes"] == len(used)
    assert pca.uns["pca"]["params"]["exclude_genes"] == sum(g in pca.var_names for g in genes[:2])
