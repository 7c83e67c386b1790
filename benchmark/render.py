"""Everything a reader looks at, generated from the cards: LEADERBOARD.md, ROC plots, the console table."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from benchmark.results import ResultStore  # noqa: E402
from benchmark.storage import atomic_write_bytes, atomic_write_text  # noqa: E402

GROUP = ["dataset", "target", "defense"]
METRICS = [("auc", "AUC"), ("asr", "ASR"), ("tpr_at_1pct_fpr", "TPR@1%FPR"), ("tpr_at_0_1pct_fpr", "TPR@0.1%FPR")]


def _fmt_metric(card: dict, key: str) -> str:
    low, high = card[f"{key}_ci"]
    text = f"{card[key]:.3f} [{low:.2f}, {high:.2f}]"
    if key in card.get("tpr_reliable", {}) and not card["tpr_reliable"][key]:
        text += " †"
    return text


def cards_frame(cards: list[dict]) -> pd.DataFrame:
    rows = []
    for card in cards:
        row = {k: card[k] for k in (*GROUP, "attack", "threat_model", "seed", "n_members", "n_nonmembers")}
        for key, title in METRICS:
            row[title] = _fmt_metric(card, key)
        calibrated = card.get("calibrated_threshold")
        row["TPR/FPR at calibrated τ"] = f"{calibrated['tpr']:.2f} / {calibrated['fpr']:.2f}" if calibrated else "—"
        row["queries/sample"] = f"{card['queries_per_sample']:g}"
        row["ms/sample"] = f"{card['seconds_per_sample'] * 1000:.2f}"
        row["held-out MSE"] = f"{card['utility']['heldout_denoising_mse']:.4f}"
        rows.append(row)
    return pd.DataFrame(rows)


def seed_summary(cards: list[dict]) -> pd.DataFrame:
    """Mean ± standard deviation across seeds (target retrains), beside the per-seed bootstrap."""
    frame = pd.DataFrame(
        [{**{k: c[k] for k in (*GROUP, "attack", "seed")}, **{t: c[k] for k, t in METRICS}} for c in cards]
    )
    grouped = frame.groupby([*GROUP, "attack"], sort=False)
    summary = grouped[[t for _, t in METRICS]].agg(["mean", "std"])
    out = pd.DataFrame(index=summary.index)
    for _, title in METRICS:
        mean, std = summary[(title, "mean")], summary[(title, "std")].fillna(0.0)
        out[title] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, std, strict=True)]
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def leaderboard_markdown(cards: list[dict], plots: list[str]) -> str:
    first = cards[0]
    lines = [
        f"# Leaderboard: suite `{first['suite']}` (version {first['suite_version']})",
        "",
        "Generated from `results.jsonl` by `python -m benchmark`; do not edit by hand.",
        "Scores are oriented so that higher = member. Intervals are 95% bootstrap intervals over the "
        "evaluated images; † marks a TPR measured with fewer than 10 expected false positives "
        "(α × n_nonmembers < 10), too few negatives to trust it.",
        "",
    ]
    frame = cards_frame(cards)
    for keys, group in frame.groupby(GROUP, sort=False):
        lines += [f"## {' / '.join(map(str, keys))}", ""]
        lines.append(group.drop(columns=GROUP).to_markdown(index=False))
        lines.append("")
    if len({c["seed"] for c in cards}) > 1:
        lines += [
            "## Across seeds (mean ± std over target retrains)",
            "",
            seed_summary(cards).to_markdown(index=False),
            "",
        ]
    lines += ["## Provenance", ""]
    provenance = pd.DataFrame(
        [
            {
                "dataset": c["dataset"],
                "target": c["target"],
                "defense": c["defense"],
                "seed": c["seed"],
                "split_sha256": c["split_sha256"][:16],
                "target_hash": c["target_hash"][:16],
                "provenance": c["provenance"],
            }
            for c in cards
        ]
    ).drop_duplicates()
    lines.append(provenance.to_markdown(index=False))
    lines += ["", "Software: " + ", ".join(f"{k} {v}" for k, v in sorted(first["versions"].items())), ""]
    if plots:
        lines += ["## ROC curves (log-log)", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def roc_plot(store: ResultStore, cards: list[dict], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5.5, 5))
    floor = 1.0 / max(c["n_nonmembers"] for c in cards)
    for card in cards:
        arrays = store.load_scores(card)
        fpr, tpr, _ = roc_curve(arrays["labels"], arrays["scores"])
        axis.plot(np.clip(fpr, floor / 2, 1), np.clip(tpr, floor / 2, 1), label=f"{card['attack']} ({card['auc']:.3f})")
    axis.plot([floor / 2, 1], [floor / 2, 1], "k:", linewidth=0.8, label="chance")
    axis.set(xscale="log", yscale="log", xlabel="false-positive rate", ylabel="true-positive rate")
    first = cards[0]
    axis.set_title(f"{first['dataset']} / {first['target']} / {first['defense']} / seed {first['seed']}", fontsize=9)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def write_outputs(store: ResultStore, cards: list[dict]) -> None:
    if not cards:
        return
    plots = []
    groups: dict[tuple, list[dict]] = {}
    for card in cards:
        groups.setdefault((card["dataset"], card["target"], card["defense"], card["seed"]), []).append(card)
    for (dataset, target, defense, seed), group in groups.items():
        name = f"roc_{dataset}_{target}_{defense}_seed{seed}.png"
        roc_plot(store, group, store.out / name)
        plots.append(name)
    atomic_write_text(store.out / "LEADERBOARD.md", leaderboard_markdown(cards, plots))
    print_table(cards)


def print_table(cards: list[dict]) -> None:
    console = Console()
    groups: dict[str, list[dict]] = {}
    for card in cards:
        groups.setdefault(f"{card['dataset']} / {card['target']} / {card['defense']} / seed {card['seed']}", []).append(
            card
        )
    for title, group in groups.items():
        table = Table(title=title)
        for column in ("attack", "threat model", "AUC", "ASR", "TPR@1%", "TPR@0.1%", "queries"):
            table.add_column(column, justify="left" if column in ("attack", "threat model") else "right")
        for c in group:
            table.add_row(
                c["attack"],
                c["threat_model"],
                f"{c['auc']:.3f}",
                f"{c['asr']:.3f}",
                f"{c['tpr_at_1pct_fpr']:.3f}",
                f"{c['tpr_at_0_1pct_fpr']:.3f}",
                f"{c['queries_per_sample']:g}",
            )
        console.print(table)
