"""SpaSEG: unsupervised CNN segmentation of spatial transcriptomics sections into domains.

Scanpy-style layout: ``io`` (readers), ``pp`` (QC, normalisation, PCA, image building),
``tl`` (SpaSEG and downstream tools), ``pl`` (plots), ``datasets`` (simulators with known truth).
"""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, io, pl, pp, tl
from ._errors import InputError

try:
    __version__ = version("spaseg")
except PackageNotFoundError:  # running from a source checkout without installation
    __version__ = "0.0.0+unknown"

__all__ = ["InputError", "datasets", "io", "pl", "pp", "tl", "__version__"]
