"""F1-LISI: how well a joint embedding mixes sections while keeping domains apart.

LISI (local inverse Simpson's index) counts, around each spot, the effective number of
categories among its neighbours (perplexity-weighted, as in Harmony's paper). On a group of
sections, the *integration* LISI (iLISI) over section labels should be high (each domain's
spots from all sections mixed), and the *cluster* LISI (cLISI) over domain labels low (each
neighbourhood one domain). Scaled to [0, 1] and combined by a harmonic mean, as the SpaSEG
paper scores its multi-section mode::

    i = (median iLISI - 1) / (n_sections - 1)
    c = 1 - (median cLISI - 1) / (n_domains - 1)
    F1 = 2 i c / (i + c)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .._errors import InputError


def f1_lisi(
    adata: AnnData,
    *,
    batch_key: str = "sample",
    label_key: str = "domain",
    use_rep: str = "spaseg_embedding",
    perplexity: float = 30.0,
    key_added: str = "f1_lisi",
    copy: bool = False,
) -> dict | None:
    """Section mixing (iLISI), domain separation (cLISI) and their F1 on a joint embedding.

    Parameters
    ----------
    adata
        Spots of several sections with a joint embedding and shared domain labels (e.g. the
        output of :func:`spaseg.tl.spaseg` with ``sample_key``).
    batch_key
        ``obs`` column naming each spot's section.
    label_key
        ``obs`` column of domain labels.
    use_rep
        ``obsm`` key of the embedding (SpaSEG's logits by default; ``"X_pca"`` for the PCs).
    perplexity
        Effective neighbourhood size of LISI (Harmony's ``compute_lisi``, 30 by default).
    key_added
        ``uns`` key of the result.
    copy
        Return the result instead of writing it to ``uns``.

    Returns
    -------
    ``{"ilisi", "clisi", "ilisi_scaled", "clisi_scaled", "f1", "n_sections", "n_domains",
    "use_rep"}`` (medians over spots; scaled values in [0, 1], 1 best) in
    ``uns[key_added]``, or returned with ``copy=True``.
    """
    from harmonypy import compute_lisi  # the joint steps' dependency, not the library's

    for key in (batch_key, label_key):
        if key not in adata.obs:
            raise InputError(f"obs has no column {key!r}.", field=key)
    if use_rep not in adata.obsm:
        raise InputError(f"obsm has no embedding {use_rep!r}.", field=f"obsm['{use_rep}']")
    meta = pd.DataFrame(
        {"batch": adata.obs[batch_key].astype(str), "label": adata.obs[label_key].astype(str)}
    )
    n_sections, n_domains = meta["batch"].nunique(), meta["label"].nunique()
    if n_sections < 2 or n_domains < 2:
        raise InputError(
            f"needs at least two sections and two domains, got {n_sections} and {n_domains}.",
            field=batch_key if n_sections < 2 else label_key,
        )
    embedding = np.asarray(adata.obsm[use_rep], dtype=np.float64)
    # LISI needs about 3 x perplexity neighbours per spot.
    perplexity = min(perplexity, (adata.n_obs - 1) / 3)
    lisi = compute_lisi(embedding, meta, ["batch", "label"], perplexity=perplexity)
    ilisi, clisi = (float(np.median(lisi[:, k])) for k in (0, 1))
    i = float(np.clip((ilisi - 1) / (n_sections - 1), 0, 1))
    c = float(np.clip(1 - (clisi - 1) / (n_domains - 1), 0, 1))
    result = {
        "ilisi": ilisi,
        "clisi": clisi,
        "ilisi_scaled": i,
        "clisi_scaled": c,
        "f1": 2 * i * c / (i + c) if i + c > 0 else 0.0,
        "n_sections": int(n_sections),
        "n_domains": int(n_domains),
        "use_rep": use_rep,
    }
    if copy:
        return result
    adata.uns[key_added] = result
    return None
