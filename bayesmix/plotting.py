"""Figures of fitted mixtures (matplotlib, imported only when a plot is drawn)."""

import numpy as np


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def _as_input(est, array):
    """Give ``array`` the fitted feature names, so the estimator does not warn."""
    names = getattr(est, "feature_names_in_", None)
    if names is None:
        return array
    import pandas as pd

    return pd.DataFrame(array, columns=names)


def _draw_subset(params, n_draws, seed=0):
    total = next(iter(params.values())).shape[0]
    index = np.random.default_rng(seed).choice(total, min(n_draws, total), replace=False)
    return {name: value[index] for name, value in params.items()}


def plot_fit(est, X, ax=None, n_draws=200, hdi_prob=0.9):
    """Data with the fitted mixture.

    One feature: a histogram with the posterior predictive density and a band holding
    ``hdi_prob`` of the per-draw densities. Several features: the first two as a
    scatter coloured by the most probable component, with the posterior mean of each
    component's mean marked.

    Parameters
    ----------
    est : fitted bayesmix density estimator
    X : array-like of shape (n_samples, n_features)
    ax : matplotlib Axes, optional
    n_draws : int, default=200
        Posterior draws used for the band.
    hdi_prob : float, default=0.9

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    names = [str(v) for v in est.idata_.posterior["means"].coords["feature"].values]
    if X.shape[1] == 1:
        span = X.max() - X.min()
        grid = np.linspace(X.min() - 0.1 * span, X.max() + 0.1 * span, 400)[:, None]
        per_draw = np.exp(est._row_log_likelihood(grid, None, _draw_subset(est._posterior_params(), n_draws)))
        tail = (1 - hdi_prob) / 2
        low, high = np.quantile(per_draw, [tail, 1 - tail], axis=0)
        ax.hist(X[:, 0], bins="auto", density=True, color="0.8", label="data")
        ax.fill_between(grid[:, 0], low, high, alpha=0.35, label=f"{hdi_prob:.0%} band")
        ax.plot(grid[:, 0], np.exp(est.score_samples(_as_input(est, grid))), lw=2, label="posterior predictive")
        ax.set_xlabel(names[0])
        ax.set_ylabel("density")
    else:
        labels = est.predict(_as_input(est, X))
        ax.scatter(X[:, 0], X[:, 1], c=labels, s=12, cmap="tab10", vmin=0, vmax=9)
        ax.scatter(est.means_[:, 0], est.means_[:, 1], marker="X", s=150, c="k", label="means")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    ax.set_title(f"{type(est).__name__}, K={est.n_components}")
    ax.legend()
    return ax


def plot_ppc(est, X, ax=None, n_replicates=50):
    """Posterior predictive check: the data's histogram against replicated data sets.

    Each replicate is ``len(X)`` rows from ``est.sample``; the first feature is shown.

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    X = np.asarray(X, dtype=float).reshape(len(X), -1)
    replicates, _ = est.sample(n_replicates * len(X))
    bins = np.histogram_bin_edges(X[:, 0], bins="auto")
    for rep in replicates[:, 0].reshape(n_replicates, len(X)):
        ax.hist(rep, bins=bins, density=True, histtype="step", color="C0", alpha=0.15)
    ax.hist(X[:, 0], bins=bins, density=True, histtype="step", color="k", lw=2, label="data")
    ax.set_title("posterior predictive check")
    ax.legend()
    return ax


def plot_comparison(selectk, ax=None):
    """Plot each K's elpd with ±1 standard error bars and mark the selected K.

    Parameters
    ----------
    selectk : SelectK
        A fitted :class:`bayesmix.model_selection.SelectK`.
    ax : matplotlib Axes, optional
        Drawn into; a new figure's axes when None.

    Returns
    -------
    matplotlib.axes.Axes
    """
    table = getattr(selectk, "comparison_", None)
    if table is None:
        raise ValueError("plot_comparison needs a fitted SelectK (call fit first).")
    ax = _axes(ax)
    table = table.sort_index()
    ks = table.index.to_numpy()
    ax.errorbar(ks, table["elpd"], yerr=table["se"], fmt="o-", capsize=3, label="elpd ± se")
    if "waic" in table:
        ax.plot(ks, table["waic"], "x", color="0.5", label="WAIC")
    best = selectk.best_k_
    ax.plot([best], [table.loc[best, "elpd"]], "*", markersize=16, color="C3",
            label=f"selected K={best}", zorder=3)
    ax.axvline(best, color="C3", linestyle=":", linewidth=1)
    ax.set_xticks(ks)
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"elpd ({selectk.method_})")
    ax.set_title("Model comparison")
    ax.legend()
    return ax
