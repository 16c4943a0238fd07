"""The power-law exponent of a weight matrix's eigenvalue tail, as WeightWatcher reports it
(Martin & Mahoney, "Implicit self-regularization in deep neural networks", arXiv 1810.01075;
JMLR 2021): the eigenvalues of W^T W are lambda_i = s_i^2; their density's tail p(lambda) ~
lambda^-alpha is fitted by maximum likelihood above the xmin that minimises the Kolmogorov-
Smirnov distance between the tail and the fit (Clauset, Shalizi & Newman 2009, the method of
the ``powerlaw`` package WeightWatcher calls). Well-trained layers mostly have 2 <= alpha <= 6;
above 6 a layer looks like a random matrix, below 2 its tail is very heavy.

NumPy only: the findings read it from stored spectra without torch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["tail_exponent", "MIN_EVALS", "MIN_TAIL"]

MIN_EVALS = 50       # fewer eigenvalues say nothing of a tail (WeightWatcher's min_evals)
MIN_TAIL = 10        # eigenvalues at least in the tail a fit is made on
MAX_CANDIDATES = 1024   # xmin candidates tried at most (evenly spaced over the sorted values)


def tail_exponent(singular_values) -> float:
    """alpha of the eigenvalue tail of a matrix with these singular values (any order); NaN
    with fewer than ``MIN_EVALS`` positive finite values."""
    s = np.asarray(singular_values, dtype=np.float64).ravel()
    lam = np.sort(s[np.isfinite(s) & (s > 0)] ** 2)
    n = len(lam)
    if n < MIN_EVALS:
        return float("nan")
    logs = np.log(lam)
    # tail sums of log(lambda) from each start i: the MLE of each candidate xmin in O(1)
    suffix = np.cumsum(logs[::-1])[::-1]
    starts = np.unique(np.linspace(0, n - MIN_TAIL, min(MAX_CANDIDATES, n - MIN_TAIL + 1)).astype(int))
    best_alpha, best_d = float("nan"), np.inf
    for i in starts:
        tail = lam[i:]
        count = n - i
        spread = suffix[i] - count * logs[i]
        if spread <= 0:           # every value in the tail equal: no slope to fit
            continue
        alpha = 1.0 + count / spread
        # KS distance between the tail's empirical CDF and the fitted one
        fitted = 1.0 - (tail / lam[i]) ** (1.0 - alpha)
        empirical = np.arange(count) / count
        d = max(np.abs(fitted - empirical).max(), np.abs(fitted - (empirical + 1 / count)).max())
        if d < best_d:
            best_alpha, best_d = alpha, d
    return float(best_alpha)
