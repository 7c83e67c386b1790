"""LEADERBOARD.md, its plots and the console table, generated from cards — never edited by hand.

The same renderer serves a run folder (``runs/<suite>/``) and the published ``leaderboard/``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmark.core.storage import atomic_write_text
from benchmark.report.card import Card
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


@dataclass
class Section:
    title: str
    text: str
    table: str


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("benchmark.report", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("leaderboard.md.j2")


def _section(title: str, text: str, frame: pd.DataFrame) -> Section:
    return Section(title, text, frame.to_markdown(index=False))


def leaderboard_markdown(
    cards: list[Card], plots: list[str], load_scores: ScoreLoader, unshown: Sequence[str] = ()
) -> str:
    """The page: defenses by strongest attack, attacks, per-target detail, budget, provenance, plots.

    ``unshown`` names registered attacks the page cannot show (caption-conditioned ones on an
    unconditional board); the caller asks the registry, so rendering imports no plugin."""
    main = [c for c in cards if not c.budget]
    scored = {c.attack_name for c in cards}
    sections = [
        _section(
            "Defenses, ranked by their strongest attack",
            "Lower is more private; one ranking per knowledge level (what the attacker calibrated on). The worst case "
            "is picked after the fact: the largest seed-averaged AUC (and, separately, TPR@1%FPR) over every attack on "
            "the evaluated images, so it bounds what any one attack reached rather than being one attack's number.",
            defense_ranking(main),
        ),
        _section("Attacks", "Per defense, mean ± std over every target and seed, strongest first.", attack_table(main)),
    ]
    for keys, group in _grouped(main):
        sections.append(_section(" / ".join(map(str, keys)), "", detail_table(group)))
        if len({c.seed for c in group}) > 1:
            title = f"{' / '.join(map(str, keys))}: across seeds"
            sections.append(_section(title, "", seed_summary(group).drop(columns=GROUP)))
    paired = paired_comparisons(main, load_scores)
    if len(paired):
        sections.append(_section(
            "Paired comparison: the attack best on calibration data against each other attack",
            "AUC difference on the same evaluated images, paired bootstrap; the best attack is chosen on the "
            "attacker's calibration data, never on these images; p-values Holm-corrected per target and seed.",
            paired,
        ))  # fmt: skip
    budget = budget_table(cards)
    if len(budget):
        sections.append(_section(
            "Query budget",
            "Each point is its own cell (mean over seeds); queries are counted by the adapter. See `budget.png`.",
            budget,
        ))  # fmt: skip
    sections.append(_section("Provenance", "", provenance_table(cards)))
    return _template().render(
        suites=", ".join(sorted({f"`{c.suite}` (version {c.suite_version})" for c in cards})),
        captioned=", ".join(f"`{name}`" for name in sorted(set(unshown) - scored)),
        sections=sections,
        versions=", ".join(sorted({f"{k} {v}" for c in cards for k, v in c.versions.items()})),
        seeds=sorted({c.seed for c in cards}),
        plots=plots,
    )


def _grouped(cards: list[Card]) -> list[tuple[tuple, list[Card]]]:
    groups: dict[tuple, list[Card]] = {}
    for card in cards:
        groups.setdefault(tuple(card.metric(k) for k in GROUP), []).append(card)
    return list(groups.items())


def _runs(cards: list[Card]) -> dict[tuple, list[Card]]:
    runs: dict[tuple, list[Card]] = {}
    for card in cards:
        if not card.budget:
            runs.setdefault((card.dataset, card.target, card.defense, card.seed), []).append(card)
    return runs


def plot_names(cards: list[Card]) -> list[str]:
    """The figures the page links to, in page order (a pure function, so ``--check`` can predict them)."""
    names = [f"roc_{dataset}_{target}_{defense}_seed{seed}.png" for dataset, target, defense, seed in _runs(cards)]
    frontier = ["frontier.png"] if names else []
    return [*frontier, *names] + (["budget.png"] if any(c.budget for c in cards) else [])


def write_outputs(
    folder: Path, cards: list[Card], load_scores: ScoreLoader, console_table: bool = True, unshown: Sequence[str] = ()
) -> None:
    if not cards:
        return
    for (dataset, target, defense, seed), group in _runs(cards).items():
        roc_plot(group, load_scores, folder / f"roc_{dataset}_{target}_{defense}_seed{seed}.png")
    budget_plot(cards, folder / "budget.png")
    frontier_plot(cards, folder / "frontier.png")
    atomic_write_text(folder / "LEADERBOARD.md", leaderboard_markdown(cards, plot_names(cards), load_scores, unshown))
    if console_table:
        print_table([c for c in cards if not c.budget])


def print_table(cards: list[Card]) -> None:
    console = Console()
    for (dataset, target, defense, knowledge), group in _grouped(cards):
        for seed in sorted({c.seed for c in group}):
            table = Table(title=f"{dataset} / {target} / {defense} / seed {seed} / knowledge {knowledge}")
            for column in ("attack", "threat model", "AUC", "ASR", "TPR@1%", "TPR@0.1%", "queries"):
                table.add_column(column, justify="left" if column in ("attack", "threat model") else "right")
            for c in (c for c in group if c.seed == seed):
                table.add_row(
                    c.attack,
                    c.threat_model,
                    f"{c.auc:.3f}",
                    f"{c.asr_best_threshold:.3f}",
                    f"{c.tpr_at_1pct_fpr:.3f}",
                    f"{c.tpr_at_0_1pct_fpr:.3f}",
                    f"{c.queries_per_sample:g}",
                )
            console.print(table)
