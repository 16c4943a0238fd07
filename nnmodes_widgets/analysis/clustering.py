"""Clustering layers by the shape of their relative-weight-change (RWC) trends.

The pipeline published with WeightScale (Agarwal et al., arXiv 2107.07005; code in
ManifoldRG/Relative-Weight-Change, folder ``clustering/``); see SPEC section 4.1 and
shared/reference/weightscale/README.md. Per layer series, in this order:

1. non-finite values (None, NaN, +-inf) are replaced by the sum of the finite values divided by
   the *full* series length -- not the mean of the finite values: a quirk of the published code,
   kept so that its partitions are reproduced;
2. outliers, values farther than 2 standard deviations (population std) from the series mean, are
   replaced by that mean; mean and std are computed once, on the output of step 1, before any
   outlier is replaced.

Then the layers x time matrix is clustered by K-Means++ (10 restarts, at most 300 iterations),
either on the series themselves (``space="raw"``) or on their first two principal components
(``space="pca"``).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

# scikit-learn (KMeans, PCA: the implementations the published code used) is imported when
# clustering runs, not with the package: importing it costs about a second, and it is only
# needed here.

__all__ = ["SPACES", "LayerClusters", "cluster_layers", "elbow_k", "preprocess_series",
           "series_from_history", "aligned_series", "bucket_means"]

SPACES = ("raw", "pca")

# The published settings (sklearn's KMeans with init="k-means++", n_init=10, max_iter=300).
N_INIT = 10
MAX_ITER = 300
OUTLIER_STDS = 2.0
MAX_AUTO_K = 10


@dataclass(frozen=True)
class LayerClusters:
    """Result of :func:`cluster_layers`.

    - ``labels``: layer -> cluster number, for every clustered layer (excluded ones are absent),
      in the input order. Canonical: clusters are numbered 0, 1, 2, ... in the order in which
      their first layer appears, so the same partition always gets the same numbers.
    - ``k``: the number of clusters asked of K-Means (given, or chosen by the elbow rule). With
      fewer than ``k`` distinct series K-Means may fill fewer clusters; ``labels`` then uses fewer
      numbers.
    - ``embedding``: layer -> (x, y), for plotting. With ``space="pca"`` these are the principal
      component coordinates that were clustered; with ``space="raw"`` a 2-D PCA projection of the
      same (preprocessed) series, for plotting only. A missing second component (one layer, or
      series of length 1) is 0.
    - ``inertia``: k -> K-Means inertia for k = 1..min(10, n_layers - 1) when k was chosen
      automatically (``k=None``); ``None`` when k was given.
    - ``series``: layer -> the series that was clustered (after preprocessing, if any), a tuple
      of floats.
    - ``space``: ``"raw"`` or ``"pca"``.
    """

    labels: dict[str, int]
    k: int
    embedding: dict[str, tuple[float, float]]
    inertia: dict[int, float] | None
    series: dict[str, tuple[float, ...]]
    space: str

    @property
    def clusters(self) -> list[list[str]]:
        """The partition: the layers of cluster 0, of cluster 1, ..., each in input order."""
        out: list[list[str]] = [[] for _ in range(max(self.labels.values(), default=-1) + 1)]
        for layer, label in self.labels.items():
            out[label].append(layer)
        return out


def cluster_layers(
    series: Mapping[str, object],
    *,
    k: int | None = None,
    space: str = "raw",
    preprocess: bool = True,
    exclude: Iterable[str] | str = (),
    seed: int = 0,
) -> LayerClusters:
    """Cluster layers by their RWC trends (WeightScale, arXiv 2107.07005; SPEC 4.1).

    ``series`` maps layer name -> sequence of RWC values over time, all of the same length T:
    lists (``None`` counts as missing), NumPy arrays or torch tensors (any device or dtype), e.g.
    ``series_from_history(monitor.history)`` or
    ``{layer: monitor.history.get("rwc", layer)[1] for layer in monitor.history.layers("rwc")}``.
    The input is never modified.

    - ``exclude``: layer names dropped before anything else (the published runs drop the first
      and the last layer); a single name may be given as a string. Excluded series are not checked.
    - ``preprocess``: apply the published preprocessing (see the module docstring). With
      ``preprocess=False`` the series are clustered as given and must be finite.
    - ``space``: ``"raw"`` clusters the T-value series, ``"pca"`` their first two principal
      components (layers are the samples, time steps the features; centred, not scaled).
    - ``k``: the number of clusters, 1 <= k <= number of layers. ``None`` chooses it with
      :func:`elbow_k` from the inertia over k = 1..min(10, n_layers - 1) (needs >= 2 layers).
    - ``seed``: K-Means++ seeding; the same seed gives the same result.

    Raises TypeError for values that are not a mapping of 1-D real sequences (naming the layer)
    and ValueError for: no layers, an empty series, series of unequal length, a series without
    any finite value (or, with ``preprocess=False``, with any non-finite value), an unknown
    ``space``, an ``exclude`` name that is not a layer, nothing left after exclusion, ``k`` out
    of range, fewer than 2 layers for automatic k.
    """
    if not isinstance(series, Mapping):
        raise TypeError(f"series must be a mapping layer -> sequence of values, got {type(series).__name__}")
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; choose one of {', '.join(map(repr, SPACES))}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if not isinstance(preprocess, (bool, np.bool_)):
        raise TypeError(f"preprocess must be True or False, got {preprocess!r}")
    if not series:
        raise ValueError("series is empty: there are no layers to cluster")

    excluded = _excluded(exclude, series)
    layers = [layer for layer in series if layer not in excluded]
    if not layers:
        raise ValueError(f"every layer is excluded ({len(excluded)} of {len(series)}); nothing to cluster")
    n = len(layers)
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"k must be an integer or None, got {k!r}")
        if not 1 <= k <= n:
            raise ValueError(f"k={k} is out of range: choose 1 <= k <= {n}, the number of layers"
                             + (f" left after excluding {len(excluded)}" if excluded else ""))
    elif n < 2:
        raise ValueError(f"choosing k automatically needs at least 2 layers, got {n} ({layers[0]!r}); "
                         "pass k=1 or more layers")

    rows = [_as_series(layer, series[layer]) for layer in layers]
    length = len(rows[0])
    for layer, row in zip(layers, rows):
        if len(row) == 0:
            raise ValueError(f"series of layer {layer!r} is empty")
        if len(row) != length:
            raise ValueError(f"series of layer {layer!r} has length {len(row)}, but that of "
                             f"{layers[0]!r} has length {length}; all series must have the same length")
    if preprocess:
        rows = [preprocess_series(row, layer=layer) for layer, row in zip(layers, rows)]
    else:
        for layer, row in zip(layers, rows):
            bad = np.flatnonzero(~np.isfinite(row))
            if bad.size:
                raise ValueError(f"series of layer {layer!r} has non-finite values at positions "
                                 f"{bad.tolist()[:10]}; K-Means needs finite values "
                                 "(preprocess=True replaces them)")
    matrix = np.stack(rows)                       # [layers, T] float64

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits   # a dependency of scikit-learn

    # One OpenMP thread (for this calling thread only): the problems are tiny (layers x time
    # steps), and on a busy machine K-Means' thread team made one call 30-60x slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        plane = _project2d(matrix)                # [layers, 2]
        points = plane if space == "pca" else matrix
        inertia = None
        if k is None:
            inertia = {}
            for kk in range(1, min(MAX_AUTO_K, n - 1) + 1):
                with warnings.catch_warnings():
                    # duplicate series leave fewer distinct points than kk: a legitimate flat tail
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    inertia[kk] = float(_kmeans(points, kk, seed).inertia_)
            k = elbow_k(inertia)
        raw_labels = _kmeans(points, int(k), seed).labels_

    return LayerClusters(
        labels=dict(zip(layers, _canonical(raw_labels))),
        k=int(k),
        embedding={layer: (float(x), float(y)) for layer, (x, y) in zip(layers, plane)},
        inertia=inertia,
        series={layer: tuple(row.tolist()) for layer, row in zip(layers, rows)},
        space=space,
    )


def preprocess_series(values, *, layer: str = "series") -> np.ndarray:
    """The published preprocessing of one series (steps 1-2 of the module docstring).

    Returns a new float64 array; ``values`` is not modified. ``layer`` names the series in errors.
    Raises ValueError if the series is empty or has no finite value.
    """
    v = _as_series(layer, values)
    if v.size == 0:
        raise ValueError(f"series of layer {layer!r} is empty")
    finite = np.isfinite(v)
    if not finite.any():
        raise ValueError(f"series of layer {layer!r} has no finite value (all {v.size} are None, NaN or inf)")
    # Step 1: the published code summed the finite values and divided by the full length.
    v[~finite] = v[finite].sum() / v.size
    # Step 2: one mean and one std for the whole pass (replacing an outlier does not move the
    # bounds for the next one); strictly farther than 2 std is an outlier.
    mean, std = v.mean(), v.std()
    v[np.abs(v - mean) > OUTLIER_STDS * std] = mean
    return v


def elbow_k(inertia: Mapping[int, float]) -> int:
    """The elbow of an inertia curve: the k whose point lies farthest from the straight line
    joining the first and the last point, after scaling k and inertia each to [0, 1].

    Ties (and a flat curve, or one or two points) go to the smallest k. Scaling an axis
    multiplies every point's distance to the chord by the same factor, so the scaling does not
    change which k is chosen; it makes the distances comparable between curves.
    """
    if not inertia:
        raise ValueError("inertia is empty: no k to choose from")
    ks = np.array(sorted(inertia), dtype=np.float64)
    ys = np.array([inertia[int(kk)] for kk in ks], dtype=np.float64)
    if not np.isfinite(ys).all():
        raise ValueError(f"inertia has non-finite values: {dict(zip(ks.astype(int).tolist(), ys.tolist()))}")
    x = _unit(ks)
    y = _unit(ys)
    # distance to the chord through (x0, y0) and (x1, y1), up to the chord's constant length
    dx, dy = x[-1] - x[0], y[-1] - y[0]
    distance = np.abs(dx * (y - y[0]) - dy * (x - x[0]))
    return int(ks[int(np.argmax(distance))])   # argmax: first of equals, the smallest k


def series_from_history(history, analysis: str = "rwc", *, layers: Iterable[str] | None = None
                        ) -> dict[str, np.ndarray]:
    """``{layer: values}`` from a monitor's history, ready for :func:`cluster_layers`.

    Only the sampling steps at which every chosen layer (default: all of ``analysis``) has a
    value are kept, so that all series have the same length even when layers were added or
    removed during training. ``history`` is anything with ``layers(analysis)`` and
    ``get(analysis, layer) -> (steps, values)`` such as ``monitor.history``; the values must be
    scalars per step. :func:`aligned_series` gives the steps too.
    """
    return aligned_series(history, analysis, layers=layers)[1]


def aligned_series(history, analysis: str = "rwc", *, layers: Iterable[str] | None = None
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(steps [T], {layer: values [T]})``: :func:`series_from_history` with the steps kept
    (those at which every chosen layer has a value, ascending; float64 values)."""
    names = list(history.layers(analysis) if layers is None else layers)
    got = {}
    for layer in names:
        steps, values = history.get(analysis, layer)
        values = np.asarray(values)
        if values.ndim != 1:
            raise ValueError(f"{analysis!r} values of layer {layer!r} have shape {values.shape}; "
                             "clustering needs one scalar per step")
        got[layer] = (np.asarray(steps), values)
    if not got:
        return np.empty(0, np.int64), {}
    common = None
    for steps, _ in got.values():
        common = steps if common is None else np.intersect1d(common, steps)
    return common, {layer: values[np.isin(steps, common)].astype(np.float64)
                    for layer, (steps, values) in got.items()}


