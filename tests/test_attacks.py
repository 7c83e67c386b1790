"""Each attack on the overfit tiny target: direction, counted queries, determinism."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from attacks.nais import STATISTICS, aggregation_score
from benchmark.access import GrayBoxAccess
from benchmark.configs import build_config
from benchmark.interfaces import AttackContext
from benchmark.registry import ATTACKS

EXPECTED_QUERIES = {"loss": 1, "pia": 2, "nais": 5, "nais_cal": 5}


def make_attack(name: str, **params):
    entry = ATTACKS.get(name)
    return entry.cls(build_config(entry.cls.Config, name, entry.preset, params))


def context(seed: int = 0) -> AttackContext:
    return AttackContext(torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(EXPECTED_QUERIES))
def test_overfit_target_scores_members_higher(tiny_world, name):
    attack = make_attack(name)
    access = GrayBoxAccess(tiny_world.model)
    attack.calibrate(access, tiny_world.cal_images, tiny_world.cal_labels, context(1))
    scores = attack.score(access, tiny_world.images, context())
    assert roc_auc_score(tiny_world.labels, scores) > 0.65


@pytest.mark.parametrize("name", sorted(EXPECTED_QUERIES))
def test_queries_counted_by_the_adapter(tiny_world, name):
    attack = make_attack(name)
    access = GrayBoxAccess(tiny_world.model)
    attack.calibrate(access, tiny_world.cal_images, tiny_world.cal_labels, context(1))
    access.counter.reset()
    attack.score(access, tiny_world.images, context())
    assert access.counter.forward_passes == EXPECTED_QUERIES[name] * len(tiny_world.images)


@pytest.mark.parametrize("name", ["loss", "nais"])
def test_same_seed_same_scores_other_seed_other_scores(tiny_world, name):
    access = GrayBoxAccess(tiny_world.model)
    first = make_attack(name).score(access, tiny_world.images[:20], context(5))
    again = make_attack(name).score(access, tiny_world.images[:20], context(5))
    other = make_attack(name).score(access, tiny_world.images[:20], context(6))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


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
