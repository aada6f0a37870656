"""Plots (matplotlib, Agg backend): the search trajectory and a Pareto front against baselines."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_trajectory(history: list[dict], path: str | Path) -> None:
    """Accuracy (argmax network, val split) vs exact predicted FPS, one point per epoch."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    fps = [h["exact_fps"] for h in history]
    acc = [h["val_acc"] for h in history]
    ax.plot(fps, acc, "-", color="0.7", zorder=1)
    sc = ax.scatter(fps, acc, c=range(1, len(fps) + 1), cmap="viridis", zorder=2)
    fig.colorbar(sc, ax=ax, label="epoch")
    ax.set_xscale("log")
    ax.set_xlabel("predicted FPS (exact model, derived design)")
    ax.set_ylabel("val accuracy (argmax network)")
    ax.set_title("co-search trajectory")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pareto(points: dict[str, list[tuple[float, float]]], path: str | Path) -> None:
    """points: method -> [(fps, accuracy)]; the co-search's non-dominated front is drawn as a line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, pts in points.items():
        xs, ys = zip(*pts)
        ax.scatter(xs, ys, label=name, s=40)
        if name.startswith("co-search") and len(pts) > 1:
            front = sorted(pts)
            keep = [p for p in front if not any(q[0] >= p[0] and q[1] > p[1] for q in front if q != p)]
            ax.plot(*zip(*sorted(keep)), "--")
    ax.set_xscale("log")
    ax.set_xlabel("predicted FPS")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