def bucket_means(steps: np.ndarray, values: np.ndarray, max_points: int):
    """At most ``max_points`` rows of ``values`` [T, ...] sampled at ``steps`` [T]: consecutive
    rows averaged in equal buckets, each labelled with its last step (shares stay shares; a NaN
    makes its bucket NaN). Fewer rows are returned as they are. What the monitor clusters the
    RWC trends on ("rwc_clusters"), and the panels average long series with."""
    if len(steps) <= max_points:
        return steps, values
    edges = np.linspace(0, len(steps), max_points + 1).astype(int)
    sums = np.add.reduceat(values, edges[:-1], axis=0)
    return steps[edges[1:] - 1], sums / np.diff(edges).reshape(-1, *[1] * (np.ndim(values) - 1))


# -- helpers -------------------------------------------------------------------------------------

def _excluded(exclude, series: Mapping) -> set:
    if isinstance(exclude, str):
        exclude = (exclude,)
    try:
        names = list(exclude)
    except TypeError:
        raise TypeError(f"exclude must be layer names, got {type(exclude).__name__}") from None
    unknown = [name for name in names if name not in series]
    if unknown:
        raise ValueError(f"cannot exclude {', '.join(map(repr, unknown))}: not a layer of series "
                         f"(layers: {_preview(series)})")
    return set(names)


