"""Figures generated from cards and their raw scores (matplotlib, written atomically as PNG)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from benchmark.core.storage import atomic_write_bytes  # noqa: E402
from benchmark.report.card import Card  # noqa: E402
from benchmark.report.tables import ScoreLoader, budget_table, worst_case  # noqa: E402


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def roc_plot(cards: list[Card], load_scores: ScoreLoader, path: Path) -> None:
    """Log-log ROC of every attack on one target and seed; low FPRs are where privacy is decided."""
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.set_prop_cycle(color=plt.cm.tab20.colors)  # up to 20 attacks without repeating a colour
    floor = 1.0 / max(c.n_nonmembers for c in cards)
    for card in cards:
        arrays = load_scores(card)
        fpr, tpr, _ = roc_curve(arrays["labels"], arrays["scores"])
        axis.plot(np.clip(fpr, floor / 2, 1), np.clip(tpr, floor / 2, 1), label=f"{card.attack} ({card.auc:.3f})")
    axis.plot([floor / 2, 1], [floor / 2, 1], "k:", linewidth=0.8, label="chance")
    axis.set(xscale="log", yscale="log", xlabel="false-positive rate", ylabel="true-positive rate")
    first = cards[0]
    axis.set_title(f"{first.dataset} / {first.target} / {first.defense} / seed {first.seed}", fontsize=9)
    axis.legend(fontsize=6, loc="lower right")
    figure.tight_layout()
    _save(figure, path)


def frontier_plot(cards: list[Card], path: Path) -> None:
    """Privacy against utility: one point per dataset/target/defense, y = the strongest attack."""
    worst = worst_case([c for c in cards if not c.budget])
    if worst.empty:
        return
    if worst["fid"].notna().all():
        x, x_label = "fid", "FID, classifier features (lower = better samples)"
    else:
        x, x_label = "heldout_mse", "held-out denoising MSE (lower = more useful)"
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for axis, metric, label in ((axes[0], "auc", "worst-case AUC"), (axes[1], "tpr", "worst-case TPR@1%FPR")):
        for _, row in worst.iterrows():
            axis.scatter(row[x], row[metric])
            axis.annotate(f"{row['defense']} ({row['target']})", (row[x], row[metric]), fontsize=7)
        axis.set(xlabel=x_label, ylabel=label)
    axes[0].axhline(0.5, color="k", linestyle=":", linewidth=0.8)
    axes[0].set_ylim(0.4, 1.02)
    axes[1].set_ylim(-0.02, 1.02)
    figure.suptitle("privacy–utility frontier (" + ", ".join(sorted(worst["dataset"].unique())) + ")", fontsize=9)
    figure.tight_layout()
    _save(figure, path)


def budget_plot(cards: list[Card], path: Path) -> bool:
    """AUC and TPR@1%FPR against measured queries per sample for every budget sweep."""
    table = budget_table(cards)
    if table.empty:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for (target, attack), line in table.groupby(["target", "attack"]):
        for axis, metric in zip(axes, ("AUC", "TPR@1%FPR"), strict=True):
            axis.plot(line["queries/sample"], line[metric], marker="o", label=f"{attack} ({target})")
    for axis, metric in zip(axes, ("AUC", "TPR@1%FPR"), strict=True):
        axis.set(xscale="log", xlabel="queries per sample (measured)", ylabel=f"{metric} (mean over seeds)")
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    _save(figure, path)
    return True
