"""Tools: SpaSEG domains and downstream analyses (each loaded on first use, so that a job
which never trains does not import torch, and one that never scores L-R pairs skips squidpy)."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_align": ["align"],
        "_consensus": ["consensus_labels"],
        "_deconv": ["cell2location_map", "cell2location_signatures"],
        "_lisi": ["f1_lisi"],
        "_ligrec": ["ligrec_domains"],
        "_lr": ["cell_type_entropy", "lr_scores"],
        "_lr_data": ["load_resource"],
        "_lr_tables": ["top_pairs"],
        "_moran": ["morans_i", "spatial_knn_graph"],
        "_spaseg": ["spaseg"],
        "_svg": ["svg"],
    },
)
