"""LEADERBOARD.md, the static site, their plots and the console table, generated from cards — never
edited by hand.

One function (``page``) decides what the page says; two templates write it, as markdown (GitHub
renders its ``<details>`` folds) and as one self-contained HTML file with sortable tables and
embedded figures. The same renderer serves a run folder (``runs/<suite>/``) and ``leaderboard/``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from xml.etree import ElementTree

import jinja2
import markdown
import markdown.treeprocessors
import pandas as pd
from markupsafe import Markup, escape
from rich.console import Console
from rich.table import Table

from benchmark.api.registry import ATTACKS
from benchmark.core.protocol import HEADLINE_KNOWLEDGE
from benchmark.core.storage import atomic_write_text
from benchmark.records.card import Card
from benchmark.report.plots import (
    ROC_SHOWN,
    attack_colours,
    base_attack,
    budget_plot,
    frontier_plot,
    regime_plot,
    roc_plot,
)
from benchmark.report.summary import papers_order, summary
from benchmark.report.tables import (
    GROUP,
    ScoreLoader,
    attack_table,
    budget_table,
    defense_ranking,
    detail_table,
    headline_knowledge,
    is_baseline,
    page_order,
    paired_comparisons,
    provenance_table,
    regime_table,
    seed_summary,
)

INVERTED_BELOW = 0.4
INVERTED_NOTE = (
    "Below 0.5 the statistic still separates members from non-members, but with the opposite sign to the one the "
    "attacker learned on its calibration data (a shadow model's, or labelled target members'): on this target the "
    "members score lower where the calibration model's scored higher. 1 − AUC is what the statistic would reach "
    "with the sign this target needs, which an attacker without labelled members of this very model cannot choose; "
    "under knowledge `none` the sign is the paper's. On a public-pretrained target (`public_only` never trained on a "
    "member; DP fine-tuning moves it little) the evaluated members are no different from non-members to the model, "
    "so such a value is the seed's draw of 64 members against the non-members (the same statistic on the same seed "
    "agrees across ε), not membership."
)
WORST_CASE_NOTE = (
    "Lower is more private. The worst case is picked after the fact: for each defense, the largest seed-averaged AUC "
    "(and, separately, TPR@1%FPR) over every attack run on it, measured on the evaluated images; ± is the spread of "
    "that attack over seeds (target retrains), `n=1` a single seed."
)


@dataclass
class Section:
    title: str
    text: str
    frame: pd.DataFrame

    @property
    def markdown(self) -> str:
        return self.frame.to_markdown(index=False)

    @property
    def html(self) -> Markup:
        """pandas escapes every cell; its header's inline style attribute would break the site's CSP."""
        table = self.frame.to_html(index=False, border=0, classes="sortable", na_rep="—")
        return Markup(table.replace(' style="text-align: right;"', ""))


@dataclass
class Figure:
    title: str
    file: str


@dataclass
class Page:
    """What the page says, in order: the first screen, then folds, then figures."""

    suites: str
    captioned: str
    answers: dict[str, list[str]]
    papers: str
    headline: Section | None
    folded: list[Section] = field(default_factory=list)
    inverted: Section | None = None
    figures: list[Figure] = field(default_factory=list)
    folded_figures: list[Figure] = field(default_factory=list)
    versions: str = ""
    seeds: list[int] = field(default_factory=list)


@functools.cache
def template(name: str) -> jinja2.Template:
    """A page template; HTML ones escape every value that is not explicitly ``Markup``."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("benchmark.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template(name)


@functools.cache
def _asset(name: str) -> tuple[Markup, str]:
    """A file inlined into the site (its style or its sorting script) and its CSP source: the hash of
    exactly those bytes, so the browser runs that script and nothing else."""
    text = (resources.files("benchmark.report") / "templates" / name).read_text()
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode("ascii")
    return Markup(text), f"'sha256-{digest}'"


def content_security_policy() -> str:
    """Nothing loads from anywhere; images only as embedded data; style and script only the page's own."""
    (_, style), (_, script) = _asset("leaderboard.css"), _asset("sortable.js")
    return (f"default-src 'none'; img-src data:; style-src {style}; script-src {script}; "
            "base-uri 'none'; form-action 'none'")  # fmt: skip


