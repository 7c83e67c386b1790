"""The tables a reader judges from, as pandas frames built from result cards (no I/O here)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from benchmark.api.registry import DEFENSES
from benchmark.core.protocol import HEADLINE_KNOWLEDGE, Knowledge
from benchmark.records.card import Card
from benchmark.records.metrics import paired_auc_difference

GROUP = ["dataset", "target", "defense", "knowledge"]
METRICS = [
    ("auc", "AUC"),
    ("asr_best_threshold", "ASR (best τ)"),
    ("tpr_at_1pct_fpr", "TPR@1%FPR"),
    ("tpr_at_0_1pct_fpr", "TPR@0.1%FPR"),
]
ScoreLoader = Callable[[Card], dict[str, np.ndarray]]


def headline_knowledge(levels: Iterable[str]) -> str:
    """``shadow`` where the cards have it, else their first level (a board run under another one)."""
    levels = set(levels)
    return HEADLINE_KNOWLEDGE.value if HEADLINE_KNOWLEDGE.value in levels else sorted(levels)[0]


@functools.cache
def is_baseline(defense: str) -> bool:
    """Whether cards labelled ``defense`` come from the undefended reference: a registered defense
    whose class declares ``baseline`` (a label no registry entry has is a configured variant)."""
    return DEFENSES.has(defense) and DEFENSES.get(defense).cls.baseline


def page_order(cards: Iterable[Card]) -> list[Card]:
    """The `full` suite's (headline) targets first, then by members, so a training-set-size curve
    (64, 256, 1,024 members) reads in order instead of by name; stable within a target."""
    return sorted(cards, key=lambda c: (c.suite != "full", c.n_members))


def _fmt_metric(card: Card, key: str) -> str:
    low, high = card.metric(f"{key}_ci")
    text = f"{card.metric(key):.3f} [{low:.2f}, {high:.2f}]"
    if key in card.tpr_reliable and not card.tpr_reliable[key]:
        text += " †"
    return text


def _mean_std(values: pd.Series) -> str:
    """``mean ± std`` over seeds; one seed says ``n=1`` (a ± 0.000 would read as no spread)."""
    if len(values) < 2:
        return f"{values.mean():.3f} (n=1)"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def detail_table(cards: list[Card]) -> pd.DataFrame:
    """One row per card, with its bootstrap intervals."""
    rows = []
    for card in cards:
        row = {k: card.metric(k) for k in ("attack", "knowledge", "threat_model", "seed", "n_members", "n_nonmembers")}
        for key, title in METRICS:
            row[title] = _fmt_metric(card, key)
        fitted = card.at_fitted_threshold
        row["BA / TPR / FPR at fitted τ"] = (
            f"{fitted.balanced_accuracy:.2f} / {fitted.tpr:.2f} / {fitted.fpr:.2f}" if fitted else "—"
        )
        row["sign"] = "−" if card.orientation < 0 else "+"
        row["queries/sample"] = f"{card.queries_per_sample:g}"
        row["ms/sample"] = f"{card.seconds_per_sample * 1000:.2f}"
        row["provenance"] = card.provenance
        rows.append(row)
    return pd.DataFrame(rows)


def _frame(cards: list[Card]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                **{k: c.metric(k) for k in (*GROUP, "attack", "threat_model", "seed", "queries_per_sample")},
                "backward": c.backward_passes_per_sample,
                **{title: c.metric(key) for key, title in METRICS},
                "members": (c.split_sizes or {}).get("members", np.nan),
                "heldout_mse": c.utility.get("heldout_denoising_mse", np.nan),
                "fid": np.nan if c.utility.get("fid") is None else c.utility["fid"],
                "epsilon": c.defense_costs.get("epsilon", np.nan),
            }
            for c in cards
        ]
    )


def seed_summary(cards: list[Card]) -> pd.DataFrame:
    """Mean ± standard deviation across seeds (target retrains), beside the per-seed bootstrap."""
    grouped = _frame(cards).groupby([*GROUP, "attack"], sort=False)
    out = grouped[[title for _, title in METRICS]].agg(_mean_std)
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def attack_table(cards: list[Card]) -> pd.DataFrame:
    """Each attack per defense over every target and seed, strongest first: mean ± std, cost and
    threat model (averaging across defenses would blend a defended model's chance-level AUC in)."""
    frame = _frame(cards)
    grouped = frame.groupby(["knowledge", "defense", "attack"], sort=False)
    out = grouped[[title for _, title in METRICS]].agg(_mean_std)
    out.insert(0, "threat model", grouped["threat_model"].first())
    out["queries/sample"] = grouped["queries_per_sample"].mean().map(lambda q: f"{q:g}")
    out["backward/sample"] = grouped["backward"].mean().map(lambda q: f"{q:g}")
    out["cells"] = grouped.size()
    out["_rank"] = grouped["AUC"].mean()
    out["_defense"] = [not is_baseline(defense) for _, defense, _ in out.index]  # the undefended baseline first
    ranked = out.sort_values(["knowledge", "_defense", "defense", "_rank"], ascending=[False, True, True, False])
    return ranked.drop(columns=["_rank", "_defense"]).reset_index()


def attack_means(cards: list[Card]) -> pd.DataFrame:
    """Each attack's AUC and TPR@1%FPR averaged over seeds, with its queries, strongest first."""
    if not cards:
        return pd.DataFrame()
    frame = _frame(cards)
    out = frame.groupby("attack", as_index=False).agg(
        auc=("AUC", "mean"), tpr=("TPR@1%FPR", "mean"), queries=("queries_per_sample", "mean"),
        seeds=("seed", "nunique"),
    )  # fmt: skip
    return out.sort_values(["auc", "attack"], ascending=[False, True]).reset_index(drop=True)


def worst_case(cards: list[Card]) -> pd.DataFrame:
    """Per dataset/target/defense/knowledge: the strongest attack by AUC and by TPR@1%FPR (each
    averaged over seeds, the maximum then taken over attacks), the spread of that attack over
    seeds, and the utility (mean and spread over seeds)."""
    if not cards:
        return pd.DataFrame()
    frame = _frame(cards)
    per_attack = frame.groupby([*GROUP, "attack"], as_index=False).agg(
        auc=("AUC", "mean"), auc_std=("AUC", "std"), tpr=("TPR@1%FPR", "mean"), tpr_std=("TPR@1%FPR", "std"),
        seeds=("seed", "nunique"),
    )  # fmt: skip
    utility = frame.drop_duplicates([*GROUP, "seed"]).groupby(GROUP).agg(
        fid=("fid", "mean"), fid_std=("fid", "std"), mse=("heldout_mse", "mean"), mse_std=("heldout_mse", "std"),
        epsilon=("epsilon", "mean"),
    )  # fmt: skip
    rows = []
    for keys, group in per_attack.groupby(GROUP, sort=False):
        by_auc, by_tpr = group.loc[group["auc"].idxmax()], group.loc[group["tpr"].idxmax()]
        rows.append(
            {
                **dict(zip(GROUP, keys, strict=True)),
                "auc": by_auc["auc"], "auc_std": by_auc["auc_std"], "auc_attack": by_auc["attack"],
                "tpr": by_tpr["tpr"], "tpr_std": by_tpr["tpr_std"], "tpr_attack": by_tpr["attack"],
                "seeds": int(group["seeds"].max()), "attacks": len(group),
                **utility.loc[keys].to_dict(),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def _spread(value: float, std: float, seeds: int, digits: int = 3) -> str:
    return f"{value:.{digits}f} (n=1)" if seeds < 2 or np.isnan(std) else f"{value:.{digits}f} ± {std:.{digits}f}"


def defense_ranking(cards: list[Card]) -> pd.DataFrame:
    """Each defense judged by its strongest attack, most private first, utility beside it."""
    worst = worst_case(cards).sort_values("auc")
    if worst.empty:
        return worst
    return pd.DataFrame(
        {
            "defense": worst["defense"],
            "seeds": worst["seeds"],
            "worst-case AUC": [f"{_spread(r.auc, r.auc_std, r.seeds)} ({r.auc_attack})" for r in worst.itertuples()],
            "worst-case TPR@1%FPR": [
                f"{_spread(r.tpr, r.tpr_std, r.seeds)} ({r.tpr_attack})" for r in worst.itertuples()
            ],
            "FID (lower = better)": ["—" if np.isnan(r.fid) else _spread(r.fid, r.fid_std, r.seeds, 1)
                                     for r in worst.itertuples()],  # fmt: skip
            "held-out MSE": [_spread(r.mse, r.mse_std, r.seeds, 4) for r in worst.itertuples()],
            "ε": ["∞" if np.isnan(e) else f"{e:.2f}" for e in worst["epsilon"]],
        }
    )


def frontier_points(cards: list[Card]) -> pd.DataFrame:
    """The frontier plot's points: each defense's worst case under knowledge ``shadow`` (where a
    target has none, its first knowledge level), per ``dataset/target``, with seed spreads."""
    worst = worst_case([c for c in cards if not c.budget])
    if worst.empty:
        return worst
    preferred = worst.groupby(["dataset", "target"])["knowledge"].transform(headline_knowledge)
    worst = worst[worst["knowledge"] == preferred].copy()
    worst["target"] = worst["dataset"] + "/" + worst["target"]
    return worst.fillna({"auc_std": 0.0, "tpr_std": 0.0, "fid_std": 0.0, "mse_std": 0.0})


def regime_table(cards: list[Card]) -> pd.DataFrame:
    """Undefended targets by training-set size: each attack's AUC and TPR@1%FPR (mean, std and
    seeds) per member count, under knowledge ``shadow``."""
    chosen = [c for c in cards if is_baseline(c.defense) and c.knowledge == Knowledge.SHADOW and not c.budget]
    if not chosen:
        return pd.DataFrame()
    frame = _frame(chosen)
    out = frame.groupby(["attack", "members"], as_index=False).agg(
        auc=("AUC", "mean"), auc_std=("AUC", "std"), tpr=("TPR@1%FPR", "mean"), tpr_std=("TPR@1%FPR", "std"),
        seeds=("seed", "nunique"), queries=("queries_per_sample", "mean"),
    )  # fmt: skip
    return out.fillna({"auc_std": 0.0, "tpr_std": 0.0}).sort_values(["attack", "members"])


def budget_table(cards: list[Card]) -> pd.DataFrame:
    """AUC against measured queries for every budget-sweep point (mean over seeds)."""
    frame = pd.DataFrame(
        [
            {
                "target": f"{c.dataset}/{c.target}/{c.defense}",
                "attack": c.budget["attack"],
                "knob": f"{c.budget['param']}={c.budget['value']}",
                "queries/sample": c.queries_per_sample,
                "AUC": c.auc,
                "TPR@1%FPR": c.tpr_at_1pct_fpr,
            }
            for c in cards
            if c.budget
        ]
    )
    if frame.empty:
        return frame
    keys = ["target", "attack", "knob", "queries/sample"]
    summary = frame.groupby(keys, sort=False, as_index=False)[["AUC", "TPR@1%FPR"]].mean()
    return summary.sort_values(["target", "attack", "queries/sample"]).round(3)


def paired_comparisons(cards: list[Card], load_scores: ScoreLoader) -> pd.DataFrame:
    """Per target, seed and knowledge level: the attack that was best *on the attacker's calibration
    data* against each other attack, paired on the same evaluated images; p-values Holm-corrected
    within each family (choosing the best on the evaluated images, then testing it there, would
    favour it). Knowledge ``none`` has no calibration data to choose on, so it has no rows."""
    rows = []
    groups: dict[tuple, list[Card]] = {}
    for card in cards:
        if card.knowledge != Knowledge.NONE:
            groups.setdefault((card.dataset, card.target, card.defense, card.knowledge, card.seed), []).append(card)
    for (dataset, target, defense, knowledge, seed), group in groups.items():
        scores = {card.attack: load_scores(card) for card in group}
        best = max(group, key=lambda c: calibration_auc(scores[c.attack]))
        family = []
        for other in group:
            same_images = np.array_equal(scores[best.attack]["labels"], scores[other.attack]["labels"])
            if other is best or not same_images:
                continue
            paired = paired_auc_difference(
                scores[best.attack]["labels"], scores[best.attack]["scores"], scores[other.attack]["scores"], seed
            )
            family.append((other, paired))
        if not family:
            continue
        significant, adjusted, _, _ = multipletests([p["p_value"] for _, p in family], alpha=0.05, method="holm")
        for (other, paired), reject, p_holm in zip(family, significant, adjusted, strict=True):
            low, high = paired["ci"]
            rows.append(
                {
                    "target": f"{dataset}/{target}/{defense}",
                    "knowledge": knowledge,
                    "seed": seed,
                    "best on calibration": best.attack,
                    "vs": other.attack,
                    "ΔAUC [95% CI]": f"{paired['difference']:+.3f} [{low:+.3f}, {high:+.3f}]",
                    "p (Holm)": f"{p_holm:.3g}",
                    "significant": "yes" if reject else "no",
                }
            )
    return pd.DataFrame(rows)


def calibration_auc(arrays: dict[str, np.ndarray]) -> float:
    """AUC of the oriented calibration scores the threshold was fitted on (0.5 when absent)."""
    labels = arrays.get("calibration_labels")
    if labels is None or len(np.unique(labels)) < 2:
        return 0.5
    return float(roc_auc_score(labels, arrays["calibration_scores"]))


def provenance_table(cards: list[Card]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                **{k: c.metric(k) for k in (*GROUP, "seed")},
                "suite": f"{c.suite} v{c.suite_version}",
                "split_sha256": c.split_sha256[:16],
                "target_hash": c.target_hash[:16],
                "provenance": c.provenance,
            }
            for c in cards
        ]
    ).drop_duplicates()
