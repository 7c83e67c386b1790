"""Which of an owner's images leak: per-image exposure, and whether a leak is a duplicate.

For each evaluated member image and each attack, the empirical p-value of its score against the
evaluated non-members' scores, (1 + #{non-member score ≥ its score}) / (1 + #non-members): the
chance that an image the model never saw looks at least this member-like. It lies in (0, 1]; a
small value means exposed. The attack that decides a row's headline p-value is the one strongest on
the calibration images (never chosen on the evaluated ones). Each member's nearest non-member
(root-mean-square pixel distance over every non-member image) tells a memorised singleton from an
image whose twin sits in the non-member folder (a duplicate: the folders overlap). A non-member that
duplicates a member is no image the model never saw, so it leaves the reference set the p-values
are computed against (the report says how many did).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from benchmark.records.card import Card
from benchmark.report.tables import calibration_auc

# images this close (RMS over pixels in [-1, 1], so 0.02 is 1% of the range) are the same picture
NEAR_DUPLICATE_RMS = 0.02


def empirical_p_values(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> np.ndarray:
    exceed = (nonmember_scores[None, :] >= member_scores[:, None]).sum(axis=1)
    return (1 + exceed) / (1 + len(nonmember_scores))


def strongest_on_calibration(cards: Sequence[Card], arrays: dict[str, dict[str, np.ndarray]]) -> Card:
    """The attack whose oriented calibration scores separate best (the first card when none has any)."""
    return max(cards, key=lambda card: calibration_auc(arrays[card.attack]))


def nearest_nonmembers(members: torch.Tensor, nonmembers: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``members``, (index of its nearest row of ``nonmembers``, RMS pixel distance)."""
    distances = torch.cdist(members.flatten(1).double(), nonmembers.flatten(1).double()) / members[0].numel() ** 0.5
    closest = distances.min(dim=1)
    return closest.indices.numpy(), closest.values.numpy()


def exposure_table(
    cards: Sequence[Card], arrays: dict[str, dict[str, np.ndarray]], member_files: Sequence[str],
    members: torch.Tensor, nonmember_files: Sequence[str], nonmembers: torch.Tensor,
    evaluated_nonmembers: torch.Tensor, all_members: torch.Tensor,
) -> tuple[pd.DataFrame, Card, int]:  # fmt: skip
    """One row per evaluated member (in evaluation order), most exposed first; the deciding attack;
    and how many evaluated non-members duplicate a member (left out of the p-values)."""
    strongest = strongest_on_calibration(cards, arrays)
    _, to_member = nearest_nonmembers(evaluated_nonmembers, all_members)
    clean = to_member >= NEAR_DUPLICATE_RMS
    rows = pd.DataFrame({"file": list(member_files)})
    for card in cards:
        scores, labels = arrays[card.attack]["scores"], arrays[card.attack]["labels"]
        rows[f"{card.attack}_score"] = scores[labels == 1]
        rows[f"{card.attack}_p"] = empirical_p_values(scores[labels == 1], scores[labels == 0][clean])
    rows["p_value"] = rows[f"{strongest.attack}_p"]
    nearest, distance = nearest_nonmembers(members, nonmembers)
    rows["nearest_nonmember"] = [nonmember_files[i] for i in nearest]
    rows["nearest_distance"] = distance
    rows["near_duplicate"] = distance < NEAR_DUPLICATE_RMS
    # ties in p (every member above every non-member shares the smallest p) go by the deciding score
    ranked = rows.sort_values(["p_value", f"{strongest.attack}_score", "file"], ascending=[True, False, True])
    return ranked.reset_index(drop=True), strongest, int((~clean).sum())
