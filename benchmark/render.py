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

from benchmark.metrics import paired_auc_difference  # noqa: E402
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


def defense_ranking(cards: list[dict]) -> pd.DataFrame:
    """Each defense judged by its strongest attack (worst case over attacks, mean over seeds)."""
    frame = pd.DataFrame(
        [
            {
                **{k: c[k] for k in (*GROUP, "attack", "seed", "auc", "tpr_at_1pct_fpr")},
                "heldout_mse": c["utility"].get("heldout_denoising_mse", np.nan),
                "epsilon": c.get("defense_costs", {}).get("epsilon", np.nan),
            }
            for c in cards
        ]
    )
    per_attack = frame.groupby([*GROUP, "attack"], as_index=False).mean(numeric_only=True)
    rows = []
    for keys, group in per_attack.groupby(GROUP, sort=False):
        by_auc, by_tpr = group.loc[group["auc"].idxmax()], group.loc[group["tpr_at_1pct_fpr"].idxmax()]
        rows.append(
            {
                **dict(zip(GROUP, keys, strict=True)),
                "worst-case AUC": f"{by_auc['auc']:.3f} ({by_auc['attack']})",
                "worst-case TPR@1%FPR": f"{by_tpr['tpr_at_1pct_fpr']:.3f} ({by_tpr['attack']})",
                "held-out MSE": f"{group['heldout_mse'].mean():.4f}",
                "ε": "—" if np.isnan(group["epsilon"].mean()) else f"{group['epsilon'].mean():.2f}",
                "_rank": by_auc["auc"],
            }
        )
    return pd.DataFrame(rows).sort_values("_rank").drop(columns="_rank")


def leaderboard_markdown(cards: list[dict], plots: list[str], paired: pd.DataFrame, budget: pd.DataFrame) -> str:
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
    lines += [
        "## Defenses, ranked by their strongest attack",
        "",
        "Lower is more private. Worst case over every attack (mean over seeds); utility beside it.",
        "",
        defense_ranking(cards).to_markdown(index=False),
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
    if len(paired):
        lines += [
            "## Paired comparison: the best attack against each other attack",
            "",
            "AUC difference on the same images with a paired bootstrap (1,000 resamples); significant when "
            "the 95% interval excludes 0.",
            "",
            paired.to_markdown(index=False),
            "",
        ]
    if len(budget):
        lines += [
            "## Query budget",
            "",
            "Each point is its own cell (mean over seeds); queries are measured by the adapter. See `budget.png`.",
            "",
            budget.to_markdown(index=False),
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
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def paired_comparisons(store: ResultStore, cards: list[dict]) -> pd.DataFrame:
    """Per target and seed: the best attack by AUC against each other attack, paired on the same images."""
    rows = []
    groups: dict[tuple, list[dict]] = {}
    for card in cards:
        groups.setdefault((card["dataset"], card["target"], card["defense"], card["seed"]), []).append(card)
    for (dataset, target, defense, seed), group in groups.items():
        best = max(group, key=lambda c: c["auc"])
        best_scores = store.load_scores(best)
        for other in group:
            if other is best:
                continue
            other_scores = store.load_scores(other)
            if not np.array_equal(best_scores["labels"], other_scores["labels"]):
                continue
            paired = paired_auc_difference(best_scores["labels"], best_scores["scores"], other_scores["scores"], seed)
            rows.append(
                {
                    "dataset": dataset,
                    "target": target,
                    "defense": defense,
                    "seed": seed,
                    "best": best["attack"],
                    "vs": other["attack"],
                    "ΔAUC [95% CI]": f"{paired['difference']:+.3f} [{paired['ci'][0]:+.3f}, {paired['ci'][1]:+.3f}]",
                    "significant": "yes" if paired["significant"] else "no",
                }
            )
    return pd.DataFrame(rows)


def budget_plot(cards: list[dict], path: Path) -> bool:
    """AUC and TPR@1%FPR against measured queries per sample for every budget sweep."""
    swept = [c for c in cards if c.get("budget")]
    if not swept:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    frame = pd.DataFrame(
        [
            {
                "attack": c["budget"]["attack"],
                "target": f"{c['target']}/{c['defense']}",
                "queries": c["queries_per_sample"],
                "auc": c["auc"],
                "tpr": c["tpr_at_1pct_fpr"],
            }
            for c in swept
        ]
    )
    summary = frame.groupby(["target", "attack", "queries"], as_index=False)[["auc", "tpr"]].mean()
    for (target, attack), line in summary.groupby(["target", "attack"]):
        for axis, metric in zip(axes, ("auc", "tpr"), strict=True):
            axis.plot(line["queries"], line[metric], marker="o", label=f"{attack} ({target})")
    axes[0].set(xscale="log", xlabel="queries per sample (measured)", ylabel="AUC (mean over seeds)")
    axes[1].set(xscale="log", xlabel="queries per sample (measured)", ylabel="TPR@1%FPR (mean over seeds)")
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    _save(figure, path)
    return True


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


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
    _save(figure, path)


def budget_table(cards: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {
                "target": f"{c['dataset']}/{c['target']}/{c['defense']}",
                "attack": c["budget"]["attack"],
                "knob": f"{c['budget']['param']}={c['budget']['value']}",
                "queries/sample": c["queries_per_sample"],
                "AUC": c["auc"],
                "TPR@1%FPR": c["tpr_at_1pct_fpr"],
            }
            for c in cards
            if c.get("budget")
        ]
    )
    if frame.empty:
        return frame
    keys = ["target", "attack", "knob", "queries/sample"]
    summary = frame.groupby(keys, sort=False, as_index=False)[["AUC", "TPR@1%FPR"]].mean()
    return summary.sort_values(["target", "attack", "queries/sample"]).round(3)


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
    if budget_plot(cards, store.out / "budget.png"):
        plots.append("budget.png")
    main = [c for c in cards if not c.get("budget")]
    paired = paired_comparisons(store, main)
    atomic_write_text(store.out / "LEADERBOARD.md", leaderboard_markdown(main, plots, paired, budget_table(cards)))
    print_table(main)


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
