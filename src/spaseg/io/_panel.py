"""Gene panels: plain lists of genes, one per line (light: no scanpy, read before jobs run)."""

from __future__ import annotations

from pathlib import Path

from .._errors import InputError


def read_gene_panel(path: str | Path, *, field: str = "pca.genes") -> list[str]:
    """Genes of a panel file: the first field of each line (tab, comma or space separated);
    empty lines and lines starting with ``#`` are skipped. ``field`` names the setting in
    error messages."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise InputError(f"cannot read the gene list: {err}", file=path, field=field) from err
    genes = [line.replace(",", " ").split()[0] for line in lines if line.strip()]
    genes = [g for g in genes if not g.startswith("#")]
    if not genes:
        raise InputError("the gene list names no genes.", file=path, field=field)
    return genes
