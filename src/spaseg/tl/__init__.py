"""Tools: SpaSEG domains and downstream analyses.

:func:`spaseg` is imported on first use, so that jobs which never train (QC, PCA, plots, SVG)
do not pay for importing torch.
"""

from ._align import align
from ._consensus import consensus_labels
from ._deconv import cell2location_map, cell2location_signatures
from ._lr import cell_type_entropy, ligrec_domains, load_resource, lr_scores, top_pairs
from ._moran import morans_i, spatial_knn_graph
from ._svg import svg

__all__ = [
    "align",
    "cell2location_map",
    "cell2location_signatures",
    "cell_type_entropy",
    "consensus_labels",
    "ligrec_domains",
    "load_resource",
    "lr_scores",
    "morans_i",
    "spaseg",
    "spatial_knn_graph",
    "svg",
    "top_pairs",
]


def __getattr__(name: str):
    if name == "spaseg":
        from ._spaseg import spaseg

        return spaseg
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
