"""Each attack on the overfit tiny target: direction, counted queries, determinism."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from attacks.nais import STATISTICS, aggregation_score
from benchmark.api.plugins import AttackContext
from benchmark.api.registry import ATTACKS
from benchmark.core.configs import build_config
from benchmark.run.access import GrayBoxAccess, counter_of, make_access

# (forward, backward) passes per sample, as each paper specifies them
EXPECTED_PASSES = {
    "loss": (1, 0),
    "loss_cal": (1, 0),
    "pia": (2, 0),
    "pian": (2, 0),
    "nais": (5, 0),
    "nais_cal": (5, 0),
    "nais_l1": (5, 0),
    "nais_centroid": (5, 0),
    "nais_density": (5, 0),
    "sima": (1, 0),
    "sima_mc": (10, 0),
    "secmi": (11, 0),
    "secmi_nn": (11, 0),
    "rediffuse": (20, 0),
    "rediffuse_nn": (20, 0),
    "gsa": (10, 1),
}


def make_attack(name: str, **params):
    entry = ATTACKS.get(name)
    return entry.cls(build_config(entry.cls.Config, name, entry.preset, params))


def context(seed: int = 0) -> AttackContext:
    return AttackContext(torch.Generator().manual_seed(seed))


def calibrated(world, name: str, **params):
    """The attack calibrated on labelled target members, and a fresh access view of its threat model."""
    attack = make_attack(name, **params)
    access = make_access(world.model, attack.threat_model)
    attack.calibrate(access, world.cal_images, world.cal_labels, context(1))
    counter_of(access).reset()
    return attack, access


def test_every_registered_attack_declares_the_papers_cost():
    """Caption-conditioned attacks (CLiD) are held to their cost in tests/test_text_to_image.py."""
    assert {entry.name for entry in ATTACKS.entries() if not entry.cls.requires_captions} == set(EXPECTED_PASSES)
    for name, passes in EXPECTED_PASSES.items():
        assert make_attack(name).expected_passes() == passes


@pytest.mark.parametrize(
    "name, params, passes",
    [("nais_cal", {"k": 3}, (3, 0)), ("secmi", {"stride": 50}, (3, 0)), ("rediffuse", {"n": 2}, (4, 0)),
     ("sima_mc", {"mc_draws": 30}, (30, 0))],
)  # fmt: skip
def test_budget_knobs_change_the_counted_cost(tiny_world, name, params, passes):
    attack, access = calibrated(tiny_world, name, **params)
    attack.score(access, tiny_world.images[:8], context())
    assert attack.expected_passes() == passes
    assert (counter_of(access).forward_passes, counter_of(access).backward_passes) == (passes[0] * 8, passes[1] * 8)


@pytest.mark.parametrize("name", sorted(EXPECTED_PASSES))
def test_overfit_target_scores_members_higher_at_the_specified_cost(tiny_world, name):
    attack, access = calibrated(tiny_world, name)
    scores = attack.score(access, tiny_world.images, context())
    assert roc_auc_score(tiny_world.labels, scores) > 0.65
    n = len(tiny_world.images)
    assert (counter_of(access).forward_passes, counter_of(access).backward_passes) == tuple(
        count * n for count in EXPECTED_PASSES[name]
    )


def test_gsa2_backpropagates_every_timestep(tiny_world):
    attack, access = calibrated(tiny_world, "gsa", variant="gsa2")
    scores = attack.score(access, tiny_world.images, context())
    assert roc_auc_score(tiny_world.labels, scores) > 0.65
    n = len(tiny_world.images)
    assert (counter_of(access).forward_passes, counter_of(access).backward_passes) == (10 * n, 10 * n)


@pytest.mark.parametrize("name", sorted(EXPECTED_PASSES))
def test_same_seed_same_scores(tiny_world, name):
    runs = []
    for _ in range(2):
        attack, access = calibrated(tiny_world, name)
        runs.append(attack.score(access, tiny_world.images[:16], context(5)))
    np.testing.assert_array_equal(*runs)


@pytest.mark.parametrize("name", ["loss", "nais", "sima_mc", "rediffuse"])
def test_other_seed_other_noise(tiny_world, name):
    attack, access = calibrated(tiny_world, name)
    first = attack.score(access, tiny_world.images[:16], context(5))
    assert not np.allclose(first, attack.score(access, tiny_world.images[:16], context(6)))


def test_pia_is_deterministic_without_randomness(tiny_world):
    access = GrayBoxAccess(tiny_world.model)
    a = make_attack("pia").score(access, tiny_world.images[:10], context(1))
    b = make_attack("pia").score(access, tiny_world.images[:10], context(2))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("statistic", STATISTICS)
def test_tighter_predictions_score_higher_for_every_statistic(statistic):
    generator = torch.Generator().manual_seed(0)
    centre = torch.randn(1, 1, 64, generator=generator)
    spread = torch.randn(2, 5, 64, generator=generator)
    predictions = centre + spread * torch.tensor([0.05, 1.0]).view(2, 1, 1)  # row 0 tight, row 1 loose
    scores = aggregation_score(predictions, statistic, 1e-8)
    assert scores[0] > scores[1]


def test_nais_noise_readings_pick_the_documented_timesteps(tiny_world):
    access = GrayBoxAccess(tiny_world.model)
    images = tiny_world.images[:4]
    noise = torch.zeros_like(images)
    matched = make_attack("nais", noise="sigma_matched_t", sigma=0.1)
    _, t = matched._injection(access, images, noise, matched.settings)
    assert 24 <= t <= 30  # √(1−ᾱ_t) ≈ 0.1 on [-1, 1] images
    pixels = make_attack("nais", noise="sigma_matched_t", sigma=0.1, sigma_scale="zero_to_one")
    _, t = pixels._injection(access, images, noise, pixels.settings)
    assert 55 <= t <= 65  # 0.1 on [0, 1] pixels is 0.2 on [-1, 1]


def test_nais_cal_chooses_on_calibration_only_and_reports_it(tiny_world):
    attack = make_attack("nais_cal")
    chosen = attack.calibrate(GrayBoxAccess(tiny_world.model), tiny_world.cal_images, tiny_world.cal_labels, context(1))
    assert chosen["candidates"] == 17 * len(STATISTICS)
    assert attack.settings.t_inject == chosen["chosen"]["t_inject"]
    assert attack.settings.statistic == chosen["chosen"]["statistic"]
