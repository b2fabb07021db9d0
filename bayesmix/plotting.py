"""Plots of fitted bayesmix objects (matplotlib is imported only when plotting)."""

__all__ = ["plot_comparison"]


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
    import matplotlib.pyplot as plt

    table = getattr(selectk, "comparison_", None)
    if table is None:
        raise ValueError("plot_comparison needs a fitted SelectK (call fit first).")
    if ax is None:
        _, ax = plt.subplots()
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
