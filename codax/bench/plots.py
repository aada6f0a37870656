"""Plots of schedule benchmarks (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from codax.bench.schedule import NetworkBench  # noqa: E402
from codax.hw import load_accelerator  # noqa: E402


def roofline(results: list[NetworkBench], path: str | Path) -> Path:
    """One panel per accelerator: each layer's attained MACs/cycle against its DRAM intensity,
    under the roof min(PEs, intensity x bandwidth)."""
    accels = sorted({r.accelerator for r in results})
    fig, axes = plt.subplots(1, len(accels), figsize=(4.2 * len(accels), 3.8), squeeze=False)
    for ax, name in zip(axes[0], accels):
        acc = load_accelerator(name)
        pes, bw = acc.engine().pe_array.pes, acc.dram.bandwidth
        xs = [0.01, pes / bw, 1e5]
        ax.plot(xs, [min(pes, x * bw) for x in xs], "k-", lw=1.5, label="roof")
        for r, marker in zip([r for r in results if r.accelerator == name], "os^v"):
            xi = [row["intensity_macs_per_byte"] for row in r.layers]
            yi = [row["macs"] / row["cycles"] for row in r.layers]
            ax.scatter(xi, yi, s=14, marker=marker, alpha=0.7, label=r.network)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("MACs per DRAM byte")
        ax.grid(True, which="both", lw=0.3)
    axes[0][0].set_ylabel("MACs per cycle")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def breakdown(results: list[NetworkBench], network: str, path: str | Path) -> Path:
    """Per-layer latency (top) and energy split by MAC / memory level (bottom), one accelerator per
    column, for one network."""
    rs = [r for r in results if r.network == network]
    fig, axes = plt.subplots(2, len(rs), figsize=(4.2 * len(rs), 6.0), squeeze=False)
    for j, r in enumerate(rs):
        idx = range(len(r.layers))
        axes[0][j].bar(idx, [row["latency_us"] for row in r.layers], color="tab:blue")
        axes[0][j].set_title(f"{network} on {r.accelerator}", fontsize=9)
        axes[0][j].set_ylabel("latency (us)")
        bottom = [0.0] * len(r.layers)
        parts = list(r.layers[0]["energy_breakdown_uj"]) if r.layers else []
        for part in parts:
            vals = [row["energy_breakdown_uj"][part] for row in r.layers]
            axes[1][j].bar(idx, vals, bottom=bottom, label=part)
            bottom = [b + v for b, v in zip(bottom, vals)]
        axes[1][j].set_ylabel("energy (uJ)")
        axes[1][j].set_xlabel("layer")
        axes[1][j].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
