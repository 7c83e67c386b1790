"""What the attacker knows: shadow calibration never touches the target's split, orientation is
learned, thresholds are fitted on images calibration did not use, and the views are sealed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from attacks.loss import LossAttack
from benchmark.api import ATTACKS, ThreatModel
from benchmark.core.errors import BenchmarkError, ThreatModelError
from benchmark.run.access import DiffusionModel, make_access
from benchmark.run.cache import Cache
from benchmark.run.runner import run_suite
from benchmark.run.scoring import Labelled
from conftest import make_suite, plain_tiny_unet, tiny_suite_dict


def test_shadow_calibration_never_touches_an_image_of_the_target_split(tiny_run):
    _, cards = tiny_run
    shadow = [c for c in cards if c.knowledge == "shadow"]
    assert shadow and all(c.shadows == 1 for c in shadow)
    for card in shadow:
        touched = set(card.calibration_images["members"]) | set(card.calibration_images["nonmembers"])
        split = set().union(*map(set, card.split_indices.values()))
        assert len(touched) == 2 * len(card.split_indices["training"])
        assert not touched & split  # no target member, evaluated image or target calibration image
    for card in (c for c in cards if c.knowledge == "target-members"):
        assert card.calibration_images == {
            "members": card.split_indices["calibration_members"],
            "nonmembers": card.split_indices["calibration_nonmembers"],
        }


def test_a_searching_attack_fits_its_threshold_on_the_other_half(tiny_run):
    _, cards = tiny_run
    for card in (c for c in cards if c.attack == "nais_cal"):
        fitted, thresholded = card.calibration["fitted_on"], card.calibration["threshold_and_orientation_fitted_on"]
        assert sum(fitted.values()) + sum(thresholded.values()) == card.n_calibration
        assert card.at_fitted_threshold is not None
    loss = next(c for c in cards if c.attack == "loss" and c.knowledge == "target-members")
    assert "fitted_on" not in loss.calibration  # nothing learned: every calibration image sets the threshold
    assert sum(loss.calibration["threshold_and_orientation_fitted_on"].values()) == loss.n_calibration


def test_halves_are_a_stratified_partition():
    labelled = Labelled.of(torch.arange(10.0).view(10, 1), torch.arange(10.0, 40.0).view(30, 1))
    first, second = labelled.halves(seed=3)
    assert first.counts() == {"members": 5, "nonmembers": 15} == second.counts()
    assert not set(first.images.flatten().tolist()) & set(second.images.flatten().tolist())


class InvertedLoss(LossAttack):
    """The loss attack with its sign flipped: members now score lower."""

    def score(self, access, images, ctx):
        return -super().score(access, images, ctx)


def test_orientation_is_learned_on_calibration_and_kept_under_none(tiny_run, cache_dir, tmp_path):
    with ATTACKS.temporarily("inverted_loss", InvertedLoss):
        raw = tiny_suite_dict(attacks=["inverted_loss"], knowledge=["target-members", "none"])
        cache = Cache(cache_dir, log=lambda _: None)
        cards = {c.knowledge: c for c in run_suite(make_suite(raw), tmp_path, cache)}
    assert cards["target-members"].orientation == -1 and cards["target-members"].auc > 0.8
    # the same scores (one noise stream per attack and seed) with the paper's sign kept
    assert cards["none"].orientation == 1 and cards["none"].auc == pytest.approx(1 - cards["target-members"].auc)
    assert cards["none"].at_fitted_threshold is None and cards["none"].calibration_images is None


def test_knowledge_none_refuses_an_attack_that_learns_from_labels():
    with pytest.raises(BenchmarkError, match="'nais_cal' learns from calibration data"):
        make_suite(tiny_suite_dict(attacks=["loss", "nais_cal"], knowledge=["none"]))
    with pytest.raises(BenchmarkError, match="did you mean 'shadow'"):
        make_suite(tiny_suite_dict(knowledge=["shadows"]))


ROUTES = ("_engine", "_model", "_gray", "_unet", "_captions", "counter", "module", "unet", "parameters", "__dict__",
          "use_captions", "__reduce_ex__")  # fmt: skip


def _model() -> DiffusionModel:
    return DiffusionModel(plain_tiny_unet(), DDPMScheduler(num_train_timesteps=1000))


@pytest.mark.parametrize("threat_model", list(ThreatModel), ids=lambda t: t.value)
def test_views_are_sealed_against_every_route_to_the_model(threat_model):
    view = make_access(_model(), threat_model)
    for route in ROUTES:
        with pytest.raises(ThreatModelError, match=f"tried to use '{route}'") as refused:
            getattr(view, route)
        assert "\n" not in str(refused.value)
    with pytest.raises(ThreatModelError, match="read-only"):
        view.sample_shape = (1, 2, 2)
    with pytest.raises(TypeError, match="__dict__"):  # a sealed view has no instance dictionary at all
        vars(view)


def test_black_box_variation_noise_is_the_services_not_the_attackers():
    view = make_access(_model(), ThreatModel.BLACK_BOX)
    images = torch.zeros(2, 1, 8, 8)
    with pytest.raises(TypeError):
        view.vary(images, 10, 1, torch.Generator().manual_seed(0))  # no way to pass one's own noise
    first, second = view.vary(images, 10, 1), view.vary(images, 10, 1)
    assert not np.allclose(first.numpy(), second.numpy())  # fresh noise each call, drawn by the service
