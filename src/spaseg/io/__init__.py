"""spaseg.io"""

from ._h5ad import read_h5ad as read_h5ad
from ._read import READERS as READERS
from ._read import read as read
from ._read import register_reader as register_reader
from ._readers import check_spatial as check_spatial
from ._table import read_table as read_table
from ._visium import read_visium as read_visium
