"""The tables a reader judges from, as pandas frames built from result cards (no I/O here)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from benchmark.report.card import Card
from benchmark.report.metrics import paired_auc_difference

GROUP = ["dataset", "target", "defense", "knowledge"]
METRICS = [
    ("auc", "AUC"),
    ("asr_best_threshold", "ASR (best τ)"),
    ("tpr_at_1pct_fpr", "TPR@1%FPR"),
    ("tpr_at_0_1pct_fpr", "TPR@0.1%FPR"),
]
ScoreLoader = Callable[[Card], dict[str, np.ndarray]]


def _fmt_metric(card: Card, key: str) -> str:
    low, high = card.metric(f"{key}_ci")
    text = f"{card.metric(key):.3f} [{low:.2f}, {high:.2f}]"
    if key in card.tpr_reliable and not card.tpr_reliable[key]:
        text += " †"
    return text


def _mean_std(values: pd.Series) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


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
    out["_defense"] = [defense != "none" for _, defense, _ in out.index]  # the undefended baseline first
    ranked = out.sort_values(["knowledge", "_defense", "defense", "_rank"], ascending=[False, True, True, False])
    return ranked.drop(columns=["_rank", "_defense"]).reset_index()


def worst_case(cards: list[Card]) -> pd.DataFrame:
    """Per dataset/target/defense: the strongest attack by AUC and by TPR@1%FPR (each averaged over seeds)."""
    if not cards:
        return pd.DataFrame()
    per_attack = _frame(cards).groupby([*GROUP, "attack"], as_index=False).mean(numeric_only=True)
    rows = []
    for keys, group in per_attack.groupby(GROUP, sort=False):
        by_auc = group.loc[group["AUC"].idxmax()]
        by_tpr = group.loc[group["TPR@1%FPR"].idxmax()]
        rows.append(
            {
                **dict(zip(GROUP, keys, strict=True)),
                "auc": by_auc["AUC"],
                "auc_attack": by_auc["attack"],
                "tpr": by_tpr["TPR@1%FPR"],
                "tpr_attack": by_tpr["attack"],
                "heldout_mse": group["heldout_mse"].mean(),
                "fid": group["fid"].mean(),
                "epsilon": group["epsilon"].mean(),
            }
        )
    return pd.DataFrame(rows)


def defense_ranking(cards: list[Card]) -> pd.DataFrame:
    """Each defense judged by its strongest attack, most private first, utility beside it."""
    worst = worst_case(cards).sort_values("auc")
    return pd.DataFrame(
        {
            **{key: worst[key] for key in GROUP},
            "worst-case AUC": [f"{a:.3f} ({n})" for a, n in zip(worst["auc"], worst["auc_attack"], strict=True)],
            "worst-case TPR@1%FPR": [f"{t:.3f} ({n})" for t, n in zip(worst["tpr"], worst["tpr_attack"], strict=True)],
            "FID (lower = better samples)": ["—" if np.isnan(f) else f"{f:.1f}" for f in worst["fid"]],
            "held-out denoising MSE": [f"{m:.4f}" for m in worst["heldout_mse"]],
            "ε": ["∞" if np.isnan(e) else f"{e:.2f}" for e in worst["epsilon"]],
        }
    )


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
        if card.knowledge != "none":
            groups.setdefault((card.dataset, card.target, card.defense, card.knowledge, card.seed), []).append(card)
    for (dataset, target, defense, knowledge, seed), group in groups.items():
        scores = {card.attack: load_scores(card) for card in group}
        best = max(group, key=lambda c: _calibration_auc(scores[c.attack]))
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


def _calibration_auc(arrays: dict[str, np.ndarray]) -> float:
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
