"""The audit's report: a verdict in one sentence, the attacks with intervals, which images leak
(``exposure.csv`` and a contact sheet), what the numbers assume and what would lower them.

Written twice from one set of values: ``report.md`` (figures as files beside it) and
``report.html`` (one self-contained file, figures embedded, opens offline; attach it to a release
review).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from markupsafe import escape

from benchmark.core.errors import BenchmarkError
from benchmark.core.protocol import HEADLINE_KNOWLEDGE, Knowledge
from benchmark.core.storage import atomic_write_text
from benchmark.records.card import Card
from benchmark.report.plots import attack_colours, roc_plot, save_figure
from benchmark.report.render import template
from benchmark.report.tables import defense_ranking

SHEET_ROWS = 6  # most exposed members on the contact sheet (and as many least exposed)


@dataclass
class AuditReport:
    verdict: str
    assumptions: str
    attacks: pd.DataFrame
    exposure: pd.DataFrame
    defenses: pd.DataFrame | None
    defenses_source: str
    figures: list[tuple[str, str]]  # (title, file)


def verdict(strongest: Card) -> str:
    noun = "query" if strongest.queries_per_sample == 1 else "queries"
    low, high = strongest.tpr_at_1pct_fpr_ci
    caveat = ""
    if not strongest.tpr_reliable.get("tpr_at_1pct_fpr", True):
        caveat = f" (with {strongest.n_nonmembers} non-members, 1% false alarms is under 10 images: indicative only)"
    return (
        f"An attacker holding labelled images of this model's training set with {strongest.queries_per_sample:g} "
        f"{noun} per image finds {100 * strongest.tpr_at_1pct_fpr:.1f}% of the training images at 1% false alarms "
        f"(95% CI {100 * low:.1f}–{100 * high:.1f}%){caveat}; strongest attack, chosen on the calibration images: "
        f"{strongest.attack} (AUC {strongest.auc:.3f})."
    )


def assumptions(cards: Sequence[Card], calibration_fraction: float) -> str:
    knowledge = cards[0].knowledge
    if knowledge == Knowledge.NONE:
        return ("No calibration images were held out (--calibration-fraction 0): only fixed-setting attacks ran, "
                "with the papers' sign and no threshold (knowledge: none).")  # fmt: skip
    threats = ", ".join(sorted({c.threat_model for c in cards}))
    return (
        f"Knowledge target-members: a seeded {calibration_fraction:.0%} of each folder was held out and labelled, "
        "as the model's owner can; every setting, sign and threshold was fitted there and judged on the rest. That "
        "is the stronger of the leaderboard's two assumptions (its headline attacker calibrates on a shadow model "
        f"instead), so these numbers bound what an outsider reaches from above. Threat models: {threats}; the "
        "non-member folder stands in for images the model never saw, so a non-member folder drawn from another "
        "distribution than the members inflates every number here."
    )


def attack_frame(cards: Sequence[Card]) -> pd.DataFrame:
    def interval(card: Card, key: str) -> str:
        low, high = card.metric(f"{key}_ci")
        return f"{card.metric(key):.3f} [{low:.2f}, {high:.2f}]"

    return pd.DataFrame([
        {"attack": c.attack, "threat model": c.threat_model, "AUC": interval(c, "auc"),
         "TPR@1%FPR": interval(c, "tpr_at_1pct_fpr"), "TPR@0.1%FPR": interval(c, "tpr_at_0_1pct_fpr"),
         "queries/image": f"{c.queries_per_sample:g}"}
        for c in sorted(cards, key=lambda c: -c.auc)
    ])  # fmt: skip


def contact_sheet(exposure: pd.DataFrame, members: torch.Tensor, member_files: Sequence[str],
                  nonmembers: torch.Tensor, nonmember_files: Sequence[str], path: Path) -> None:  # fmt: skip
    """The most and least exposed members, each beside its nearest non-member (distance shown)."""
    picked = pd.concat([exposure.head(SHEET_ROWS), exposure.tail(SHEET_ROWS)]).drop_duplicates("file")
    position = {name: i for i, name in enumerate(member_files)}
    other = {name: i for i, name in enumerate(nonmember_files)}
    figure, axes = plt.subplots(len(picked), 2, figsize=(4.2, 1.9 * len(picked)), squeeze=False)
    for row, (_, entry) in enumerate(picked.iterrows()):
        pairs = ((members[position[entry["file"]]], f"{entry['file']}\np = {entry['p_value']:.3g}"),
                 (nonmembers[other[entry["nearest_nonmember"]]],
                  f"nearest non-member {entry['nearest_nonmember']}\nRMS {entry['nearest_distance']:.3f}"
                  + (" (duplicate)" if entry["near_duplicate"] else "")))  # fmt: skip
        for column, (image, title) in enumerate(pairs):
            pixels = ((image.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
            axes[row][column].imshow(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels, cmap="gray")
            axes[row][column].set_title(title, fontsize=6)
            axes[row][column].axis("off")
    figure.suptitle(f"the {SHEET_ROWS} most and {SHEET_ROWS} least exposed members", fontsize=8)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.3 / len(picked)))
    save_figure(figure, path)


def published_defenses(leaderboard: Path) -> tuple[pd.DataFrame | None, str]:
    """The committed leaderboard's defense ranking on its headline target, or why it is absent."""
    from benchmark.report.leaderboard import Leaderboard

    board = Leaderboard(leaderboard)
    if not board.cards_dir.is_dir():
        return None, f"no published leaderboard at {leaderboard} (pass --leaderboard DIR from a checkout)"
    try:
        cards = board.load()
    except BenchmarkError as error:
        return None, f"the leaderboard at {leaderboard} could not be read ({error})"
    headline = [c for c in cards if c.suite in ("full", "defenses") and c.knowledge == HEADLINE_KNOWLEDGE] or cards
    first = headline[0]
    target = [c for c in headline if (c.dataset, c.target) == (first.dataset, first.target)]
    return defense_ranking(target), (
        f"the published leaderboard's headline target ({first.dataset}/{first.target}); the closest published "
        "regime to yours may differ, so read the ranking, not the numbers")  # fmt: skip