def _targets(cards: list[Card]) -> dict[tuple[str, str], list[Card]]:
    """Cards per (dataset, target), targets in page order."""
    targets: dict[tuple[str, str], list[Card]] = {}
    for card in page_order(cards):
        targets.setdefault((card.dataset, card.target), []).append(card)
    return targets


def _slug(*parts: object) -> str:
    return "_".join(str(p).replace("/", "-") for p in parts)


def figure_plan(cards: list[Card]) -> tuple[list[Figure], list[Figure]]:
    """(figures shown, figures folded): a pure function of the cards, so ``--check`` can predict them."""
    main = [c for c in cards if not c.budget]
    shown, folded = [], []
    for index, ((dataset, target), group) in enumerate(_targets(main).items()):
        knowledge = headline_knowledge(c.knowledge for c in group)
        runs = _first_seed_runs([c for c in group if c.knowledge == knowledge])
        baseline = next((defense for defense in runs if is_baseline(defense)), None)
        if baseline is not None and len(runs[baseline]) > 1:
            title = f"{dataset}/{target}: the strongest attacks, undefended"
            top = Figure(title, f"roc_top_{_slug(dataset, target)}.png")
            (shown if index == 0 else folded).append(top)
        for defense in runs:
            folded.append(Figure(f"{dataset}/{target}/{defense}: every attack",
                                 f"roc_{_slug(dataset, target, defense)}.png"))  # fmt: skip
    if main:
        shown.append(Figure("Privacy against utility", "frontier.png"))
    if regime_table([c for c in main if c.suite == "regimes"]).get("members", pd.Series()).nunique() > 1:
        shown.append(Figure("The training-set-size curve", "regimes.png"))
    if any(c.budget for c in cards):
        shown.append(Figure("Query budget", "budget.png"))
    return shown, folded


def _first_seed_runs(cards: list[Card]) -> dict[str, list[Card]]:
    """Per defense, the cards of its first seed (one ROC per defense and target)."""
    runs: dict[str, list[Card]] = {}
    for defense in dict.fromkeys(c.defense for c in cards):
        mine = [c for c in cards if c.defense == defense]
        first = min(c.seed for c in mine)
        runs[defense] = [c for c in mine if c.seed == first]
    return runs


def caption_conditioned_attacks() -> list[str]:
    """Registered attacks that only a text-conditioned target can serve (the page names them when absent)."""
    return [entry.name for entry in ATTACKS.entries() if entry.cls.requires_captions]


