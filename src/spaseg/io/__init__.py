"""Readers: every one returns raw counts in ``X`` and coordinates in ``obsm["spatial"]``."""

from ._h5ad import read_h5ad as read_h5ad
from ._read import READERS as READERS
from ._read import read as read
from ._read import register_reader as register_reader
from ._readers import check_spatial as check_spatial
from ._stereoseq import bin_counts as bin_counts
from ._stereoseq import read_gef as read_gef
from ._stereoseq import read_gem as read_gem
from ._stereoseq import read_stereoseq as read_stereoseq
from ._table import read_table as read_table
from ._visium import read_visium as read_visium
