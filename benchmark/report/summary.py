"""The three answers at the top of the page, written from the cards in plain sentences.

1. Which defense protects best, and at what utility cost (per target, knowledge ``shadow``)?
2. Which attack is strongest per target (regime), and at what query cost?
3. How does that ranking compare with the papers' CIFAR-10 ranking?
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from benchmark.records.card import Card
from benchmark.report.papers import CIFAR10_AUC
from benchmark.report.tables import attack_means, headline_knowledge, is_baseline, page_order, worst_case


def _queries(count: float) -> str:
    return f"{count:g} {'query' if count == 1 else 'queries'}"


def _utility(row: pd.Series) -> str:
    return f"FID {row['fid']:.1f}" if np.isfinite(row["fid"]) else f"held-out MSE {row['mse']:.4f}"


def defense_sentence(target: str, knowledge: str, cards: list[Card]) -> str | None:
    """``cards``: the target's cards under ``knowledge``, every defense."""
    worst = worst_case(cards)
    undefended = worst["defense"].map(is_baseline)
    defended = worst[~undefended].sort_values("auc")
    if defended.empty or not undefended.any():
        return None  # nothing to compare (a regime target is undefended only: the attack answer covers it)
    base = worst[undefended].iloc[0]
    text = (f"**{target}** (knowledge `{knowledge}`): undefended, the strongest attack reaches AUC {base['auc']:.3f} "
            f"({base['auc_attack']}) at {_utility(base)}")  # fmt: skip
    best = defended.iloc[0]
    text += f"; the most private defense is `{best['defense']}`: AUC {best['auc']:.3f} at {_utility(best)}"
    trained = defended[~defended["defense"].isin(["public_only"])]
    if best["defense"] == "public_only" and not trained.empty:
        runner = trained.iloc[0]
        text += (f" (it never trains on a member); of the defenses that do, `{runner['defense']}` reaches AUC "
                 f"{runner['auc']:.3f} at {_utility(runner)}")  # fmt: skip
    return text + "."


def attack_sentence(target: str, means: pd.DataFrame) -> str | None:
    """``means``: the undefended target's attacks, strongest first (``attack_means``)."""
    if means.empty:
        return None
    strongest = means.iloc[0]
    text = (f"**{target}**: strongest `{strongest['attack']}`, AUC {strongest['auc']:.3f} with "
            f"{_queries(strongest['queries'])} per image")  # fmt: skip
    cheap = means[means["queries"] < strongest["queries"]]
    if not cheap.empty:
        best_cheap = cheap.iloc[0]
        text += (f"; with fewer queries, `{best_cheap['attack']}` reaches {best_cheap['auc']:.3f} "
                 f"({_queries(best_cheap['queries'])})")  # fmt: skip
    if "nais" in set(means["attack"]) and strongest["attack"] != "nais":
        nais = means[means["attack"] == "nais"].iloc[0]
        rank = int(np.flatnonzero(means["attack"].to_numpy() == "nais")[0]) + 1
        text += f"; NAIS with the paper's defaults ranks {rank} of {len(means)} ({nais['auc']:.3f}, 5 queries)"
    return text + "."


def papers_sentence(target: str, means: pd.DataFrame) -> str | None:
    shared = [a for a in means.get("attack", []) if a in CIFAR10_AUC]
    if len(shared) < 3:
        return None
    ours = means.set_index("attack").loc[shared, "auc"]
    theirs = pd.Series({a: CIFAR10_AUC[a][0] for a in shared})
    rho = spearmanr(ours.to_numpy(), theirs.loc[shared].to_numpy()).statistic
    order = " > ".join(ours.sort_values(ascending=False).index)
    return f"**{target}**: {order} (Spearman ρ = {rho:+.2f} with the papers over these {len(shared)} attacks)."


def summary(cards: list[Card]) -> dict[str, list[str]]:
    """The three answers, one sentence per target, targets in page order."""
    targets: dict[str, list[Card]] = {}
    for card in page_order(cards):
        targets.setdefault(f"{card.dataset}/{card.target}", []).append(card)
    answers: dict[str, list[str]] = {"defenses": [], "attacks": [], "papers": []}
    for name, group in targets.items():
        knowledge = headline_knowledge(c.knowledge for c in group)
        chosen = [c for c in group if c.knowledge == knowledge and not c.budget]
        means = attack_means([c for c in chosen if is_baseline(c.defense)])  # shared by the last two answers
        lines = {"defenses": defense_sentence(name, knowledge, chosen), "attacks": attack_sentence(name, means),
                 "papers": papers_sentence(name, means)}  # fmt: skip
        for key, line in lines.items():
            if line:
                answers[key].append(line)
    return answers


def papers_order() -> str:
    ranked = sorted(CIFAR10_AUC.items(), key=lambda item: -item[1][0])
    return " > ".join(f"{name} {auc:.3f}" for name, (auc, _) in ranked)