def page(cards: list[Card], load_scores: ScoreLoader, unshown: Sequence[str] | None = None) -> Page:
    """``unshown``: attacks the page names as absent when no card has them (default: the caption-
    conditioned ones)."""
    unshown = caption_conditioned_attacks() if unshown is None else unshown
    main = [c for c in cards if not c.budget]
    targets = _targets(main)
    rankings = []
    for (dataset, target), group in targets.items():
        for knowledge in sorted({c.knowledge for c in group}, key=lambda k: k != HEADLINE_KNOWLEDGE.value):
            chosen = [c for c in group if c.knowledge == knowledge]
            rankings.append(Section(f"Defenses on {dataset}/{target}, knowledge `{knowledge}`", WORST_CASE_NOTE,
                                    defense_ranking(chosen)))  # fmt: skip
    headline = rankings[0] if rankings else None
    folded = rankings[1:]
    for knowledge in sorted({c.knowledge for c in main}, key=lambda k: k != HEADLINE_KNOWLEDGE.value):
        chosen = [c for c in main if c.knowledge == knowledge]
        folded.append(Section(f"Attacks, knowledge `{knowledge}`",
                              "Per defense, mean ± std over every target and seed, strongest first.",
                              attack_table(chosen)))  # fmt: skip
    regimes = regime_table([c for c in main if c.suite == "regimes"])
    if len(regimes):
        folded.append(Section("The training-set-size curve (undefended, knowledge `shadow`)",
                              "Mean (± std over seeds) per attack and member count; see `regimes.png`.",
                              _regime_frame(regimes)))  # fmt: skip
    paired = paired_comparisons(main, load_scores)
    if len(paired):
        note = ("AUC difference on the same evaluated images, paired bootstrap; the compared attack is the one best on "
                "the attacker's calibration data (never chosen on these images); p-values Holm-corrected per target, "
                "knowledge and seed.")  # fmt: skip
        kept = paired[paired["significant"] == "yes"].drop(columns=["significant"])
        if len(kept):  # first among the folds: the claim a reader checks after the ranking
            folded.insert(0, Section("Significant paired differences", note, kept))
        folded.append(Section("Every paired comparison", note, paired))
    for group in targets.values():
        for keys, cells in _grouped(group):
            folded.append(Section(" / ".join(map(str, keys)), "Per seed, with 95% bootstrap intervals.",
                                  detail_table(cells)))  # fmt: skip
            if len({c.seed for c in cells}) > 1:
                folded.append(Section(f"{' / '.join(map(str, keys))}: across seeds", "",
                                      seed_summary(cells).drop(columns=GROUP)))  # fmt: skip
    budget = budget_table(cards)
    if len(budget):
        folded.append(Section("Query budget", "Each point is its own cell (mean over seeds); queries are counted by "
                              "the adapter. See `budget.png`.", budget))  # fmt: skip
    folded.append(Section("Provenance", "", provenance_table(cards)))
    shown, folded_figures = figure_plan(cards)
    scored = {c.attack_name for c in cards}
    below = [c for c in main if c.auc < INVERTED_BELOW]
    inverted = None
    if below:
        inverted = Section(f"Attacks below AUC {INVERTED_BELOW}", INVERTED_NOTE, pd.DataFrame([
            {"target": f"{c.dataset}/{c.target}/{c.defense}", "seed": c.seed, "attack": c.attack,
             "knowledge": c.knowledge, "AUC": f"{c.auc:.3f}", "sign learned": "−" if c.orientation < 0 else "+",
             "1 − AUC": f"{1 - c.auc:.3f}",
             "why": _why_inverted(c)}
            for c in below
        ]))  # fmt: skip
    return Page(
        suites=", ".join(sorted({f"`{c.suite}` (version {c.suite_version})" for c in cards})),
        captioned=", ".join(f"`{name}`" for name in sorted(set(unshown) - scored)),
        answers=summary(main),
        papers=papers_order(),
        headline=headline,
        folded=folded,
        inverted=inverted,
        figures=shown,
        folded_figures=folded_figures,
        versions=", ".join(sorted({f"{k} {v}" for c in cards for k, v in c.versions.items()})),
        seeds=sorted({c.seed for c in cards}),
    )


def _why_inverted(card: Card) -> str:
    """A model pretrained on public images never saw a member, so an AUC below 0.5 there is the draw
    of members against non-members, not an attack that learned the wrong sign; the card's defense
    costs say how many public pretraining steps ran (0 for DP-SGD from scratch)."""
    if card.defense_costs.get("pretrain_steps", 0) > 0:
        return "public-pretrained: the member draw"
    return "the learned sign is opposite here"


def _regime_frame(regimes: pd.DataFrame) -> pd.DataFrame:
    frame = regimes.copy()
    frame["AUC"] = [f"{a:.3f} ± {s:.3f}" if n > 1 else f"{a:.3f} (n=1)"
                    for a, s, n in zip(frame["auc"], frame["auc_std"], frame["seeds"], strict=True)]  # fmt: skip
    frame["TPR@1%FPR"] = [f"{a:.3f} ± {s:.3f}" if n > 1 else f"{a:.3f} (n=1)"
                          for a, s, n in zip(frame["tpr"], frame["tpr_std"], frame["seeds"], strict=True)]  # fmt: skip
    wide = frame.pivot(index="attack", columns="members", values="AUC")
    wide.columns = [f"AUC, {m} members" for m in wide.columns]
    return wide.reset_index()


def _grouped(cards: list[Card]) -> list[tuple[tuple, list[Card]]]:
    groups: dict[tuple, list[Card]] = {}
    for card in cards:
        groups.setdefault(tuple(card.metric(k) for k in GROUP), []).append(card)
    return list(groups.items())


def leaderboard_markdown(content: Page) -> str:
    return template("leaderboard.md.j2").render(page=content)


