"""Figures generated from cards and their raw scores (matplotlib, written atomically as PNG).

Every figure draws an attack in the colour ``attack_colours`` gives it for the whole page, so a
reader who learns "SimA is purple" on the ROC finds it purple on the regime and budget curves too.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from benchmark.core.storage import atomic_write_bytes  # noqa: E402
from benchmark.records.card import Card  # noqa: E402
from benchmark.report.tables import ScoreLoader, budget_table, frontier_points, regime_table  # noqa: E402

ROC_SHOWN = 6  # attacks drawn on an unfolded ROC; the folded full plot draws every attack
LINESTYLES = ("-", "--", ":")


def base_attack(card: Card) -> str:
    """The attack a card's colour follows: a budget point takes its sweep's attack."""
    return card.budget["attack"] if card.budget else card.attack


def attack_colours(attacks: Iterable[str]) -> dict[str, tuple[tuple[float, ...], str]]:
    """(colour, line style) per attack name, from the sorted names: the same attack gets the same
    style in every figure of a page. tab20's 20 colours, then again with another line style."""
    palette = plt.cm.tab20.colors
    names = sorted(set(attacks))
    return {name: (palette[i % len(palette)], LINESTYLES[i // len(palette) % len(LINESTYLES)])
            for i, name in enumerate(names)}  # fmt: skip


def save_figure(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def roc_plot(cards: list[Card], load_scores: ScoreLoader, path: Path, colours: dict, shown: int | None = None) -> None:
    """Log-log ROC on one target and seed (low FPRs are where privacy is decided): the ``shown``
    attacks with the highest AUC, or all of them."""
    ranked = sorted(cards, key=lambda c: -c.auc)[: shown or len(cards)]
    figure, axis = plt.subplots(figsize=(5.5, 5))
    floor = 1.0 / max(c.n_nonmembers for c in ranked)
    for card in ranked:
        arrays = load_scores(card)
        fpr, tpr, _ = roc_curve(arrays["labels"], arrays["scores"])
        colour, style = colours[base_attack(card)]
        axis.plot(np.clip(fpr, floor / 2, 1), np.clip(tpr, floor / 2, 1), color=colour, linestyle=style,
                  label=f"{card.attack} ({card.auc:.3f})")  # fmt: skip
    axis.plot([floor / 2, 1], [floor / 2, 1], "k:", linewidth=0.8, label="chance")
    axis.set(xscale="log", yscale="log", xlabel="false-positive rate", ylabel="true-positive rate")
    first = ranked[0]
    which = f"strongest {len(ranked)} of {len(cards)}" if len(ranked) < len(cards) else f"all {len(cards)} attacks"
    axis.set_title(f"{first.dataset} / {first.target} / {first.defense} / seed {first.seed} / "
                   f"{first.knowledge}\n{which}", fontsize=8)  # fmt: skip
    axis.legend(fontsize=6 if len(ranked) > ROC_SHOWN else 7, loc="lower right")
    figure.tight_layout()
    save_figure(figure, path)


def frontier_plot(cards: list[Card], path: Path) -> None:
    """Privacy against utility, one panel per target: a point per defense at its seed mean, with
    the seed standard deviation as error bars in both axes; labels placed beside their point and
    pushed apart vertically so none overlap."""
    points = frontier_points(cards)
    if points.empty:
        return
    targets = list(dict.fromkeys(points["target"]))
    figure, axes = plt.subplots(len(targets), 2, figsize=(11, 4.2 * len(targets)), squeeze=False)
    for row, target in enumerate(targets):
        frame = points[points["target"] == target]
        x, x_label = ("fid", "FID (lower = better samples)") if frame["fid"].notna().all() else (
            "mse", "held-out denoising MSE (lower = more useful)")  # fmt: skip
        panels = ((axes[row][0], "auc", "worst-case AUC"), (axes[row][1], "tpr", "worst-case TPR@1%FPR"))
        for axis, metric, label in panels:
            colours = plt.cm.tab10.colors
            for i, (_, point) in enumerate(frame.iterrows()):
                axis.errorbar(point[x], point[metric], xerr=point[f"{x}_std"], yerr=point[f"{metric}_std"], fmt="o",
                              color=colours[i % len(colours)], capsize=3,
                              label=f"{point['defense']} (n={point['seeds']})")  # fmt: skip
            _label_without_overlap(axis, frame[x].to_numpy(), frame[metric].to_numpy(), list(frame["defense"]))
            axis.set(xlabel=x_label, ylabel=label)
            axis.set_title(target, fontsize=8)
        axes[row][0].axhline(0.5, color="k", linestyle=":", linewidth=0.8)
        axes[row][0].set_ylim(0.4, 1.02)
        axes[row][1].set_ylim(-0.02, 1.02)
        axes[row][1].legend(fontsize=6, loc="best")
    figure.suptitle("privacy–utility frontier (knowledge: shadow; error bars: std over seeds)", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path)


def _label_without_overlap(axis, x: np.ndarray, y: np.ndarray, labels: list[str]) -> None:
    """Each label right of its point, nudged vertically (in axis fraction) until labels are at least
    one text line apart; a thin line joins a moved label to its point."""
    low, high = axis.get_ylim() if np.isfinite(y).all() else (0, 1)
    span = max(high - low, 1e-9)
    order = np.argsort(y)
    placed: list[float] = []
    for i in order:
        want = (y[i] - low) / span
        while any(abs(want - p) < 0.06 for p in placed):
            want += 0.06
        placed.append(want)
        axis.annotate(labels[i], (x[i], y[i]), xytext=(8, (want - (y[i] - low) / span) * 250),
                      textcoords="offset points", fontsize=7,
                      arrowprops={"arrowstyle": "-", "linewidth": 0.4, "color": "grey"})  # fmt: skip


def regime_plot(cards: list[Card], path: Path, colours: dict) -> bool:
    """AUC and TPR@1%FPR against the number of training members (log axis), one line per attack,
    the seed spread as a band: how each attack fares from memorising to generalising targets."""
    table = regime_table(cards)
    if table.empty or table["members"].nunique() < 2:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for attack, line in table.groupby("attack"):
        colour, style = colours[attack]
        for axis, metric in zip(axes, ("auc", "tpr"), strict=True):
            axis.plot(line["members"], line[metric], marker="o", color=colour, linestyle=style, label=attack)
            spread = line[f"{metric}_std"]
            axis.fill_between(line["members"], line[metric] - spread, line[metric] + spread, color=colour, alpha=0.12,
                              linewidth=0)  # fmt: skip
    axes[0].axhline(0.5, color="k", linestyle=":", linewidth=0.8)
    for axis, label in zip(axes, ("AUC", "TPR@1%FPR"), strict=True):
        axis.set(xscale="log", xlabel="training members (log)", ylabel=f"{label} (mean ± std over seeds)")
        axis.set_xticks(sorted(table["members"].unique()), [str(m) for m in sorted(table["members"].unique())])
    axes[1].legend(fontsize=6, ncol=2)
    figure.suptitle("the training-set-size curve (undefended, knowledge: shadow)", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path)
    return True


def budget_plot(cards: list[Card], path: Path, colours: dict) -> bool:
    """AUC and TPR@1%FPR against measured queries per sample for every budget sweep."""
    table = budget_table(cards)
    if table.empty:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for (target, attack), line in table.groupby(["target", "attack"]):
        colour, style = colours[attack]
        for axis, metric in zip(axes, ("AUC", "TPR@1%FPR"), strict=True):
            axis.plot(line["queries/sample"], line[metric], marker="o", color=colour, linestyle=style,
                      label=f"{attack} ({target})")  # fmt: skip
    for axis, metric in zip(axes, ("AUC", "TPR@1%FPR"), strict=True):
        axis.set(xscale="log", xlabel="queries per sample (measured)", ylabel=f"{metric} (mean over seeds)")
    axes[1].legend(fontsize=6)
    figure.tight_layout()
    save_figure(figure, path)
    return True
