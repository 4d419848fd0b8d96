"""Tools: SpaSEG domains and downstream analyses."""

from ._consensus import consensus_labels
from ._spaseg import spaseg

__all__ = ["consensus_labels", "spaseg"]