def _preview(series: Mapping, n: int = 5) -> str:
    names = list(series)
    shown = ", ".join(map(repr, names[:n]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")


def _as_series(layer, values) -> np.ndarray:
    """A fresh 1-D float64 copy of one layer's values; None -> NaN."""
    if isinstance(values, torch.Tensor):
        if values.is_complex():
            raise TypeError(f"series of layer {layer!r} is complex ({values.dtype}); RWC values are real")
        v = values.detach().to("cpu", torch.float64).numpy().copy()
    else:
        expected = f"series of layer {layer!r} must be a sequence of real numbers (None for missing)"
        if isinstance(values, (str, bytes, Mapping)):
            raise TypeError(f"{expected}, got {type(values).__name__}")
        try:
            kind = np.asarray(values).dtype.kind
            # NumPy would parse strings ("0.1" -> 0.1) and drop imaginary parts: refuse both
            if kind in "USc" or (kind == "O" and any(isinstance(x, (str, bytes, complex))
                                                     for x in np.asarray(values).ravel())):
                raise TypeError(f"text or complex values ({np.asarray(values).dtype})")
            v = np.array(values, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{expected}, got {type(values).__name__}: {e}") from None
    if v.ndim != 1:
        raise ValueError(f"series of layer {layer!r} must be 1-D (one value per time step), "
                         f"got shape {tuple(v.shape)}")
    return v


def _kmeans(points: np.ndarray, k: int, seed: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, init="k-means++", n_init=N_INIT, max_iter=MAX_ITER,
                             random_state=int(seed)).fit(points)


def _project2d(matrix: np.ndarray) -> np.ndarray:
    """[layers, T] -> [layers, 2]: the first two principal components, 0 where there are fewer."""
    out = np.zeros((matrix.shape[0], 2))
    m = min(2, matrix.shape[0] - 1, matrix.shape[1])   # centred data of n rows has rank <= n - 1
    if m > 0:
        # svd_solver="full": exact LAPACK SVD, deterministic; sklearn fixes the signs (svd_flip)
        from sklearn.decomposition import PCA

        out[:, :m] = PCA(n_components=m, svd_solver="full").fit_transform(matrix)
    return out


def _canonical(labels: np.ndarray) -> list[int]:
    """Renumber clusters 0, 1, ... in order of first appearance."""
    order: dict[int, int] = {}
    return [order.setdefault(int(lab), len(order)) for lab in labels]


def _unit(a: np.ndarray) -> np.ndarray:
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)
