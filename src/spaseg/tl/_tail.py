"""P-values beyond the reach of the background draws: a generalised Pareto tail.

An empirical p-value from ``n`` background draws cannot fall below ``1 / (n + 1)``, so with
1 000 draws no test survives a correction over hundreds of pairs. Where the draws cover the
observed value well (at least ``min_exceed`` of them are as large), the empirical p is exact
and kept. Beyond that, the tail of the background is modelled: the ``n_tail`` largest draws
exceed a threshold ``t`` (midway between the ``n_tail``-th and the next largest), and the
excesses over ``t`` follow a generalised Pareto distribution (the limit law of excesses over a
high threshold, whatever the parent distribution), fitted by maximum likelihood with a shape of
at least 0 (:func:`gpd_fit`; a bounded fitted tail would give p = 0 just past the largest
draw). Then ``p = n_tail / n * GPD.sf(x - t)``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

#: Draws at least as large as the observed value above which the empirical p is used.
MIN_EXCEED = 10
#: Smallest p reported (a bounded fitted tail can give exactly 0).
P_FLOOR = 1e-300


def tail_pvalues(
    observed: np.ndarray,
    null_sorted: np.ndarray,
    which: np.ndarray,
    count: np.ndarray,
    *,
    min_exceed: int = MIN_EXCEED,
    n_tail: int | None = None,
) -> np.ndarray:
    """P-values of ``observed`` against its background, empirical where it is covered.

    Parameters
    ----------
    observed
        ``(q,)`` statistics.
    null_sorted
        ``(b, n)`` background draws, each row sorted ascending.
    which
        ``(q,)`` row of ``null_sorted`` each statistic is compared with.
    count
        ``(q,)`` draws of its row at least as large as the statistic (ties included).
    min_exceed
        Below this many such draws, the fitted tail replaces the empirical p.
    n_tail
        Draws in the fitted tail (default: a tenth of ``n``, at least 30).

    Returns
    -------
    ``(q,)`` p-values in ``[P_FLOOR, 1]``.
    """
    n = null_sorted.shape[1]
    p = (1.0 + count) / (n + 1.0)
    n_tail = n_tail or max(n // 10, 30)
    tail = np.flatnonzero(count < min_exceed)
    if n < 2 * n_tail or tail.size == 0:
        return p
    for row in np.unique(which[tail]):
        queries = tail[which[tail] == row]
        fitted = fit_tail(null_sorted[row], n_tail)
        if fitted is None:
            continue
        threshold, shape, scale = fitted
        excess = observed[queries] - threshold
        p_tail = n_tail / n * stats.genpareto.sf(excess, shape, loc=0, scale=scale)
        # Never above the empirical estimate's own count (the fit only extends the tail).
        p[queries] = np.clip(np.minimum(p_tail, p[queries]), P_FLOOR, 1.0)
    return p


def fit_tail(draws_sorted: np.ndarray, n_tail: int) -> tuple[float, float, float] | None:
    """(threshold, shape, scale) of a generalised Pareto fit to the ``n_tail`` largest draws;
    None when they do not vary, or when most of them repeat one another: a background of few
    possible values (e.g. means over a handful of spots) has no continuous tail to model, and
    a fit to its steps would put p far too low past its largest draw."""
    top = draws_sorted[-(n_tail + 1) :].astype(np.float64)
    if len(np.unique(top)) < (n_tail + 1) // 2:
        return None
    threshold = 0.5 * (top[0] + top[1])
    excess = top[1:] - threshold
    if not np.ptp(excess) > 0:
        return None
    shape, scale = gpd_fit(excess)
    return threshold, shape, scale


def gpd_fit(excess: np.ndarray) -> tuple[float, float]:
    """(shape, scale) of the generalised Pareto distribution (location 0) of largest
    likelihood with a shape of at least 0.

    A bounded tail (shape < 0) ends a little past the largest draw, where every larger value
    would get p = 0: too sure from ~100 excesses; the lightest unbounded tail, the exponential
    (shape 0, scale the mean excess), is conservative there. With ``theta = shape / scale``
    the likelihood's maximum over the shape is closed-form (Grimshaw 1993): ``shape =
    mean(log1p(theta x))``, so a one-dimensional search over ``theta >= 0`` finds it, a grid
    then a golden-section refinement: the fit a Nelder-Mead search over both parameters
    finds, or a better one where that search stops short, ~10 times faster (a table fits a
    tail for every row its draws do not cover).
    """
    x = np.asarray(excess, dtype=np.float64)
    mean = float(x.mean())

    def profile(theta: np.ndarray) -> np.ndarray:  # log-likelihood / n, for theta > 0
        shape = np.log1p(np.multiply.outer(theta, x)).mean(axis=-1)
        return -(np.log(shape / theta) + 1.0 + shape)

    grid = np.geomspace(1e-4, 1e4, 161) / mean
    values = profile(grid)
    best = int(np.argmax(values))
    if values[best] <= -(np.log(mean) + 1.0):  # theta = 0, the exponential, is at least as good
        return 0.0, mean
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(40):  # the bracket shrinks to 1e-8 of itself
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        fa, fb = profile(np.array([a, b]))
        lo, hi = (lo, b) if fa >= fb else (a, hi)
    theta = 0.5 * (lo + hi)
    shape = float(np.log1p(theta * x).mean())
    return shape, shape / theta