def write_report(
    out: Path, cards: Sequence[Card], arrays: dict[str, dict[str, np.ndarray]], exposure: pd.DataFrame,
    strongest: Card, images: tuple[torch.Tensor, Sequence[str], torch.Tensor, Sequence[str]],
    calibration_fraction: float, leaderboard: Path, duplicates: int = 0,
) -> tuple[Path, Path]:  # fmt: skip
    """report.md, report.html, exposure.csv, roc.png and contact_sheet.png in ``out``."""
    members, member_files, nonmembers, nonmember_files = images
    exposure.to_csv(out / "exposure.csv", index=False)
    colours = attack_colours(c.attack for c in cards)
    roc_plot(list(cards), lambda card: arrays[card.attack], out / "roc.png", colours)
    contact_sheet(exposure, members, member_files, nonmembers, nonmember_files, out / "contact_sheet.png")
    defenses, source = published_defenses(leaderboard)
    shown = exposure[["file", "p_value", "nearest_nonmember", "nearest_distance", "near_duplicate"]]
    report = AuditReport(
        verdict=verdict(strongest), assumptions=assumptions(cards, calibration_fraction), attacks=attack_frame(cards),
        exposure=shown.head(20).round(4), defenses=defenses, defenses_source=source,
        figures=[("ROC (log-log)", "roc.png"), ("Most and least exposed members", "contact_sheet.png")],
    )  # fmt: skip
    # with n non-members the smallest p-value is 1/(n+1): below 19 of them, 0.05 cannot be reached
    level = max(0.05, float(exposure["p_value"].min()) if strongest.n_nonmembers < 19 else 0.05)
    counts = {"n_exposed": int((exposure["p_value"] <= level).sum()), "n_members": len(exposure), "level": level,
              "strongest": strongest.attack, "duplicates": duplicates, "n_nonmembers": strongest.n_nonmembers}
    markdown = template("audit_report.md.j2").render(report=report, **counts)

    def embedded(file: str) -> str:
        return "data:image/png;base64," + base64.b64encode((out / file).read_bytes()).decode("ascii")

    page = template("audit_report.html.j2").render(report=report, embedded=embedded, escape=escape, **counts)
    atomic_write_text(out / "report.md", markdown)
    atomic_write_text(out / "report.html", page)
    return out / "report.md", out / "report.html"
