"""SpaSEG: unsupervised CNN segmentation of spatial transcriptomics sections into domains.

Scanpy-style layout: ``io`` (readers), ``pp`` (QC, normalisation, PCA, image building),
``tl`` (SpaSEG and downstream tools), ``pl`` (plots), ``datasets`` (simulators with known truth).

Subpackages, and the heavy libraries behind them (torch, scanpy, matplotlib), load on first
use: a job that only reads and writes AnnData does not pay for the rest.
"""

from importlib.metadata import PackageNotFoundError, version

import lazy_loader

from ._errors import InputError

try:
    __version__ = version("spaseg")
except PackageNotFoundError:  # running from a source checkout without installation
    __version__ = "0.0.0+unknown"

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submodules=["datasets", "io", "pl", "pp", "tl"]
)
__all__ = ["InputError", "datasets", "io", "pl", "pp", "tl", "__version__"]
