"""Plots of training and sampling (PNG files; skipped quietly when matplotlib is missing)."""

from __future__ import annotations

from pathlib import Path


def training_plot(history: list[dict[str, float]], path: Path) -> bool:
    """Loss, ESS and acceptance against step in one figure; returns False without matplotlib."""
    if not history:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps = [h["step"] for h in history]
    fig, (ax_loss, ax_quality) = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    ax_loss.plot(steps, [h["loss"] for h in history], color="tab:blue")
    ax_loss.set(xlabel="step", ylabel="reverse KL loss", title="loss")
    ax_quality.plot(steps, [h["ess"] for h in history], label="ESS (batch)")
    ax_quality.plot(steps, [h["acceptance"] for h in history], label="IMH acceptance (batch)")
    ax_quality.set(xlabel="step", ylim=(0, 1), title="sample quality")
    ax_quality.legend(loc="lower right")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