def leaderboard_html(content: Page, figures_dir: Path) -> str:
    """The same page as one HTML file: sortable tables, figures embedded from ``figures_dir``."""

    def embedded(figure: Figure) -> str:
        data = base64.b64encode((figures_dir / figure.file).read_bytes()).decode("ascii")
        return f"data:image/png;base64,{data}"

    return template("leaderboard.html.j2").render(
        page=content, embedded=embedded, escape=escape, inline=inline, policy=content_security_policy(),
        style=_asset("leaderboard.css")[0], script=_asset("sortable.js")[0],
    )  # fmt: skip


def inline(text: str) -> Markup:
    """One line of the page's markdown (bold, code, links to relative or https: addresses) as HTML;
    everything else escaped, any other link reduced to its text."""
    rendered = markdown.markdown(html.escape(text, quote=False), extensions=[_SafeLinks()])
    return Markup(rendered.removeprefix("<p>").removesuffix("</p>"))


class _SafeLinks(markdown.Extension):
    """Python-Markdown makes ``[text](javascript:...)`` a live link and ``![](...)`` an image; the page
    uses neither, so an image becomes its alt text and a link keeps its address only where that is
    relative or ``https:``."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Python-Markdown's name)
        md.treeprocessors.register(_LinkFilter(md), "safe_links", 0)


class _LinkFilter(markdown.treeprocessors.Treeprocessor):
    def run(self, root: ElementTree.Element) -> None:
        for parent in root.iter():
            for child in list(parent):
                if child.tag == "img" or (child.tag == "a" and not _safe_href(child.get("href", ""))):
                    text = child.get("alt", "") if child.tag == "img" else "".join(child.itertext())
                    child.tag, child.attrib, child.text = "span", {}, text
                    for grandchild in list(child):
                        child.remove(grandchild)


def _safe_href(href: str) -> bool:
    scheme = urllib.parse.urlsplit(href.strip()).scheme.lower()
    return scheme in ("", "https") and not href.strip().startswith("//")


def plot_names(cards: list[Card]) -> list[str]:
    shown, folded = figure_plan(cards)
    return [f.file for f in shown + folded]


def write_figures(folder: Path, cards: list[Card], load_scores: ScoreLoader) -> None:
    main = [c for c in cards if not c.budget]
    colours = attack_colours(base_attack(c) for c in cards)
    for (dataset, target), group in _targets(main).items():
        knowledge = headline_knowledge(c.knowledge for c in group)
        runs = _first_seed_runs([c for c in group if c.knowledge == knowledge])
        for defense, run in runs.items():
            roc_plot(run, load_scores, folder / f"roc_{_slug(dataset, target, defense)}.png", colours)
        baseline = next((defense for defense in runs if is_baseline(defense)), None)
        if baseline is not None and len(runs[baseline]) > 1:
            roc_plot(runs[baseline], load_scores, folder / f"roc_top_{_slug(dataset, target)}.png", colours, ROC_SHOWN)
    frontier_plot(main, folder / "frontier.png")
    regime_plot([c for c in main if c.suite == "regimes"], folder / "regimes.png", colours)
    budget_plot(cards, folder / "budget.png", colours)


def write_outputs(
    folder: Path, cards: list[Card], load_scores: ScoreLoader, console_table: bool = True,
    unshown: Sequence[str] | None = None,
) -> Page | None:  # fmt: skip
    """The figures and ``LEADERBOARD.md``; returns the page, so a caller can render it again (as
    HTML) without recomputing its comparisons. ``None`` when there is nothing to show."""
    if not cards:
        return None
    write_figures(folder, cards, load_scores)
    content = page(cards, load_scores, unshown)
    atomic_write_text(folder / "LEADERBOARD.md", leaderboard_markdown(content))
    if console_table:
        print_table([c for c in cards if not c.budget])
    return content


def print_table(cards: list[Card]) -> None:
    console = Console()
    for (dataset, target, defense, knowledge), group in _grouped(cards):
        for seed in sorted({c.seed for c in group}):
            table = Table(title=f"{dataset} / {target} / {defense} / seed {seed} / knowledge {knowledge}")
            for column in ("attack", "threat model", "AUC", "ASR (best τ)", "TPR@1%", "TPR@0.1%", "queries"):
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
