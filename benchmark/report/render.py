"""LEADERBOARD.md, its plots and the console table, generated from cards — never edited by hand.

The same renderer serves a run folder (``runs/<suite>/``) and the published ``leaderboard/``.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmark.api.registry import ATTACKS
from benchmark.core.storage import atomic_write_text
from benchmark.report.plots import budget_plot, frontier_plot, roc_plot
from benchmark.report.tables import (
    GROUP,
    ScoreLoader,
    attack_table,
    budget_table,
    defense_ranking,
    detail_table,
    paired_comparisons,
    provenance_table,
    seed_summary,
)


def _section(title: str, text: str, frame) -> list[str]:
    return [f"## {title}", "", *([text, ""] if text else []), frame.to_markdown(index=False), ""]


def leaderboard_markdown(cards: list[dict], plots: list[str], load_scores: ScoreLoader) -> str:
    """The page: defenses by strongest attack, attacks, per-target detail, budget, provenance, plots."""
    main = [c for c in cards if not c.get("budget")]
    suites = sorted({f"`{c['suite']}` (version {c['suite_version']})" for c in cards})
    lines = [
        "# Membership inference against diffusion models: leaderboard",
        "",
        f"Suite {', '.join(suites)}. Generated from result cards by `python -m benchmark`; do not edit by hand.",
        "Scores are oriented so that higher = member. Intervals are 95% bootstrap intervals over the evaluated "
        "images (1,000 stratified resamples); ± is the standard deviation across seeds (target retrains). "
        "† marks a TPR measured with fewer than 10 expected false positives (α × n_nonmembers < 10): too few "
        "negatives to trust it. Provenance: `reproduced` = computed by this suite's harness; `claimed` = "
        "submitted, not yet rerun.",
        "",
    ]
    scored = {c["attack_name"] for c in cards}
    captioned = sorted(e.name for e in ATTACKS.entries() if e.cls.requires_captions and e.name not in scored)
    if captioned:
        names = ", ".join(f"`{name}`" for name in captioned)
        lines += [f"Not on this page: {names}, which conditions on captions (text-to-image targets only).", ""]
    lines += _section(
        "Defenses, ranked by their strongest attack",
        "Lower is more private. Worst case over every attack (each attack averaged over seeds), utility beside it.",
        defense_ranking(main),
    )
    lines += _section(
        "Attacks", "Per defense, mean ± std over every target and seed, strongest first.", attack_table(main)
    )
    for keys, group in _grouped(main):
        lines += _section(" / ".join(map(str, keys)), "", detail_table(group))
        if len({c["seed"] for c in group}) > 1:
            lines += _section(
                f"{' / '.join(map(str, keys))}: across seeds", "", seed_summary(group).drop(columns=GROUP)
            )
    paired = paired_comparisons(main, load_scores)
    if len(paired):
        lines += _section(
            "Paired comparison: the best attack against each other attack",
            "AUC difference on the same images, paired bootstrap; significant when the 95% interval excludes 0.",
            paired,
        )
    budget = budget_table(cards)
    if len(budget):
        lines += _section(
            "Query budget",
            "Each point is its own cell (mean over seeds); queries are counted by the adapter. See `budget.png`.",
            budget,
        )
    lines += _section("Provenance", "", provenance_table(cards))
    versions = sorted({f"{k} {v}" for c in cards for k, v in c["versions"].items()})
    lines += [f"Software: {', '.join(versions)}. Seeds: {sorted({c['seed'] for c in cards})}.", ""]
    if plots:
        lines += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    return "\n".join(lines)


def _grouped(cards: list[dict]) -> list[tuple[tuple, list[dict]]]:
    groups: dict[tuple, list[dict]] = {}
    for card in cards:
        groups.setdefault(tuple(card[k] for k in GROUP), []).append(card)
    return list(groups.items())


def _runs(cards: list[dict]) -> dict[tuple, list[dict]]:
    runs: dict[tuple, list[dict]] = {}
    for card in cards:
        if not card.get("budget"):
            runs.setdefault((card["dataset"], card["target"], card["defense"], card["seed"]), []).append(card)
    return runs


def plot_names(cards: list[dict]) -> list[str]:
    """The figures the page links to, in page order (a pure function, so ``--check`` can predict them)."""
    names = [f"roc_{dataset}_{target}_{defense}_seed{seed}.png" for dataset, target, defense, seed in _runs(cards)]
    frontier = ["frontier.png"] if names else []
    return [*frontier, *names] + (["budget.png"] if any(c.get("budget") for c in cards) else [])


def write_outputs(folder: Path, cards: list[dict], load_scores: ScoreLoader, console_table: bool = True) -> None:
    if not cards:
        return
    for (dataset, target, defense, seed), group in _runs(cards).items():
        roc_plot(group, load_scores, folder / f"roc_{dataset}_{target}_{defense}_seed{seed}.png")
    budget_plot(cards, folder / "budget.png")
    frontier_plot(cards, folder / "frontier.png")
    atomic_write_text(folder / "LEADERBOARD.md", leaderboard_markdown(cards, plot_names(cards), load_scores))
    if console_table:
        print_table([c for c in cards if not c.get("budget")])


def print_table(cards: list[dict]) -> None:
    console = Console()
    for (dataset, target, defense), group in _grouped(cards):
        for seed in sorted({c["seed"] for c in group}):
            table = Table(title=f"{dataset} / {target} / {defense} / seed {seed}")
            for column in ("attack", "threat model", "AUC", "ASR", "TPR@1%", "TPR@0.1%", "queries"):
                table.add_column(column, justify="left" if column in ("attack", "threat model") else "right")
            for c in (c for c in group if c["seed"] == seed):
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
